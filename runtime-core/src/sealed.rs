//! Password replies sealed to the asking agent: NaCl's sealed box (X25519 +
//! XSalsa20-Poly1305, as libsodium's `crypto_box_seal`), so a reply to a password request
//! never sits in a log in clear.
//!
//! The agent makes a key pair for each password request and puts the public half in the
//! request; a client seals its reply to it; the agent opens the reply and forgets the key.
//! The log then holds only a ciphertext that nobody can open any more.

use crypto_box::aead::rand_core::{CryptoRng, Error as RandError, RngCore};
use crypto_box::{PublicKey, SecretKey};

/// Why a reply could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The request's key is not 64 hex digits.
    #[error("the input request's seal key is not 64 hex digits")]
    BadKey,
    /// The reply is not a sealed box made for this request's key.
    #[error("the reply was not sealed to this input request's key")]
    NotSealedToUs,
    /// The operating system (or the browser) gave no randomness.
    #[error("no randomness from the system: {0}")]
    NoRandomness(String),
}

/// The agent's half of one password request: opens the reply, then is dropped (the
/// secret is zeroed on drop).
pub(crate) struct OpeningKey(SecretKey);

impl OpeningKey {
    /// A fresh key pair from the system's randomness.
    pub(crate) fn generate() -> Result<Self, SealError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|error| SealError::NoRandomness(error.to_string()))?;
        Ok(OpeningKey(SecretKey::from_bytes(bytes)))
    }

    /// The public half, as the request carries it: 64 hex digits.
    pub(crate) fn public_hex(&self) -> String {
        to_hex(self.0.public_key().as_bytes())
    }

    /// Opens a reply sealed to this key.
    pub(crate) fn open(&self, sealed_hex: &str) -> Result<String, SealError> {
        let sealed = from_hex(sealed_hex).ok_or(SealError::NotSealedToUs)?;
        let plain = self
            .0
            .unseal(&sealed)
            .map_err(|_| SealError::NotSealedToUs)?;
        String::from_utf8(plain).map_err(|_| SealError::NotSealedToUs)
    }
}

/// Seals `value` to the request's public key (64 hex digits); returns the sealed box as
/// hex.
pub(crate) fn seal(public_hex: &str, value: &str) -> Result<String, SealError> {
    let key: [u8; 32] = from_hex(public_hex)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(SealError::BadKey)?;
    let mut random = SystemRandom { failed: false };
    let sealed = PublicKey::from_bytes(key)
        .seal(&mut random, value.as_bytes())
        .map_err(|_| SealError::NoRandomness("sealing failed".to_owned()))?;
    if random.failed {
        return Err(SealError::NoRandomness(
            "the system gave no random bytes".to_owned(),
        ));
    }
    Ok(to_hex(&sealed))
}

/// The system's randomness as the sealing code asks for it. A failure to draw is
/// remembered, and the box made with it thrown away.
struct SystemRandom {
    failed: bool,
}

impl RngCore for SystemRandom {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if getrandom::fill(dest).is_err() {
            self.failed = true;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RandError> {
        self.fill_bytes(dest);
        match self.failed {
            false => Ok(()),
            true => Err(RandError::from(std::num::NonZeroU32::MIN)),
        }
    }
}

impl CryptoRng for SystemRandom {}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    text
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| char::from(c).to_digit(16);
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn a_sealed_reply_opens_only_with_its_key() {
        let key = OpeningKey::generate().unwrap();
        let sealed = seal(&key.public_hex(), "hunter2 ünïcode").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_eq!(key.open(&sealed).unwrap(), "hunter2 ünïcode");
        // Sealing twice gives different boxes (a fresh ephemeral key each time).
        assert_ne!(
            seal(&key.public_hex(), "x").unwrap(),
            seal(&key.public_hex(), "x").unwrap()
        );

        let other = OpeningKey::generate().unwrap();
        assert_eq!(other.open(&sealed), Err(SealError::NotSealedToUs));
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(key.open(&tampered), Err(SealError::NotSealedToUs));
        for bad in ["", "zz", "abc", "not hex at all"] {
            assert_eq!(key.open(bad), Err(SealError::NotSealedToUs), "{bad:?}");
        }
        for bad in ["", "00", &"g".repeat(64), &"0".repeat(66)] {
            assert_eq!(seal(bad, "x"), Err(SealError::BadKey), "{bad:?}");
        }
    }
}
