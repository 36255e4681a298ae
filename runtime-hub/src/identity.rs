//! Who a token belongs to, and what that identity may commit.

use std::path::Path;

use runtime_core::Event;
use runtime_core::sync::{BearerToken, Role};
use serde::Deserialize;

/// An authenticated identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its id: what events name as `requestedBy` or `clientId`.
    pub id: String,
    /// What it may do.
    pub role: Role,
    /// Which notebooks it may read and write.
    pub notebooks: NotebookAccess,
}

impl Identity {
    /// `id` with `role`, on every notebook.
    pub fn new(id: impl Into<String>, role: Role) -> Self {
        Self {
            id: id.into(),
            role,
            notebooks: NotebookAccess::All,
        }
    }

    /// This identity, on `notebooks` only.
    pub fn on(self, notebooks: NotebookAccess) -> Self {
        Self { notebooks, ..self }
    }

    /// Refuses a notebook this identity may not use, naming both (neither is a secret).
    pub(crate) fn may_use(&self, notebook: &str) -> Result<(), String> {
        if self.notebooks.allows(notebook) {
            Ok(())
        } else {
            Err(format!("{:?} may not use notebook {notebook:?}", self.id))
        }
    }
}

/// Which notebooks an identity may read and write: a per-notebook access list.
///
/// ```
/// use runtime_hub::NotebookAccess;
///
/// let team = NotebookAccess::Only(vec!["team-*".into(), "demo".into()]);
/// assert!(team.allows("team-42") && team.allows("demo"));
/// assert!(!team.allows("demo-2") && !team.allows("payroll"));
/// assert!(NotebookAccess::All.allows("payroll"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NotebookAccess {
    /// Every notebook.
    #[default]
    All,
    /// Only these: notebook ids, or prefixes ending in `*` (`team-*`).
    Only(Vec<String>),
}

impl NotebookAccess {
    /// Whether `notebook` is on the list.
    pub fn allows(&self, notebook: &str) -> bool {
        match self {
            NotebookAccess::All => true,
            NotebookAccess::Only(patterns) => {
                patterns
                    .iter()
                    .any(|pattern| match pattern.strip_suffix('*') {
                        Some(prefix) => notebook.starts_with(prefix),
                        None => pattern == notebook,
                    })
            }
        }
    }
}

/// Maps a bearer token to an identity; `None` refuses it. Mount your own in
/// [`Hub::new`](crate::Hub::new) (a database of users, an SSO check), or use
/// [`TokensFile`].
pub trait Authenticator: Send + Sync {
    /// The identity `token` belongs to, if any.
    fn authenticate(&self, token: &BearerToken) -> Option<Identity>;
}

/// Tokens from a private TOML file (refused unless only its owner can read it):
///
/// ```toml
/// [[tokens]]
/// token = "a-long-random-secret"
/// identity = "alice"
/// role = "user"        # or "agent": only agents start runtime sessions
/// notebooks = ["team-*", "demo"]   # optional: only these (ids, or prefixes ending in *)
/// ```
pub struct TokensFile {
    tokens: Vec<(BearerToken, Identity)>,
}

/// Why a tokens file was refused. Messages never hold a token.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// Missing, unreadable, readable by others, not a regular file, or too large.
    #[error("tokens file: {0}")]
    File(#[from] runtime_native::files::SmallFileError),
    /// Missing file.
    #[error("tokens file {0}: not found; it lists [[tokens]] with token, identity and role")]
    Missing(std::path::PathBuf),
    /// Not valid.
    #[error("tokens file {path}: {message}")]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// Where and what, never a value.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tokens: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    token: BearerToken,
    identity: String,
    role: Role,
    notebooks: Option<Vec<String>>,
}

/// The shortest token accepted: a short token can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

impl TokensFile {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, TokensError> {
        let text = runtime_native::files::read_private_text(path, 1024 * 1024)?
            .ok_or_else(|| TokensError::Missing(path.to_path_buf()))?;
        let invalid = |message: String| TokensError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: File = toml::from_str(&text).map_err(|error| {
            invalid(runtime_native::files::toml_error_without_values(
                &error, &text,
            ))
        })?;
        let mut tokens = Vec::new();
        for (n, entry) in file.tokens.into_iter().enumerate() {
            if entry.token.expose().len() < MIN_TOKEN_LEN {
                return Err(invalid(format!(
                    "tokens[{n}] ({}): a token needs at least {MIN_TOKEN_LEN} characters",
                    entry.identity
                )));
            }
            if entry.identity.is_empty() {
                return Err(invalid(format!("tokens[{n}]: the identity is empty")));
            }
            let notebooks = match entry.notebooks {
                None => NotebookAccess::All,
                Some(patterns) => {
                    let bad = patterns.iter().find(|pattern| {
                        let fixed = pattern.strip_suffix('*').unwrap_or(pattern);
                        pattern.is_empty() || fixed.contains('*')
                    });
                    if let Some(bad) = bad {
                        return Err(invalid(format!(
                            "tokens[{n}] ({}): notebooks entry {bad:?} is neither a notebook id \
                             nor a prefix ending in *",
                            entry.identity
                        )));
                    }
                    NotebookAccess::Only(patterns)
                }
            };
            tokens.push((
                entry.token,
                Identity::new(entry.identity, entry.role).on(notebooks),
            ));
        }
        Ok(TokensFile { tokens })
    }
}

impl TokensFile {
    /// How many tokens it holds.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

impl Authenticator for TokensFile {
    fn authenticate(&self, token: &BearerToken) -> Option<Identity> {
        // Every entry is compared in full, whatever matches, so the time taken says
        // nothing about how close a guess was.
        let mut found = None;
        for (known, identity) in &self.tokens {
            if constant_time_eq(known.expose().as_bytes(), token.expose().as_bytes()) {
                found = Some(identity.clone());
            }
        }
        found
    }
}

impl std::fmt::Debug for TokensFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokensFile")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = a.len() ^ b.len();
    for (n, x) in a.iter().enumerate() {
        difference |= usize::from(x ^ b.get(n).copied().unwrap_or(!x));
    }
    difference == 0
}

/// Refuses a batch whose self-declared identities differ from the authenticated one, or
/// that starts a runtime session without an agent's token.
pub(crate) fn check_batch(
    identity: &Identity,
    events: &[std::sync::Arc<Event>],
) -> Result<(), String> {
    let claim = |field: &str, claimed: &str| -> Result<(), String> {
        if claimed != identity.id {
            return Err(format!(
                "{field} says {claimed:?}, but the connection is authenticated as {:?}",
                identity.id
            ));
        }
        Ok(())
    };
    for event in events {
        match &**event {
            Event::ExecutionRequested(request) => claim("requestedBy", &request.requested_by)?,
            Event::ExecutionCancelRequested(cancel) => claim("requestedBy", &cancel.requested_by)?,
            Event::RuntimeSessionStarted(started) => {
                if identity.role != Role::Agent {
                    return Err(format!(
                        "{:?} has a user token; only an agent token may start a runtime session",
                        identity.id
                    ));
                }
                claim("clientId", &started.client_id)?;
            }
            Event::Malformed(malformed) => {
                return Err(format!("an event does not decode: {}", malformed.error));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<TokensFile, TokensError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        TokensFile::load(&path)
    }

    #[test]
    fn an_access_list_is_read_and_a_malformed_one_refused() {
        let tokens = load(
            "[[tokens]]\ntoken = \"bob-token-0123456789\"\nidentity = \"bob\"\nrole = \"user\"\n\
             notebooks = [\"team-*\", \"demo\"]\n",
        )
        .unwrap();
        let bob = tokens
            .authenticate(&BearerToken::new("bob-token-0123456789"))
            .unwrap();
        assert!(bob.may_use("team-1").is_ok() && bob.may_use("demo").is_ok());
        assert!(bob.may_use("payroll").is_err());
        for bad in ["\"\"", "\"a*b\"", "\"*x\""] {
            let refused = load(&format!(
                "[[tokens]]\ntoken = \"bob-token-0123456789\"\nidentity = \"bob\"\nrole = \"user\"\n\
                 notebooks = [{bad}]\n"
            ))
            .err()
            .unwrap()
            .to_string();
            assert!(refused.contains("neither a notebook id"), "{refused}");
            assert!(!refused.contains("bob-token"), "{refused}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
