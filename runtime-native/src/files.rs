//! Reading a small file the user names (credentials, a CA certificate) without trusting it:
//! only a regular file (a FIFO would block, a device would never end), and never more than
//! a limit, even if it grows while it is read.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest configuration file read (config.toml, backends.toml).
pub(crate) const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// Why a small file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SmallFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path is not a regular file.
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// Others can read a file that holds a secret.
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
    /// The file is larger than the limit.
    #[error("{path} is {size} bytes; at most {limit} bytes are read")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (at least).
        size: u64,
        /// The most accepted.
        limit: u64,
    },
}

impl SmallFileError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, SmallFileError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Like [`read_small_text`], for a file that holds a secret: refused (like ssh's private
/// keys) when its group or others may read it.
pub fn read_private_text(path: &Path, limit: u64) -> Result<Option<String>, SmallFileError> {
    #[cfg(unix)]
    if let Ok(metadata) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if metadata.is_file() && mode & 0o077 != 0 {
            return Err(SmallFileError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    read_small_text(path, limit)
}

/// Reads `path` as UTF-8 text if it is a regular file of at most `limit` bytes; a
/// missing file is `Ok(None)`. Text that is not UTF-8 is an `InvalidData` read error.
pub fn read_small_text(path: &Path, limit: u64) -> Result<Option<String>, SmallFileError> {
    match read_small_file(path, limit) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|error| SmallFileError::Read {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "not UTF-8 text (at byte {})",
                        error.utf8_error().valid_up_to()
                    ),
                ),
            }),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

/// Reads `path` whole if it is a regular file of at most `limit` bytes.
///
/// ```
/// use runtime_native::files::{SmallFileError, read_small_file};
///
/// let error = read_small_file(std::path::Path::new("/dev/zero"), 1024).unwrap_err();
/// assert!(matches!(error, SmallFileError::NotAFile { .. }));
/// ```
pub fn read_small_file(path: &Path, limit: u64) -> Result<Vec<u8>, SmallFileError> {
    let read_error = |source| SmallFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    if !metadata.is_file() {
        return Err(SmallFileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let too_large = |size| SmallFileError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit,
    };
    if metadata.len() > limit {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).map_err(read_error)?;
    // The file could grow between the check and the read: read no more than the limit.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// A TOML error as `line L, column C: message`, without the excerpt of the file that the
/// parser's own `Display` shows (it could be the line holding the token) and with any
/// quoted text in the message masked.
pub fn toml_error_without_values(error: &toml::de::Error, text: &str) -> String {
    let place = error.span().map(|span| {
        let start = span.start.min(text.len());
        let before = text.get(..start).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |n| n + 1);
        let column = before.len() - line_start + 1;
        // The key the line sets, when it is a plain `key = value` line: a name, not a value.
        let whole_line = text[line_start..].lines().next().unwrap_or_default();
        let key = whole_line
            .split_once('=')
            .map(|(key, _)| key.trim())
            .filter(|key| {
                !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            });
        match key {
            Some(key) => format!("line {line}, column {column}, key `{key}`: "),
            None => format!("line {line}, column {column}: "),
        }
    });
    let mut message = String::new();
    for (n, part) in error.message().split(['"', '\'']).enumerate() {
        message.push_str(if n % 2 == 1 { "\u{2026}" } else { part });
    }
    format!("{}{}", place.unwrap_or_default(), message.trim())
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_a_small_regular_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let error = read_small_file(&fifo, 10).unwrap_err();
        assert!(matches!(error, SmallFileError::NotAFile { .. }), "{error}");
        let error = read_small_file(Path::new("/dev/zero"), 10).unwrap_err();
        assert!(matches!(error, SmallFileError::NotAFile { .. }), "{error}");
        let file = dir.path().join("file");
        std::fs::write(&file, "12345").unwrap();
        assert_eq!(read_small_file(&file, 5).unwrap(), b"12345");
        let error = read_small_file(&file, 4).unwrap_err();
        assert!(error.to_string().contains("at most 4 bytes"), "{error}");
        assert!(
            read_small_file(&dir.path().join("none"), 4)
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn toml_errors_name_the_place_and_key_never_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct File {
            lease_secs: Option<f64>,
            auth_token: Option<String>,
        }
        for text in [
            "lease_secs = \"sk-SECRET-long\"\n",
            "auth_token = 42\n# sk-SECRET\n",
            "auth_token = \"sk-SECRET\" trailing\n",
            "auth_token = sk-SECRET\n",
        ] {
            let error = toml::from_str::<File>(text).unwrap_err();
            let message = toml_error_without_values(&error, text);
            assert!(!message.contains("SECRET"), "{message}");
            assert!(message.starts_with("line 1, column "), "{message}");
            assert!(message.contains("key `"), "{message}");
        }
    }
}
