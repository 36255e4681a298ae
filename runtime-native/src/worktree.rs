//! Git worktrees for notebooks: each notebook that asks for one
//! ([`WorktreeRequest`]) gets its own branch, `<prefix>/<notebook>`, started from the branch
//! it names, checked out in a directory of its own, so agents working on several notebooks
//! of one repository never step on each other. The gateway creates it before the notebook's
//! backend starts (the backend runs in it) and removes or keeps it when it detaches.
//!
//! ```no_run
//! use runtime_core::WorktreeRequest;
//! use runtime_native::worktree::{Closed, Worktrees};
//!
//! # async fn demo() -> Result<(), runtime_native::worktree::WorktreeError> {
//! let worktrees = Worktrees::new("/var/lib/agents/worktrees").allow("/home/alice/src");
//! let request = WorktreeRequest { repository: "/home/alice/src/app".into(), branch: Some("main".into()) };
//! let worktree = worktrees.open("fix-login", &request).await?;
//! assert_eq!(worktree.branch(), "notebook/fix-login");
//! // ... the notebook's backend runs in worktree.path() ...
//! match worktrees.close(&worktree).await? {
//!     Closed::Removed { .. } => {}
//!     Closed::Kept { why } => println!("kept {}: {why}", worktree.path().display()),
//! }
//! # Ok(()) }
//! ```

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use runtime_core::WorktreeRequest;

/// How long one git command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a worktree could not be made or closed. Messages name the repository and what git
/// said; they hold nothing secret.
#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    /// The repository is not under a directory this gateway allows.
    #[error("{repository} is not under a directory this gateway allows worktrees from ({allowed})")]
    NotAllowed {
        /// The repository asked for.
        repository: String,
        /// The allowed directories, for the message.
        allowed: String,
    },
    /// The repository path is not there, or is no git repository.
    #[error("{repository} is not a git repository: {why}")]
    NotARepository {
        /// The repository asked for.
        repository: String,
        /// What failed.
        why: String,
    },
    /// What the worktree's branch should start from does not name a commit.
    #[error("{repository} has no branch or commit `{start}`")]
    NoSuchStart {
        /// The repository.
        repository: String,
        /// What was asked for.
        start: String,
    },
    /// The worktree's directory holds something else.
    #[error("{path} is in the way: it is not this notebook's worktree of {repository}")]
    InTheWay {
        /// The directory.
        path: PathBuf,
        /// The repository.
        repository: String,
    },
    /// A git command failed.
    #[error("`git {command}` failed: {why}")]
    Git {
        /// The command (its first words).
        command: String,
        /// What git said (its first line), or how it failed.
        why: String,
    },
}

/// What happens to a notebook's worktree when its runtime detaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepWorktree {
    /// Keep it while it has uncommitted changes (untracked files count), else remove it.
    #[default]
    WhenDirty,
    /// Always keep it.
    Always,
    /// Always remove it, uncommitted changes and all.
    Never,
}

impl std::str::FromStr for KeepWorktree {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "when-dirty" => Ok(KeepWorktree::WhenDirty),
            "always" => Ok(KeepWorktree::Always),
            "never" => Ok(KeepWorktree::Never),
            other => Err(format!("`{other}` is not one of when-dirty, always, never")),
        }
    }
}

/// Where notebooks' worktrees go, which repositories they may come from, and what happens
/// to them at the end.
#[derive(Debug, Clone)]
pub struct Worktrees {
    dir: PathBuf,
    branch_prefix: String,
    allowed: Vec<PathBuf>,
    keep: KeepWorktree,
}

/// One notebook's worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    repository: PathBuf,
    path: PathBuf,
    branch: String,
    /// The commit the branch was made at, when this made it: a branch still there is
    /// deleted with the worktree (nothing was committed on it).
    made_at: Option<String>,
}

impl Worktree {
    /// Its directory: the notebook's backend runs here.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its branch, `<prefix>/<notebook>`.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The repository it belongs to (its top directory).
    pub fn repository(&self) -> &Path {
        &self.repository
    }

    /// Whether it has uncommitted changes (untracked files count).
    pub async fn is_dirty(&self) -> Result<bool, WorktreeError> {
        let status = git(&self.path, ["status", "--porcelain"]).await?;
        Ok(!status.trim().is_empty())
    }
}

/// How a worktree ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// Its directory is gone.
    Removed {
        /// Its branch is kept: commits were made on it.
        branch_kept: bool,
    },
    /// It is still there.
    Kept {
        /// Why, for people: "it has uncommitted changes".
        why: &'static str,
    },
}

impl Worktrees {
    /// Worktrees under `dir` (made when needed), on branches `notebook/<id>`, kept when
    /// dirty; no repository is allowed until [`allow`](Self::allow) names one.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Worktrees {
            dir: dir.into(),
            branch_prefix: "notebook".into(),
            allowed: Vec::new(),
            keep: KeepWorktree::default(),
        }
    }

    /// Allows repositories at or under `root`.
    pub fn allow(mut self, root: impl Into<PathBuf>) -> Self {
        self.allowed.push(root.into());
        self
    }

    /// Names branches `<prefix>/<notebook>`.
    pub fn branch_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.branch_prefix = prefix.into();
        self
    }

    /// What happens to a worktree at the end.
    pub fn keep(mut self, keep: KeepWorktree) -> Self {
        self.keep = keep;
        self
    }

    /// Where the worktrees go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes (or finds again, if it was kept) notebook `notebook`'s worktree of the
    /// repository `request` names: the repository must be under an allowed directory, the
    /// start must name a commit.
    pub async fn open(
        &self,
        notebook: &str,
        request: &WorktreeRequest,
    ) -> Result<Worktree, WorktreeError> {
        let repository = self.repository(&request.repository).await?;
        let start = request.branch.as_deref().unwrap_or("HEAD");
        let no_start = || WorktreeError::NoSuchStart {
            repository: repository.display().to_string(),
            start: start.to_owned(),
        };
        // A start like `--orphan` would be read as an option.
        if start.starts_with('-') {
            return Err(no_start());
        }
        let start_commit = git(
            &repository,
            [
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{start}^{{commit}}"),
            ],
        )
        .await
        .map_err(|_| no_start())?
        .trim()
        .to_owned();
        let slug = slug(notebook);
        let branch = format!("{}/{slug}", self.branch_prefix);
        git(&repository, ["check-ref-format", "--branch", &branch])
            .await
            .map_err(|_| WorktreeError::Git {
                command: "check-ref-format".into(),
                why: format!("`{branch}` is not a valid branch name (check the branch prefix)"),
            })?;
        let path = self.dir.join(&slug);
        if path.exists() {
            // A worktree kept from before: reuse it if it is this notebook's.
            let found = git(&path, ["rev-parse", "--abbrev-ref", "HEAD"]).await;
            let top = git(&path, ["rev-parse", "--git-common-dir"]).await;
            let ours = found.is_ok_and(|found| found.trim() == branch)
                && top.is_ok_and(|top| {
                    std::fs::canonicalize(path.join(top.trim()))
                        .ok()
                        .and_then(|common| common.parent().map(Path::to_path_buf))
                        == Some(repository.clone())
                });
            if !ours {
                return Err(WorktreeError::InTheWay {
                    path,
                    repository: repository.display().to_string(),
                });
            }
            tracing::info!(path = %path.display(), %branch, "reusing a kept worktree");
            return Ok(Worktree {
                repository,
                path,
                branch,
                made_at: None,
            });
        }
        std::fs::create_dir_all(&self.dir).map_err(|error| WorktreeError::Git {
            command: "worktree add".into(),
            why: format!("cannot make {}: {error}", self.dir.display()),
        })?;
        // A worktree whose directory someone deleted is still registered, and git would
        // refuse to add it again.
        git(&repository, ["worktree", "prune"]).await?;
        let path_text = path.as_os_str();
        let exists = git(
            &repository,
            [
                "show-ref",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}"),
            ],
        )
        .await
        .is_ok();
        let made_at = if exists {
            // The branch outlived an earlier worktree (it has commits): check it out again.
            git(
                &repository,
                [
                    OsStr::new("worktree"),
                    OsStr::new("add"),
                    path_text,
                    OsStr::new(&branch),
                ],
            )
            .await?;
            None
        } else {
            git(
                &repository,
                [
                    OsStr::new("worktree"),
                    OsStr::new("add"),
                    OsStr::new("-b"),
                    OsStr::new(&branch),
                    path_text,
                    OsStr::new(&start_commit),
                ],
            )
            .await?;
            Some(start_commit)
        };
        tracing::info!(path = %path.display(), %branch, "worktree made");
        Ok(Worktree {
            repository,
            path,
            branch,
            made_at,
        })
    }

    /// Ends `worktree` as configured: kept (always, or while it has uncommitted changes,
    /// by default), or removed, with its branch unless commits were made on it.
    pub async fn close(&self, worktree: &Worktree) -> Result<Closed, WorktreeError> {
        let dirty = worktree.is_dirty().await?;
        match self.keep {
            KeepWorktree::Always => {
                return Ok(Closed::Kept {
                    why: "the gateway keeps worktrees",
                });
            }
            KeepWorktree::WhenDirty if dirty => {
                return Ok(Closed::Kept {
                    why: "it has uncommitted changes",
                });
            }
            _ => {}
        }
        let path = worktree.path.as_os_str();
        let mut remove = vec![OsStr::new("worktree"), OsStr::new("remove")];
        if dirty {
            remove.push(OsStr::new("--force"));
        }
        remove.push(path);
        git(&worktree.repository, remove).await?;
        let tip = git(
            &worktree.repository,
            ["rev-parse", "--verify", "--quiet", &worktree.branch],
        )
        .await?;
        let untouched = worktree.made_at.as_deref() == Some(tip.trim());
        if untouched {
            git(&worktree.repository, ["branch", "-D", &worktree.branch]).await?;
        }
        Ok(Closed::Removed {
            branch_kept: !untouched,
        })
    }

    /// The top directory of the repository at `asked`, if it is one and allowed.
    async fn repository(&self, asked: &str) -> Result<PathBuf, WorktreeError> {
        let not_a_repository = |why: String| WorktreeError::NotARepository {
            repository: asked.to_owned(),
            why,
        };
        let not_allowed = || WorktreeError::NotAllowed {
            repository: asked.to_owned(),
            allowed: if self.allowed.is_empty() {
                "none is configured".to_owned()
            } else {
                self.allowed
                    .iter()
                    .map(|root| root.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        };
        let asked_path = Path::new(asked);
        if !asked_path.is_absolute() {
            return Err(not_a_repository("the path must be absolute".into()));
        }
        let allowed = |path: &Path| {
            self.allowed
                .iter()
                .any(|root| std::fs::canonicalize(root).is_ok_and(|root| path.starts_with(root)))
        };
        // Checked before git looks at anything: a path outside is refused unread.
        let canonical = std::fs::canonicalize(asked_path)
            .map_err(|error| not_a_repository(error.to_string()))?;
        if !allowed(&canonical) {
            return Err(not_allowed());
        }
        let top = git(&canonical, ["rev-parse", "--show-toplevel"])
            .await
            .map_err(|error| match error {
                WorktreeError::Git { why, .. } => not_a_repository(why),
                other => other,
            })?;
        let top = std::fs::canonicalize(top.trim())
            .map_err(|error| not_a_repository(error.to_string()))?;
        if !allowed(&top) {
            return Err(not_allowed());
        }
        Ok(top)
    }
}

/// A notebook id as a branch and directory name: ASCII letters, digits, `_` and `-` kept,
/// anything else `-`; when that changed the id (or made it empty), a short hash of the id
/// follows, so two ids never share a worktree.
fn slug(notebook: &str) -> String {
    let mut slug: String = notebook
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    slug = slug.trim_matches('-').chars().take(64).collect();
    if slug != notebook {
        // FNV-1a: stable across versions and machines, unlike std's hasher.
        let hash = notebook
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(&format!("{:08x}", hash as u32));
    }
    slug
}

/// Runs `git ARGS` in `dir` (no prompts, no pager, no stdin) and returns its output; a
/// failure says what git said first.
async fn git<I, S>(dir: &Path, args: I) -> Result<String, WorktreeError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|arg| arg.as_ref().to_owned())
        .collect();
    let command = args
        .iter()
        .take(2)
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let child = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(&args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PAGER", "cat")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let failed = |why: String| WorktreeError::Git {
        command: command.clone(),
        why,
    };
    let output = match tokio::time::timeout(GIT_TIMEOUT, child).await {
        Err(_) => return Err(failed(format!("no answer in {} s", GIT_TIMEOUT.as_secs()))),
        Ok(Err(error)) => return Err(failed(format!("cannot run git: {error}"))),
        Ok(Ok(output)) => output,
    };
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        let first = said
            .lines()
            .find(|line| !line.trim().is_empty())
            .unwrap_or("");
        return Err(failed(format!(
            "{} ({})",
            first.chars().take(300).collect::<String>(),
            output.status
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn slugs_keep_plain_ids_and_never_collide_otherwise() {
        assert_eq!(slug("fix-login_2"), "fix-login_2");
        assert_ne!(slug("a b"), slug("a-b"));
        assert_ne!(slug("a b"), slug("a/b"));
        assert!(slug("a b").starts_with("a-b-"));
        assert!(!slug("../../etc").contains(".."));
        assert!(!slug("日本").is_empty());
        assert!(slug(&"x".repeat(300)).len() < 80);
    }
}
