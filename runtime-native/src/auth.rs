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

use crate::files::{SmallFileError, read_private_text, toml_error_without_values};

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
    /// The file could not be read, others can read it, it is not a regular file (a FIFO
    /// would block start-up, a device would never end) or it is too large.
    #[error("credentials: {0}")]
    File(#[from] SmallFileError),
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
    let Some(text) = read_private_text(path, MAX_CREDENTIALS_BYTES)? else {
        return Ok(None);
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|error| CredentialsError::Invalid {
            path: path.to_path_buf(),
            message: toml_error_without_values(&error, &text),
        })
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
        // The checks themselves are files::read_small_file's (tested there).
        let error = read_credentials(Path::new("/dev/zero")).err().unwrap();
        assert!(
            matches!(
                error,
                CredentialsError::File(SmallFileError::NotAFile { .. })
            ),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
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
