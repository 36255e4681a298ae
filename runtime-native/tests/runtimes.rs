//! The runtime manager against a local stand-in of npm's registry on 127.0.0.1: a real
//! install (the program then answers `--version` as a real process), and every way a
//! download can go wrong, each of which must leave nothing behind and the previous
//! installation as it was.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use runtime_native::runtimes::{LOCK_FILE, RuntimeError, RuntimeManager, npm_platform};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the stand-in serves at a path, and how.
#[derive(Clone)]
enum Reply {
    Json(String),
    /// A page of a PEP 503 simple index.
    Html(String),
    /// These bytes, all of them.
    Bytes(Vec<u8>),
    /// A `Content-Length` of the whole, then half the bytes and a closed connection.
    CutShort(Vec<u8>),
}

/// npm's registry as far as the manager uses it: version documents and tarballs.
#[derive(Clone, Default)]
struct Registry {
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    base: String,
}

impl Registry {
    async fn start() -> Registry {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut registry = Registry {
            base: format!("http://{}/", listener.local_addr().unwrap()),
            ..Registry::default()
        };
        let routes = registry.routes.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let routes = routes.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let reply = routes.lock().unwrap().get(&path).cloned();
                    let (status, body, cut, kind) = match reply {
                        Some(Reply::Json(text)) => {
                            ("200 OK", text.into_bytes(), false, "application/json")
                        }
                        Some(Reply::Html(text)) => {
                            ("200 OK", text.into_bytes(), false, "text/html")
                        }
                        Some(Reply::Bytes(bytes)) => {
                            ("200 OK", bytes, false, "application/octet-stream")
                        }
                        Some(Reply::CutShort(bytes)) => {
                            ("200 OK", bytes, true, "application/octet-stream")
                        }
                        None => ("404 Not Found", b"{}".to_vec(), false, "application/json"),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let sent = if cut {
                        &body[..body.len() / 2]
                    } else {
                        &body[..]
                    };
                    let _ = socket.write_all(sent).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        registry.base.truncate(registry.base.len());
        registry
    }

    fn route(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_owned(), reply);
    }

    /// Publishes codex `version` whose build answers `--version` with `codex-cli VERSION`;
    /// `tamper` serves other bytes than the digest says, `cut` stops the download midway.
    fn publish(&self, version: &str, latest: bool, tamper: bool, cut: bool) {
        let platform = npm_platform();
        let build = format!("{version}-{platform}");
        let tarball = package(&[(
            "package/vendor/some-triple/bin/codex".to_owned(),
            format!("#!/bin/sh\necho codex-cli {version}\n").into_bytes(),
        )]);
        let integrity = integrity(&tarball);
        let manifest = serde_json::json!({
            "name": "@openai/codex",
            "version": version,
            "optionalDependencies": {
                format!("@openai/codex-{platform}"): format!("npm:@openai/codex@{build}"),
            },
        })
        .to_string();
        self.route(
            &format!("/@openai%2fcodex/{version}"),
            Reply::Json(manifest.clone()),
        );
        if latest {
            self.route("/@openai%2fcodex/latest", Reply::Json(manifest));
        }
        let tarball_path = format!("/tarballs/codex-{build}.tgz");
        self.route(
            &format!("/@openai%2fcodex/{build}"),
            Reply::Json(
                serde_json::json!({
                    "name": "@openai/codex",
                    "version": build,
                    "dist": { "tarball": format!("{}{}", self.base, &tarball_path[1..]), "integrity": integrity },
                })
                .to_string(),
            ),
        );
        let mut served = tarball;
        if tamper {
            let last = served.len() - 1;
            served[last] ^= 0xff;
        }
        self.route(
            &tarball_path,
            if cut {
                Reply::CutShort(served)
            } else {
                Reply::Bytes(served)
            },
        );
    }
}

/// How a wheel is served by the index stand-in.
#[derive(Clone, Copy, PartialEq)]
enum Served {
    Whole,
    Tampered,
    CutShort,
    /// Linked without a `#sha256=` digest.
    Undigested,
}

impl Registry {
    /// pip's index (`--index-url`).
    fn simple(&self) -> String {
        format!("{}simple/", self.base)
    }

    /// Publishes the wheels of `project` on its index page: (version, requires, how).
    /// Each wheel's `bin/<project>` prints `<project>, version <version>`.
    fn publish_wheels(&self, project: &str, releases: &[(&str, &[&str], Served)]) {
        let mut links = String::new();
        for (version, requires, served) in releases {
            let file = format!("{}-{version}-py3-none-any.whl", project.replace('-', "_"));
            let wheel = wheel(project, version, requires);
            let sha256 = hex(ring::digest::digest(&ring::digest::SHA256, &wheel).as_ref());
            let digest = if *served == Served::Undigested {
                String::new()
            } else {
                format!("#sha256={sha256}")
            };
            links.push_str(&format!("<a href=\"/files/{file}{digest}\">{file}</a>\n"));
            let mut bytes = wheel;
            if *served == Served::Tampered {
                // Still a valid wheel, with one changed byte in a file's text.
                let at = bytes.windows(7).position(|w| w == b"version").unwrap();
                bytes[at] = b'V';
            }
            let reply = if *served == Served::CutShort {
                Reply::CutShort(bytes)
            } else {
                Reply::Bytes(bytes)
            };
            self.route(&format!("/files/{file}"), reply);
        }
        self.route(
            &format!("/simple/{project}/"),
            Reply::Html(format!(
                "<!DOCTYPE html><html><body>\n{links}</body></html>\n"
            )),
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A wheel of `project` at `version` requiring `requires`, with a console script named
/// after the project (made by Python's zipfile, stored uncompressed).
fn wheel(project: &str, version: &str, requires: &[&str]) -> Vec<u8> {
    let module = project.replace('-', "_");
    let info = format!("{module}-{version}.dist-info");
    let metadata = format!(
        "Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n{}",
        requires
            .iter()
            .map(|dep| format!("Requires-Dist: {dep}\n"))
            .collect::<String>()
    );
    let files = [
        (
            format!("{module}/__init__.py"),
            format!("def main():\n    print('{project}, version {version}')\n"),
        ),
        (format!("{info}/METADATA"), metadata),
        (
            format!("{info}/WHEEL"),
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .into(),
        ),
        (
            format!("{info}/entry_points.txt"),
            format!("[console_scripts]\n{project} = {module}:main\n"),
        ),
        (
            format!("{info}/RECORD"),
            format!(
                "{module}/__init__.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/entry_points.txt,,\n{info}/RECORD,,\n"
            ),
        ),
    ];
    let script = "import json, sys, zipfile\n\
        files = json.load(sys.stdin)\n\
        with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_STORED) as z:\n\
        \x20   for name, text in files:\n\
        \x20       z.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), text)\n";
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(out.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&files).unwrap().as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    std::fs::read(out.path()).unwrap()
}

/// A `.tgz` of these files.
fn package(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // Written by hand so that a hostile path (`../x`) goes in as is.
        let name = path.as_bytes();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_cksum();
        tar.append(&header, &bytes[..]).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar).unwrap();
    gzip.finish().unwrap()
}

fn integrity(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA512, bytes);
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

fn version_of(program: &Path) -> String {
    let output = std::process::Command::new(program)
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            found.push(path.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn codex_installs_verified_and_recorded_and_runs() {
    let registry = Registry::start().await;
    registry.publish("1.0.0", true, false, false);
    let dir = tempfile::tempdir().unwrap();
    let manager = RuntimeManager::new(dir.path(), &registry.base);

    let installed = manager.setup("codex", None).await.unwrap();
    assert_eq!(installed.version, "1.0.0");
    assert!(installed.integrity.starts_with("sha512-"));
    assert_eq!(version_of(&installed.program), "codex-cli 1.0.0");
    assert_eq!(manager.list().unwrap(), std::slice::from_ref(&installed));
    let lock = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
    assert!(lock.contains(&installed.integrity), "{lock}");
    // Installing it again changes nothing.
    assert_eq!(
        manager.setup("codex", Some("1.0.0")).await.unwrap(),
        installed
    );
    assert!(
        !files(dir.path())
            .iter()
            .any(|path| path.starts_with(".partial"))
    );

    // An update to a newer version replaces it, and the old files go.
    registry.publish("1.1.0", true, false, false);
    let updated = manager.update("codex").await.unwrap();
    assert_eq!(version_of(&updated.program), "codex-cli 1.1.0");
    assert!(!dir.path().join("codex").join("1.0.0").exists());

    let removed = manager.remove("codex").unwrap();
    assert_eq!(removed.version, "1.1.0");
    assert!(manager.list().unwrap().is_empty());
    assert!(!dir.path().join("codex").exists());
    assert!(matches!(
        manager.remove("codex"),
        Err(RuntimeError::NotInstalled(_))
    ));
}

#[tokio::test]
async fn a_tampered_download_is_refused_and_the_previous_installation_stays() {
    let registry = Registry::start().await;
    registry.publish("1.0.0", true, false, false);
    let dir = tempfile::tempdir().unwrap();
    let manager = RuntimeManager::new(dir.path(), &registry.base);
    let before = manager.setup("codex", None).await.unwrap();
    let files_before = files(dir.path());

    registry.publish("2.0.0", true, true, false);
    let error = manager.update("codex").await.unwrap_err();
    assert!(matches!(error, RuntimeError::Integrity { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("does not match the registry's digest")
    );
    assert_eq!(manager.list().unwrap(), std::slice::from_ref(&before));
    assert_eq!(version_of(&before.program), "codex-cli 1.0.0");
    assert_eq!(files(dir.path()), files_before, "nothing left behind");
}

#[tokio::test]
async fn a_download_that_stops_midway_installs_nothing() {
    let registry = Registry::start().await;
    registry.publish("1.0.0", true, false, true);
    let dir = tempfile::tempdir().unwrap();
    let manager = RuntimeManager::new(dir.path(), &registry.base);
    let error = manager.setup("codex", None).await.unwrap_err();
    assert!(matches!(error, RuntimeError::Download { .. }), "{error}");
    assert!(manager.list().unwrap().is_empty());
    assert_eq!(
        files(dir.path()),
        Vec::<String>::new(),
        "nothing half-installed"
    );
}

#[tokio::test]
async fn a_package_with_a_path_leaving_its_directory_is_refused() {
    let registry = Registry::start().await;
    registry.publish("1.0.0", true, false, false);
    let build = format!("1.0.0-{}", npm_platform());
    let hostile = package(&[
        (
            "package/vendor/t/bin/codex".to_owned(),
            b"#!/bin/sh\n".to_vec(),
        ),
        ("package/../../escaped".to_owned(), b"owned".to_vec()),
    ]);
    registry.route(
        &format!("/@openai%2fcodex/{build}"),
        Reply::Json(
            serde_json::json!({
                "version": build,
                "dist": {
                    "tarball": format!("{}tarballs/hostile.tgz", registry.base),
                    "integrity": integrity(&hostile),
                },
            })
            .to_string(),
        ),
    );
    registry.route("/tarballs/hostile.tgz", Reply::Bytes(hostile));
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("runtimes");
    let manager = RuntimeManager::new(&dir, &registry.base);
    let error = manager.setup("codex", None).await.unwrap_err();
    assert!(
        error.to_string().contains("leaves the package's directory"),
        "{error}"
    );
    assert!(!root.path().join("escaped").exists());
    assert!(manager.list().unwrap().is_empty());
    assert_eq!(files(&dir), Vec::<String>::new());
}

#[tokio::test]
async fn unknown_runtimes_versions_and_registries_get_clear_errors() {
    let registry = Registry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manager = RuntimeManager::new(dir.path(), &registry.base);
    let unknown = manager.setup("vim", None).await.unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "unknown runtime \"vim\": this manager installs codex, llm"
    );
    let no_index = manager.setup("llm", None).await.unwrap_err().to_string();
    assert!(
        no_index.contains("name it") && no_index.contains("--pypi-index"),
        "{no_index}"
    );
    let missing = manager.setup("codex", Some("9.9.9")).await.unwrap_err();
    assert_eq!(
        missing.to_string(),
        "the registry: @openai/codex@9.9.9 is not in the registry"
    );
    let secret = RuntimeManager::new(dir.path(), "https://me:hunter2@127.0.0.1:9/");
    assert!(!format!("{secret:?}").contains("hunter2"));
    let refused = secret.setup("codex", None).await.unwrap_err().to_string();
    assert!(
        refused.contains("credentials") && !refused.contains("hunter2"),
        "{refused}"
    );
    let nowhere = RuntimeManager::new(dir.path(), "http://127.0.0.1:9/");
    let refused = nowhere.setup("codex", None).await.unwrap_err();
    assert!(
        refused.to_string().contains("could not connect"),
        "{refused}"
    );
    assert!(matches!(
        manager.update("codex").await,
        Err(RuntimeError::NotInstalled(_))
    ));
}

fn pypi_manager(registry: &Registry, dir: &Path) -> RuntimeManager {
    RuntimeManager::new(dir, &registry.base).pypi_index(registry.simple())
}

#[tokio::test]
async fn llm_installs_from_the_index_verified_in_its_own_environment_and_updates() {
    let registry = Registry::start().await;
    registry.publish_wheels("llm", &[("0.1", &[], Served::Whole)]);
    let dir = tempfile::tempdir().unwrap();
    let manager = pypi_manager(&registry, dir.path());
    let llm = manager.setup("llm", Some("0.1")).await.unwrap();
    assert_eq!(
        (llm.package.as_str(), llm.version.as_str()),
        ("llm==0.1", "0.1")
    );
    let wheel = wheel("llm", "0.1", &[]);
    let sha256 = hex(ring::digest::digest(&ring::digest::SHA256, &wheel).as_ref());
    assert_eq!(
        llm.integrity,
        format!("sha256:{sha256}"),
        "the published digest"
    );
    assert_eq!(llm.program, dir.path().join("llm/0.1/bin/llm"));
    assert_eq!(version_of(&llm.program), "llm, version 0.1", "it runs");
    assert_eq!(manager.get("llm").unwrap(), Some(llm.clone()), "recorded");
    assert_eq!(
        manager.setup("llm", Some("0.1")).await.unwrap(),
        llm,
        "the same version again does nothing"
    );

    // A new version with a dependency: every file verified, the old environment gone.
    registry.publish_wheels("tiny-dep", &[("1.0", &[], Served::Whole)]);
    registry.publish_wheels(
        "llm",
        &[
            ("0.1", &[], Served::Whole),
            ("0.2", &["tiny-dep"], Served::Whole),
        ],
    );
    let updated = manager.update("llm").await.unwrap();
    assert_eq!(updated.version, "0.2");
    assert_eq!(version_of(&updated.program), "llm, version 0.2");
    let python = dir.path().join("llm/0.2/bin/python");
    let imported = std::process::Command::new(python)
        .args(["-c", "import tiny_dep"])
        .status()
        .unwrap();
    assert!(imported.success(), "its dependency is installed");
    assert!(
        !dir.path().join("llm/0.1").exists(),
        "the old environment is gone"
    );
    assert!(!dir.path().join(".partial").exists());
}

#[tokio::test]
async fn a_tampered_cut_or_undigested_wheel_installs_nothing_and_keeps_the_previous() {
    let registry = Registry::start().await;
    registry.publish_wheels("tiny-dep", &[("1.0", &[], Served::Whole)]);
    registry.publish_wheels("llm", &[("0.1", &[], Served::Whole)]);
    let dir = tempfile::tempdir().unwrap();
    let manager = pypi_manager(&registry, dir.path());
    let before = manager.setup("llm", None).await.unwrap();
    let lock = std::fs::read(dir.path().join(LOCK_FILE)).unwrap();
    for (what, llm, dep) in [
        ("a tampered wheel", Served::Tampered, Served::Whole),
        ("a wheel cut short", Served::CutShort, Served::Whole),
        (
            "a wheel without a digest",
            Served::Undigested,
            Served::Whole,
        ),
        ("a tampered dependency", Served::Whole, Served::Tampered),
    ] {
        registry.publish_wheels("tiny-dep", &[("1.0", &[], dep)]);
        registry.publish_wheels(
            "llm",
            &[("0.1", &[], Served::Whole), ("0.2", &["tiny-dep"], llm)],
        );
        let error = manager.setup("llm", Some("0.2")).await.unwrap_err();
        match (what, &error) {
            ("a tampered wheel" | "a tampered dependency", RuntimeError::Integrity { .. })
            // pip may not notice the short body itself; its digest then does not match.
            | (
                "a wheel cut short",
                RuntimeError::Download { .. } | RuntimeError::Integrity { .. },
            )
            | ("a wheel without a digest", RuntimeError::Registry(_)) => {}
            _ => panic!("{what}: {error:?}"),
        }
        assert_eq!(
            std::fs::read(dir.path().join(LOCK_FILE)).unwrap(),
            lock,
            "{what}: the lock is as it was"
        );
        assert!(
            !dir.path().join("llm/0.2").exists(),
            "{what}: nothing half-installed"
        );
        assert!(!dir.path().join(".partial").exists(), "{what}");
        assert_eq!(version_of(&before.program), "llm, version 0.1", "{what}");
    }
}
