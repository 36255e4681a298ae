//! Managed agent runtimes: the agent CLIs themselves (codex, from npm), installed into a
//! directory of their own, each download verified against the digest its registry
//! publishes before anything is unpacked, and recorded in a lock file.
//!
//! A failure leaves things as they were. A download that stops midway, or whose digest
//! does not match, is deleted and nothing else changes; a new version is unpacked beside
//! the directory and moved into place only once it is complete; the lock file is written
//! whole and renamed over the old one; an update that fails keeps the version before it.
//! The manager writes no token anywhere: agent CLIs read theirs from the environment or
//! their own credentials file.
//!
//! One manager at a time per directory: a run starts by clearing what an interrupted one
//! left in the directory's `.partial`, which would be a concurrent run's download.
//!
//! ```no_run
//! # async fn run() -> Result<(), runtime_native::runtimes::RuntimeError> {
//! use runtime_native::runtimes::RuntimeManager;
//!
//! let manager = RuntimeManager::new("/home/me/.local/share/runtime-agents/runtimes", "http://127.0.0.1:4873/");
//! let codex = manager.setup("codex", Some("0.169.0")).await?;
//! println!("{} {} at {}", codex.name, codex.version, codex.program.display());
//! # Ok(()) }
//! ```

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, HOST, LOCATION, USER_AGENT};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::net::{Endpoint, chain};
use crate::tls::CaFileError;

mod pypi;

/// The lock file, in the manager's directory.
pub const LOCK_FILE: &str = "runtimes.lock";
/// Where downloads and unpacking happen before they are complete.
const PARTIAL: &str = ".partial";
/// The largest package document read.
const MAX_METADATA: usize = 4 * 1024 * 1024;
/// The largest project page of a Python package index read (one lists every file of
/// every release: pydantic-core's is over 4 MiB).
const MAX_INDEX_PAGE: usize = 64 * 1024 * 1024;
/// The largest package downloaded.
const MAX_PACKAGE: u64 = 1024 * 1024 * 1024;
/// Redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// How long a request may take to answer (not the whole download).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The runtimes this manager installs: codex from npm, llm from PyPI.
pub const KNOWN: &[&str] = &["codex", "llm"];

/// A runtime as the lock file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Installed {
    /// Its name (`codex`).
    pub name: String,
    /// The registry package its files came from (`@openai/codex@0.169.0-linux-x64`).
    pub package: String,
    /// Its version (`0.169.0`).
    pub version: String,
    /// The digest the registry published and the download matched (`sha512-…`).
    pub integrity: String,
    /// The program to run.
    pub program: PathBuf,
}

/// Why the manager could not do what was asked. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Not a runtime this manager installs.
    #[error("unknown runtime {0:?}: this manager installs {known}", known = KNOWN.join(", "))]
    Unknown(String),
    /// It is not installed.
    #[error("{0} is not installed")]
    NotInstalled(String),
    /// The registry answered with something unusable, or not at all.
    #[error("the registry: {0}")]
    Registry(String),
    /// The package has no build for this machine.
    #[error("{package} has no build for this platform ({platform})")]
    NoPlatform {
        /// The package.
        package: String,
        /// This machine's platform, as npm names it (`linux-x64`).
        platform: String,
    },
    /// The download failed or stopped midway.
    #[error("the download of {package} failed: {reason}; nothing was installed")]
    Download {
        /// The package.
        package: String,
        /// Why.
        reason: String,
    },
    /// The download does not match the digest the registry published.
    #[error(
        "the download of {package} does not match the registry's digest (expected {expected}, got {actual}); it was deleted and nothing was installed"
    )]
    Integrity {
        /// The package.
        package: String,
        /// The registry's digest.
        expected: String,
        /// The download's.
        actual: String,
    },
    /// The package could not be unpacked (a malformed archive, a path leaving the
    /// directory, no program where the runtime keeps it).
    #[error("could not unpack {package}: {reason}; nothing was installed")]
    Unpack {
        /// The package.
        package: String,
        /// Why.
        reason: String,
    },
    /// The lock file is not one this manager wrote.
    #[error("the lock file {path} is not valid: {reason}")]
    Lock {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Installs, updates, lists and removes agent runtimes in one directory.
#[derive(Clone)]
pub struct RuntimeManager {
    dir: PathBuf,
    npm_registry: String,
    extra_roots: Vec<CertificateDer<'static>>,
    /// The PEM file `extra_roots` came from, for pip.
    ca_path: Option<PathBuf>,
    /// The Python that makes virtual environments.
    python: PathBuf,
    /// pip's index (`…/simple`); none: pip's own configuration.
    pypi_index: Option<String>,
}

impl std::fmt::Debug for RuntimeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A registry URL with credentials in it is refused when used; it is not shown either.
        let registry = if self.npm_registry.contains('@') {
            "(a URL with credentials)"
        } else {
            self.npm_registry.as_str()
        };
        f.debug_struct("RuntimeManager")
            .field("dir", &self.dir)
            .field("npm_registry", &registry)
            .field("extra_roots", &self.extra_roots.len())
            .field("python", &self.python)
            .field(
                "pypi_index",
                &self.pypi_index.as_deref().map(|index| {
                    if index.contains('@') {
                        "(a URL with credentials)"
                    } else {
                        index
                    }
                }),
            )
            .finish()
    }
}

/// A package version the registry offers: where to get it and its digest.
struct Resolved {
    package: String,
    version: String,
    tarball: String,
    integrity: String,
}

impl RuntimeManager {
    /// A manager of the runtimes in `dir`, installing from the npm registry at
    /// `npm_registry` (its base URL, as `npm config get registry` prints it).
    pub fn new(dir: impl Into<PathBuf>, npm_registry: impl Into<String>) -> Self {
        let mut npm_registry = npm_registry.into();
        if !npm_registry.ends_with('/') {
            npm_registry.push('/');
        }
        let dir = dir.into();
        Self {
            // Programs are recorded by absolute path, whatever directory runs them later.
            dir: std::path::absolute(&dir).unwrap_or(dir),
            npm_registry,
            extra_roots: Vec::new(),
            ca_path: None,
            python: PathBuf::from("python3"),
            pypi_index: None,
        }
    }

    /// Also trusts the certificates of a PEM file for `https://` registries, beside
    /// Mozilla's roots: a private registry's CA, or the one a proxy presents (npm reads it
    /// from `cafile` or `NODE_EXTRA_CA_CERTS`).
    pub fn ca_file(mut self, path: &Path) -> Result<Self, CaFileError> {
        self.extra_roots
            .extend(crate::tls::read_certificates(path)?);
        self.ca_path = Some(path.to_owned());
        Ok(self)
    }

    /// Installs Python runtimes (`llm`) from the package index at `index` (pip's
    /// `--index-url`, ending in `/simple`) and nothing else, ignoring pip's own
    /// configuration; without this, pip's configuration decides.
    pub fn pypi_index(mut self, index: impl Into<String>) -> Self {
        self.pypi_index = Some(index.into());
        self
    }

    /// Makes Python runtimes' virtual environments with `python` (default `python3`).
    pub fn python(mut self, python: impl Into<PathBuf>) -> Self {
        self.python = python.into();
        self
    }

    /// The directory it manages.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What is installed, by name.
    pub fn list(&self) -> Result<Vec<Installed>, RuntimeError> {
        self.read_lock()
    }

    /// The installed runtime `name`, if it is.
    pub fn get(&self, name: &str) -> Result<Option<Installed>, RuntimeError> {
        Ok(self
            .read_lock()?
            .into_iter()
            .find(|entry| entry.name == name))
    }

    /// Installs `name` at `version` (the registry's latest without one). Installing the
    /// version already installed does nothing; another version replaces it once it is
    /// downloaded, verified and unpacked.
    pub async fn setup(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Installed, RuntimeError> {
        match name {
            "codex" => {}
            "llm" => return self.setup_pypi(name, version).await,
            _ => return Err(RuntimeError::Unknown(name.to_owned())),
        }
        let resolved = self.resolve_codex(version).await?;
        let lock = self.read_lock()?;
        if let Some(current) = lock.iter().find(|entry| entry.name == name)
            && current.version == resolved.version
            && current.integrity == resolved.integrity
            && current.program.is_file()
        {
            return Ok(current.clone());
        }
        let partial = self.fresh_partial()?;
        let result = self.install(name, &resolved, &partial).await;
        let _ = std::fs::remove_dir_all(&partial);
        self.record(lock, result?)
    }

    /// The directory downloads and unpacking happen in, emptied: whatever an interrupted
    /// run left there is incomplete by definition.
    fn fresh_partial(&self) -> Result<PathBuf, RuntimeError> {
        let partial = self.dir.join(PARTIAL);
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).map_err(io(&partial))?;
        Ok(partial)
    }

    /// Records `installed` in the lock (replacing its name's entry), then removes the
    /// files of the version it replaced.
    fn record(
        &self,
        mut lock: Vec<Installed>,
        installed: Installed,
    ) -> Result<Installed, RuntimeError> {
        let name = installed.name.clone();
        let previous = lock.iter().position(|entry| entry.name == name);
        let replaced = previous.map(|index| lock.remove(index));
        lock.push(installed.clone());
        lock.sort_by(|a, b| a.name.cmp(&b.name));
        self.write_lock(&lock)?;
        if let Some(old) = replaced
            && old.version != installed.version
        {
            let _ = std::fs::remove_dir_all(self.dir.join(&old.name).join(&old.version));
        }
        tracing::info!(runtime = %name, version = %installed.version, "installed");
        Ok(installed)
    }

    /// Installs the registry's latest version of `name` if it is not the one installed.
    pub async fn update(&self, name: &str) -> Result<Installed, RuntimeError> {
        if self.get(name)?.is_none() {
            return Err(RuntimeError::NotInstalled(name.to_owned()));
        }
        self.setup(name, None).await
    }

    /// Removes `name`: its lock entry first, then its files.
    pub fn remove(&self, name: &str) -> Result<Installed, RuntimeError> {
        let mut lock = self.read_lock()?;
        let Some(index) = lock.iter().position(|entry| entry.name == name) else {
            return Err(RuntimeError::NotInstalled(name.to_owned()));
        };
        let removed = lock.remove(index);
        self.write_lock(&lock)?;
        let _ = std::fs::remove_dir_all(self.dir.join(name));
        Ok(removed)
    }

    async fn install(
        &self,
        name: &str,
        resolved: &Resolved,
        partial: &Path,
    ) -> Result<Installed, RuntimeError> {
        let archive = partial.join("package.tgz");
        download(&resolved.tarball, &self.extra_roots, resolved, &archive).await?;
        let unpacked = partial.join("unpacked");
        let package = resolved.package.clone();
        let into = unpacked.clone();
        tokio::task::spawn_blocking(move || unpack(&archive, &into, &package))
            .await
            .map_err(|error| RuntimeError::Unpack {
                package: resolved.package.clone(),
                reason: error.to_string(),
            })??;
        let program_in = codex_program(&unpacked).ok_or_else(|| RuntimeError::Unpack {
            package: resolved.package.clone(),
            reason: "no package/vendor/<platform>/bin/codex in it".to_owned(),
        })?;
        make_executable(&program_in)?;
        let home = self.dir.join(name).join(&resolved.version);
        if let Some(parent) = home.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let _ = std::fs::remove_dir_all(&home);
        std::fs::rename(&unpacked, &home).map_err(io(&home))?;
        let program =
            home.join(
                program_in
                    .strip_prefix(&unpacked)
                    .map_err(|_| RuntimeError::Unpack {
                        package: resolved.package.clone(),
                        reason: "the program is outside the package".to_owned(),
                    })?,
            );
        Ok(Installed {
            name: name.to_owned(),
            package: resolved.package.clone(),
            version: resolved.version.clone(),
            integrity: resolved.integrity.clone(),
            program,
        })
    }

    /// codex's npm package names its build for each platform as an optional dependency
    /// (`npm:@openai/codex@0.169.0-linux-x64`); that build holds the program.
    async fn resolve_codex(&self, version: Option<&str>) -> Result<Resolved, RuntimeError> {
        const PACKAGE: &str = "@openai/codex";
        let manifest = self.manifest(PACKAGE, version.unwrap_or("latest")).await?;
        let chosen = manifest["version"]
            .as_str()
            .ok_or_else(|| {
                RuntimeError::Registry(format!("{PACKAGE}: no version in its document"))
            })?
            .to_owned();
        let platform = npm_platform();
        let key = format!("{PACKAGE}-{platform}");
        let alias = manifest["optionalDependencies"][&key]
            .as_str()
            .ok_or_else(|| RuntimeError::NoPlatform {
                package: format!("{PACKAGE}@{chosen}"),
                platform: platform.clone(),
            })?;
        let (build_package, build_version) = alias
            .strip_prefix("npm:")
            .and_then(|spec| spec.rsplit_once('@'))
            .filter(|(package, version)| !package.is_empty() && !version.is_empty())
            .ok_or_else(|| {
                RuntimeError::Registry(format!("{key}: {alias:?} is not npm:NAME@VERSION"))
            })?;
        let build = self.manifest(build_package, build_version).await?;
        let tarball = build["dist"]["tarball"].as_str();
        let integrity = build["dist"]["integrity"].as_str();
        let (Some(tarball), Some(integrity)) = (tarball, integrity) else {
            return Err(RuntimeError::Registry(format!(
                "{build_package}@{build_version}: no dist.tarball and dist.integrity"
            )));
        };
        if !integrity.starts_with("sha512-") {
            return Err(RuntimeError::Registry(format!(
                "{build_package}@{build_version}: its digest is not sha512 ({integrity:.12}…)"
            )));
        }
        Ok(Resolved {
            package: format!("{build_package}@{build_version}"),
            version: chosen,
            tarball: tarball.to_owned(),
            integrity: integrity.to_owned(),
        })
    }

    /// The registry's document of one version (or dist-tag) of a package.
    async fn manifest(&self, package: &str, version: &str) -> Result<Value, RuntimeError> {
        let url = format!(
            "{}{}/{}",
            self.npm_registry,
            package.replace('/', "%2f"),
            version
        );
        let what = format!("{package}@{version}");
        let body = self
            .fetch(&url, &what, "application/json", MAX_METADATA)
            .await?;
        serde_json::from_slice(&body).map_err(|error| {
            RuntimeError::Registry(format!("{what}: not a JSON document: {error}"))
        })
    }

    /// A registry's document at `url` (about `what`), at most `limit` bytes.
    async fn fetch(
        &self,
        url: &str,
        what: &str,
        accept: &'static str,
        limit: usize,
    ) -> Result<Vec<u8>, RuntimeError> {
        let response = get(url, &self.extra_roots, accept)
            .await
            .map_err(RuntimeError::Registry)?;
        let status = response.status();
        if status.as_u16() == 404 {
            return Err(RuntimeError::Registry(format!(
                "{what} is not in the registry"
            )));
        }
        if !status.is_success() {
            return Err(RuntimeError::Registry(format!("{what}: HTTP {status}")));
        }
        let mut body = Vec::new();
        let mut incoming = response.into_body();
        while let Some(frame) = incoming.frame().await {
            let frame =
                frame.map_err(|error| RuntimeError::Registry(format!("{what}: {error}")))?;
            body.extend(frame.into_data().unwrap_or_default());
            if body.len() > limit {
                return Err(RuntimeError::Registry(format!(
                    "{what}: its document is larger than {limit} bytes"
                )));
            }
        }
        Ok(body)
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }

    fn read_lock(&self) -> Result<Vec<Installed>, RuntimeError> {
        let path = self.lock_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| RuntimeError::Lock {
                path,
                reason: error.to_string(),
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(error) => Err(io(&path)(error)),
        }
    }

    /// Writes the whole lock file beside the old one, then renames it over it.
    fn write_lock(&self, lock: &[Installed]) -> Result<(), RuntimeError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.lock_path();
        let fresh = self.dir.join(format!("{LOCK_FILE}.new"));
        let mut text = serde_json::to_string_pretty(lock).map_err(|error| RuntimeError::Lock {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        text.push('\n');
        let mut file = std::fs::File::create(&fresh).map_err(io(&fresh))?;
        file.write_all(text.as_bytes()).map_err(io(&fresh))?;
        file.sync_all().map_err(io(&fresh))?;
        std::fs::rename(&fresh, &path).map_err(io(&path))
    }
}

/// Where runtimes are installed unless told: `RUNTIME_AGENTS_RUNTIMES`, else
/// `runtime-agents/runtimes` in the user's data directory.
pub fn default_dir() -> Option<PathBuf> {
    std::env::var_os("RUNTIME_AGENTS_RUNTIMES")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::data_dir().map(|data| data.join("runtime-agents").join("runtimes")))
}

/// This machine as npm names platforms (`linux-x64`, `darwin-arm64`, `win32-x64`).
pub fn npm_platform() -> String {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        "windows" => "win32",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{os}-{arch}")
}

/// `package/vendor/<triple>/bin/codex`, whichever triple the build carries.
fn codex_program(unpacked: &Path) -> Option<PathBuf> {
    let name = if cfg!(windows) { "codex.exe" } else { "codex" };
    std::fs::read_dir(unpacked.join("package").join("vendor"))
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin").join(name))
        .find(|program| program.is_file())
}

fn make_executable(program: &Path) -> Result<(), RuntimeError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(program, std::fs::Permissions::from_mode(0o755))
            .map_err(io(program))?;
    }
    #[cfg(not(unix))]
    let _ = program;
    Ok(())
}

/// Downloads `url` into `file`, hashing as it goes, and keeps it only if it matches
/// `integrity` (`sha512-<base64>`).
async fn download(
    url: &str,
    roots: &[CertificateDer<'static>],
    resolved: &Resolved,
    file: &Path,
) -> Result<(), RuntimeError> {
    let (package, integrity) = (&resolved.package, &resolved.integrity);
    let failed = |reason: String| RuntimeError::Download {
        package: package.clone(),
        reason,
    };
    let response = get(url, roots, "*/*").await.map_err(failed)?;
    if !response.status().is_success() {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    let mut out = std::fs::File::create(file).map_err(io(file))?;
    let mut digest = ring::digest::Context::new(&ring::digest::SHA512);
    let mut size: u64 = 0;
    let mut body = response.into_body();
    let outcome = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| failed(chain(&error)))?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            size += data.len() as u64;
            if size > MAX_PACKAGE {
                return Err(failed(format!("larger than {MAX_PACKAGE} bytes")));
            }
            digest.update(data);
            out.write_all(data).map_err(io(file))?;
        }
        out.sync_all().map_err(io(file))
    }
    .await;
    if let Err(error) = outcome {
        let _ = std::fs::remove_file(file);
        return Err(error);
    }
    let actual = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(digest.finish().as_ref())
    );
    if &actual != integrity {
        let _ = std::fs::remove_file(file);
        return Err(RuntimeError::Integrity {
            package: package.clone(),
            expected: integrity.clone(),
            actual,
        });
    }
    Ok(())
}

/// Unpacks a `.tgz` into `into`: regular files and directories only, every path inside
/// `into` (no absolute path, no `..`, no links).
fn unpack(archive: &Path, into: &Path, package: &str) -> Result<(), RuntimeError> {
    let failed = |reason: String| RuntimeError::Unpack {
        package: package.to_owned(),
        reason,
    };
    let file = std::fs::File::open(archive).map_err(io(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    std::fs::create_dir_all(into).map_err(io(into))?;
    let entries = tar.entries().map_err(|error| failed(error.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|error| failed(error.to_string()))?;
        let path = entry
            .path()
            .map_err(|error| failed(error.to_string()))?
            .into_owned();
        let inside = path
            .components()
            .all(|component| matches!(component, Component::Normal(_) | Component::CurDir));
        if !inside {
            return Err(failed(format!(
                "{} leaves the package's directory",
                path.display()
            )));
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(failed(format!(
                "{} is a link or a special file, which a package must not hold",
                path.display()
            )));
        }
        let target = into.join(&path);
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(io(&target))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut out = std::fs::File::create(&target).map_err(io(&target))?;
        std::io::copy(&mut entry, &mut out)
            .map_err(|error| failed(format!("{}: {error}", path.display())))?;
    }
    Ok(())
}

/// GETs `url`, following up to five redirects.
async fn get(
    url: &str,
    roots: &[CertificateDer<'static>],
    accept: &'static str,
) -> Result<Response<Incoming>, String> {
    let mut url = url.to_owned();
    for _ in 0..=MAX_REDIRECTS {
        let endpoint =
            Endpoint::new(&url, roots, &[b"http/1.1"]).map_err(|error| error.to_string())?;
        let response = tokio::time::timeout(ANSWER_TIMEOUT, request(&endpoint, accept))
            .await
            .map_err(|_| format!("no answer in {} s", ANSWER_TIMEOUT.as_secs()))??;
        if !response.status().is_redirection() {
            return Ok(response);
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|location| location.to_str().ok())
            .ok_or_else(|| format!("HTTP {} without a Location", response.status()))?;
        url = resolve(endpoint.uri(), location)?;
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

async fn request(endpoint: &Endpoint, accept: &str) -> Result<Response<Incoming>, String> {
    let stream = endpoint.connect().await?;
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|error| chain(&error))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %chain(&error), "a registry connection ended");
        }
    });
    let uri = endpoint.uri();
    let request = Request::get(uri.path_and_query().map_or("/", |path| path.as_str()))
        .header(
            HOST,
            uri.authority().map_or("", |authority| authority.as_str()),
        )
        .header(ACCEPT, accept)
        .header(
            USER_AGENT,
            concat!("runtime-agents/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|error| error.to_string())?;
    sender
        .send_request(request)
        .await
        .map_err(|error| chain(&error))
}

/// A redirect's `Location`, absolute or relative to the URL that answered.
fn resolve(base: &Uri, location: &str) -> Result<String, String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Ok(location.to_owned());
    }
    let (Some(scheme), Some(authority)) = (base.scheme_str(), base.authority()) else {
        return Err(format!("cannot follow a redirect to {location:?}"));
    };
    if location.starts_with('/') {
        Ok(format!("{scheme}://{authority}{location}"))
    } else {
        Err(format!("cannot follow a relative redirect to {location:?}"))
    }
}
