//! Who the agent runs for: the client id and the auth token, from a flag, an environment
//! variable, or a credentials file in the user's config directory.
//!
//! The credentials file (`<config dir>/runtime-agents/credentials.toml`, XDG on Linux) holds
//! `client_id = "..."` and `token = "..."`. Like ssh with a private key, it is refused when
//! its group or others can read it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

/// A secret token. `Debug` and `Display` never show it; [`AuthToken::expose`] does.
///
/// ```
/// use runtime_native::AuthToken;
///
/// let token: AuthToken = "s3cret".parse().unwrap();
/// assert_eq!(format!("{token:?} {token}"), "AuthToken(***) ***");
/// assert_eq!(token.expose(), "s3cret");
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct AuthToken(String);

impl AuthToken {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(***)")
    }
}

impl fmt::Display for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for AuthToken {
    type Err = String;

    fn from_str(token: &str) -> Result<Self, String> {
        if token.trim().is_empty() {
            return Err("the token is empty".to_owned());
        }
        Ok(AuthToken(token.to_owned()))
    }
}

/// The contents of a credentials file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    pub(crate) client_id: Option<String>,
    pub(crate) token: Option<AuthToken>,
}

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Others can read the file.
    #[error(
        "{path} is readable by other users (mode {mode:o}); it holds a secret, so it is refused. \
         Fix it with: chmod 600 {path}"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path is not a regular file (a FIFO would block start-up, a device would never end).
    #[error("{path} is not a regular file; a credentials file must be one")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The file is larger than a credentials file can be.
    #[error("{path} is {size} bytes; a credentials file holds at most {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The most accepted.
        limit: u64,
    },
    /// The file is not valid. The message names the line, column and key, never a value.
    #[error("{path}: {message} (expected `client_id = \"...\"` and `token = \"...\"`)")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where and what, without the values.
        message: String,
    },
}

/// The largest credentials file read.
const MAX_CREDENTIALS_BYTES: u64 = 64 * 1024;

/// Where the credentials file lives: `<config dir>/runtime-agents/credentials.toml`.
pub fn credentials_path() -> Option<PathBuf> {
    dirs::config_dir().map(|dir| dir.join("runtime-agents").join("credentials.toml"))
}

/// Reads the credentials file if there is one; refuses one that others can read.
pub(crate) fn read_credentials(path: &Path) -> Result<Option<Credentials>, CredentialsError> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialsError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !metadata.is_file() {
        return Err(CredentialsError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    check_private(path, &metadata)?;
    let too_large = |size| CredentialsError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit: MAX_CREDENTIALS_BYTES,
    };
    if metadata.len() > MAX_CREDENTIALS_BYTES {
        return Err(too_large(metadata.len()));
    }
    let read_error = |source| CredentialsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    let file = std::fs::File::open(path).map_err(read_error)?;
    // The file could grow between the check and the read: read no more than the limit.
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_CREDENTIALS_BYTES + 1),
        &mut text,
    )
    .map_err(read_error)?;
    if text.len() as u64 > MAX_CREDENTIALS_BYTES {
        return Err(too_large(text.len() as u64));
    }
    toml::from_str(&text)
        .map(Some)
        .map_err(|error| CredentialsError::Invalid {
            path: path.to_path_buf(),
            message: describe_without_values(&error, &text),
        })
}

/// A TOML error as `line L, column C: message`, without the excerpt of the file that the
/// parser's own `Display` shows (it could be the line holding the token) and with any
/// quoted text in the message masked.
fn describe_without_values(error: &toml::de::Error, text: &str) -> String {
    let place = error.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |n| n + 1) + 1;
        format!("line {line}, column {column}: ")
    });
    let mut message = String::new();
    for (n, part) in error.message().split(['"', '\'']).enumerate() {
        message.push_str(if n % 2 == 1 { "\u{2026}" } else { part });
    }
    format!("{}{}", place.unwrap_or_default(), message.trim())
}

#[cfg(unix)]
fn check_private(path: &Path, metadata: &std::fs::Metadata) -> Result<(), CredentialsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CredentialsError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &std::fs::Metadata) -> Result<(), CredentialsError> {
    Ok(())
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn private(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn only_a_small_regular_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        // A FIFO would block start-up forever; a device would be read without end.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let error = read_credentials(&fifo).err().unwrap();
        assert!(
            matches!(error, CredentialsError::NotAFile { .. }),
            "{error}"
        );
        let error = read_credentials(Path::new("/dev/zero")).err().unwrap();
        assert!(
            matches!(error, CredentialsError::NotAFile { .. }),
            "{error}"
        );

        let large = dir.path().join("large.toml");
        private(&large, &format!("client_id = \"{}\"\n", "x".repeat(70_000)));
        let error = read_credentials(&large).err().unwrap();
        assert!(error.to_string().contains("at most 65536 bytes"), "{error}");
    }

    #[test]
    fn a_malformed_file_is_reported_by_place_never_by_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        for text in [
            "client_id = \"carol\"\ntoken = \"sk-live-SECRET-123\" trailing\n",
            "client_id = \"carol\"\ntoken = sk-live-SECRET-123\n",
            "token = \"sk-live-SECRET-123\"\ntoken = \"sk-live-SECRET-123\"\n",
            "client_id = \"carol\"\ntokn = \"sk-live-SECRET-123\"\n",
        ] {
            private(&path, text);
            let error = read_credentials(&path).err().unwrap().to_string();
            assert!(!error.contains("SECRET"), "{error}");
            assert!(error.contains("line 2"), "{error}");
        }
    }
}
