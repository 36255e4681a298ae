//! Python runtimes (`llm`) from a package index, each in a virtual environment of its own.
//!
//! Every file pip downloads is checked against the sha256 the index publishes for it: the
//! versions are resolved first (`pip install --dry-run --report`, wheels only, so no
//! package's code runs to resolve, and only from the configured index), each file's
//! digest is read from the index's own page for its project (PEP 691 JSON or PEP 503
//! HTML), and then pip installs with `--require-hashes`, every file pinned to that
//! digest. A file the index publishes no digest for is refused. The environment is made where it stays (virtual environments cannot move) and
//! deleted if anything fails; the lock file changes only once it is complete.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{Installed, RuntimeError, RuntimeManager, io};

/// How long one pip or venv command may take.
const PIP_TIMEOUT: Duration = Duration::from_secs(900);

/// One package of a resolution, pinned to its published digest.
struct Pin {
    name: String,
    version: String,
    /// Its file's name, as the index lists it.
    file: String,
    sha256: String,
}

impl RuntimeManager {
    /// Installs the Python runtime `name` at `version` (the index's latest without one).
    pub(super) async fn setup_pypi(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Installed, RuntimeError> {
        let Some(index) = self.pypi_index.clone() else {
            return Err(RuntimeError::Registry(format!(
                "{name} comes from a Python package index: name it (RuntimeManager::pypi_index, \
                 `runtimes --pypi-index URL`), where the digests of its files are checked"
            )));
        };
        if index.contains('@') {
            return Err(RuntimeError::Registry(
                "a package index URL with credentials in it is not supported".into(),
            ));
        }
        let lock = self.read_lock()?;
        let partial = self.fresh_partial()?;
        let result = self
            .install_pypi(name, version, &index, &lock, &partial)
            .await;
        let _ = std::fs::remove_dir_all(&partial);
        match result? {
            Ok(current) => Ok(current),
            Err(installed) => self.record(lock, installed),
        }
    }

    /// `Ok(Ok(current))` when that version is installed already, `Ok(Err(new))` once a
    /// new one is complete (not yet recorded).
    async fn install_pypi(
        &self,
        name: &str,
        version: Option<&str>,
        index: &str,
        lock: &[Installed],
        partial: &Path,
    ) -> Result<Result<Installed, Installed>, RuntimeError> {
        // An environment whose pip resolves, and later installs into the runtime's own.
        let resolver = partial.join("resolver");
        self.run(
            self.python.as_os_str(),
            [OsString::from("-m"), "venv".into(), resolver.clone().into()],
            name,
        )
        .await?;
        let pip = resolver.join("bin").join("pip");
        let report = partial.join("report.json");
        let requirement = version.map_or_else(|| name.to_owned(), |v| format!("{name}=={v}"));
        let mut resolve: Vec<OsString> = [
            "install",
            "--dry-run",
            "--quiet",
            "--only-binary",
            ":all:",
            "--report",
        ]
        .map(OsString::from)
        .into();
        resolve.push(report.clone().into());
        resolve.extend(self.pip_sources());
        resolve.push(requirement.into());
        self.run(pip.as_os_str(), resolve, name).await?;
        let text = std::fs::read_to_string(&report).map_err(io(&report))?;
        let mut pins = pins(&text)?;
        for pin in &mut pins {
            let published = self.published_sha256(index, pin).await?;
            if !pin.sha256.is_empty() && pin.sha256 != published {
                return Err(RuntimeError::Integrity {
                    package: format!("{} {}", pin.name, pin.version),
                    expected: format!("sha256:{published}"),
                    actual: format!("sha256:{}", pin.sha256),
                });
            }
            pin.sha256 = published;
        }
        let top = pins
            .iter()
            .find(|pin| same_name(&pin.name, name))
            .ok_or_else(|| RuntimeError::Registry(format!("pip did not resolve {name}")))?;
        let integrity = format!("sha256:{}", top.sha256);
        if let Some(current) = lock.iter().find(|entry| entry.name == name)
            && current.version == top.version
            && current.integrity == integrity
            && current.program.is_file()
        {
            return Ok(Ok(current.clone()));
        }
        let home = self.dir.join(name).join(&top.version);
        let _ = std::fs::remove_dir_all(&home);
        let parent = self.dir.join(name);
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        let installed = self.install_pins(name, &pins, &pip, &home, partial).await;
        if installed.is_err() {
            let _ = std::fs::remove_dir_all(&home);
        }
        let program = installed?;
        Ok(Err(Installed {
            name: name.to_owned(),
            package: format!("{name}=={}", top.version),
            version: top.version.clone(),
            integrity,
            program,
        }))
    }

    /// Makes the environment at `home` and installs exactly `pins` into it, each file
    /// checked against its digest; returns the program.
    async fn install_pins(
        &self,
        name: &str,
        pins: &[Pin],
        pip: &Path,
        home: &Path,
        partial: &Path,
    ) -> Result<PathBuf, RuntimeError> {
        self.run(
            self.python.as_os_str(),
            [
                OsString::from("-m"),
                "venv".into(),
                "--without-pip".into(),
                home.into(),
            ],
            name,
        )
        .await?;
        let requirements = partial.join("requirements.txt");
        let lines: String = pins
            .iter()
            .map(|pin| {
                format!(
                    "{}=={} --hash=sha256:{}\n",
                    pin.name, pin.version, pin.sha256
                )
            })
            .collect();
        std::fs::write(&requirements, lines).map_err(io(&requirements))?;
        let mut install: Vec<OsString> =
            vec!["--python".into(), home.join("bin").join("python").into()];
        install.extend(
            [
                "install",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "--only-binary",
                ":all:",
                "-r",
            ]
            .map(OsString::from),
        );
        install.push(requirements.into());
        install.extend(self.pip_sources());
        self.run(pip.as_os_str(), install, name).await?;
        let program = home.join("bin").join(name);
        if !program.is_file() {
            return Err(RuntimeError::Unpack {
                package: name.to_owned(),
                reason: format!("it installed no bin/{name}"),
            });
        }
        Ok(program)
    }

    /// The sha256 the index at `index` publishes for `pin`'s file, from the project's page.
    async fn published_sha256(&self, index: &str, pin: &Pin) -> Result<String, RuntimeError> {
        let project = normalized(&pin.name);
        let separator = if index.ends_with('/') { "" } else { "/" };
        let url = format!("{index}{separator}{project}/");
        let page = self
            .fetch(
                &url,
                &format!("{} on the index", pin.name),
                "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
                super::MAX_INDEX_PAGE,
            )
            .await?;
        published_in(&String::from_utf8_lossy(&page), &pin.file).ok_or_else(|| {
            RuntimeError::Registry(format!(
                "the index publishes no sha256 for {} ({}): it cannot be verified, so it is not installed",
                pin.file, pin.version
            ))
        })
    }

    /// Where pip gets packages: the configured index only (pip's own configuration
    /// ignored), else pip's configuration; and the certificates to trust.
    fn pip_sources(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        if let Some(index) = &self.pypi_index {
            // Only this index: pip's configuration could add others (`find-links`) whose
            // files have no published digest.
            args.extend(["--isolated".into(), "--index-url".into(), index.into()]);
        }
        if let Some(ca) = &self.ca_path {
            args.extend([OsString::from("--cert"), ca.into()]);
        }
        args
    }

    /// Runs `program args` for runtime `name`; a failure says what pip said, classified.
    async fn run(
        &self,
        program: &std::ffi::OsStr,
        args: impl IntoIterator<Item = OsString>,
        name: &str,
    ) -> Result<(), RuntimeError> {
        let child = tokio::process::Command::new(program)
            .args(args)
            .env("PIP_NO_INPUT", "1")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = match tokio::time::timeout(PIP_TIMEOUT, child).await {
            Err(_) => {
                return Err(RuntimeError::Download {
                    package: name.to_owned(),
                    reason: format!("pip did not finish in {} s", PIP_TIMEOUT.as_secs()),
                });
            }
            Ok(Err(error)) => {
                return Err(RuntimeError::Download {
                    package: name.to_owned(),
                    reason: format!("cannot run {}: {error}", Path::new(program).display()),
                });
            }
            Ok(Ok(output)) => output,
        };
        if output.status.success() {
            return Ok(());
        }
        Err(classify(name, &String::from_utf8_lossy(&output.stderr)))
    }
}

/// What pip's failure means, from what it said.
fn classify(name: &str, said: &str) -> RuntimeError {
    let lines: Vec<&str> = said
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let after = |prefix: &str| {
        lines
            .iter()
            .find_map(|line| line.strip_prefix(prefix))
            .map(|rest| rest.trim().to_owned())
    };
    if said.contains("DO NOT MATCH THE HASHES") {
        return RuntimeError::Integrity {
            package: name.to_owned(),
            expected: after("Expected sha256")
                .map_or_else(String::new, |hex| format!("sha256:{hex}")),
            actual: after("Got").map_or_else(String::new, |hex| format!("sha256:{hex}")),
        };
    }
    let reason = lines
        .iter()
        .rev()
        .find(|line| line.starts_with("ERROR:"))
        .or(lines.last())
        .map_or("pip failed", |line| line)
        .chars()
        .take(400)
        .collect::<String>();
    if said.contains("No matching distribution") || said.contains("Could not find a version") {
        return RuntimeError::Registry(reason);
    }
    RuntimeError::Download {
        package: name.to_owned(),
        reason,
    }
}

/// The packages of pip's installation report, each with the sha256 the index published;
/// a package without one is refused.
fn pins(report: &str) -> Result<Vec<Pin>, RuntimeError> {
    let report: Value = serde_json::from_str(report)
        .map_err(|error| RuntimeError::Registry(format!("pip's report: {error}")))?;
    let Some(items) = report["install"].as_array() else {
        return Err(RuntimeError::Registry(
            "pip's report lists nothing to install".into(),
        ));
    };
    items
        .iter()
        .map(|item| {
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            let version = item["metadata"]["version"].as_str().unwrap_or_default();
            let url = item["download_info"]["url"].as_str().unwrap_or_default();
            let file = url
                .split(['#', '?'])
                .next()
                .and_then(|path| path.rsplit('/').next())
                .unwrap_or_default();
            // pip's own digest of what it downloaded, compared with the published one.
            let sha256 = item["download_info"]["archive_info"]["hashes"]["sha256"]
                .as_str()
                .unwrap_or_default();
            if name.is_empty() || version.is_empty() || file.is_empty() {
                return Err(RuntimeError::Registry(
                    "pip's report names a package without a name, version or file".into(),
                ));
            }
            Ok(Pin {
                name: name.to_owned(),
                version: version.to_owned(),
                file: file.to_owned(),
                sha256: sha256.to_ascii_lowercase(),
            })
        })
        .collect()
}

/// The sha256 a project page publishes for `file`: a PEP 691 JSON page's
/// `files[].hashes.sha256`, or a PEP 503 HTML page's `…/FILE#sha256=HEX` link.
fn published_in(page: &str, file: &str) -> Option<String> {
    let hex = |text: &str| {
        let digest: String = text.chars().take(64).collect();
        (digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| digest.to_ascii_lowercase())
    };
    if page.trim_start().starts_with('{') {
        let page: Value = serde_json::from_str(page).ok()?;
        return page["files"].as_array()?.iter().find_map(|entry| {
            (entry["filename"].as_str() == Some(file))
                .then(|| entry["hashes"]["sha256"].as_str().and_then(hex))
                .flatten()
        });
    }
    let marker = format!("/{file}#sha256=");
    let at = page.find(&marker)? + marker.len();
    hex(&page[at..])
}

/// Whether two package names are the same (PEP 503: case, `-`, `_` and `.` alike).
fn same_name(a: &str, b: &str) -> bool {
    normalized(a) == normalized(b)
}

/// A package name as the index's project pages are named (`pydantic_core`: `pydantic-core`).
fn normalized(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

#[cfg(test)]
mod tests {
    use super::{classify, published_in};
    use crate::runtimes::RuntimeError;

    #[test]
    fn published_digests_are_read_from_json_and_html_pages_for_the_exact_file() {
        let sha = "ab".repeat(32);
        let json = format!(
            r#"{{"files": [{{"filename": "llm-0.1-py3-none-any.whl", "hashes": {{"sha256": "{sha}"}}}},
                          {{"filename": "llm-0.2-py3-none-any.whl", "hashes": {{}}}}]}}"#
        );
        assert_eq!(
            published_in(&json, "llm-0.1-py3-none-any.whl"),
            Some(sha.clone())
        );
        assert_eq!(
            published_in(&json, "llm-0.2-py3-none-any.whl"),
            None,
            "no digest"
        );
        let html = format!(
            "<a href=\"/f/llm-0.1-py3-none-any.whl#sha256={sha}\">x</a>\n<a href=\"/f/llm-0.2-py3-none-any.whl\">y</a>"
        );
        assert_eq!(published_in(&html, "llm-0.1-py3-none-any.whl"), Some(sha));
        assert_eq!(published_in(&html, "llm-0.2-py3-none-any.whl"), None);
        assert_eq!(
            published_in(&html, "lm-0.1-py3-none-any.whl"),
            None,
            "not a suffix match"
        );
    }

    #[test]
    fn pips_hash_mismatch_is_an_integrity_error() {
        let said = "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.\n    llm==0.2 from http://x:\n        Expected sha256 abc\n             Got        def\n";
        match classify("llm", said) {
            RuntimeError::Integrity {
                expected, actual, ..
            } => assert_eq!(
                (expected.as_str(), actual.as_str()),
                ("sha256:abc", "sha256:def")
            ),
            other => panic!("{other:?}"),
        }
    }
}
