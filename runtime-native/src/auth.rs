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
    /// The file is not valid.
    #[error(
        "{path} is not a valid credentials file (expected `client_id = \"...\"` and `token = \"...\"`): {message}"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key.
        message: String,
    },
}

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
    check_private(path, &metadata)?;
    let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text)
        .map(Some)
        .map_err(|error| CredentialsError::Invalid {
            path: path.to_path_buf(),
            message: error.to_string(),
        })
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
