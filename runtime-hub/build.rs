//! Embeds the web UI's wasm package when `RUNTIME_HUB_UI_PKG` names its directory (what
//! `scripts/build-wasm DIR` writes; `scripts/hub` sets it): its `.js` and `.wasm` files
//! become `PACKAGE` in `ui.rs`. Without it the hub builds as it is, and its page says how
//! to get the UI.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(hub_ui_package)");
    println!("cargo::rerun-if-env-changed=RUNTIME_HUB_UI_PKG");
    let Some(dir) = std::env::var_os("RUNTIME_HUB_UI_PKG").filter(|dir| !dir.is_empty()) else {
        return;
    };
    let dir = PathBuf::from(dir);
    // Build scripts run in the package's directory, not where cargo was invoked.
    assert!(
        dir.is_absolute(),
        "RUNTIME_HUB_UI_PKG={} must be an absolute path",
        dir.display()
    );
    let dir = match dir.canonicalize() {
        Ok(dir) => dir,
        Err(error) => panic!("RUNTIME_HUB_UI_PKG={}: {error}", dir.display()),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("RUNTIME_HUB_UI_PKG={}: {error}", dir.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|extension| extension == "js" || extension == "wasm")
        })
        .collect();
    files.sort();
    assert!(
        files.iter().any(|path| path.ends_with("runtime_wasm.js")),
        "RUNTIME_HUB_UI_PKG={} holds no runtime_wasm.js: build it with scripts/build-wasm",
        dir.display()
    );
    let mut table = String::from("const PACKAGE: &[(&str, &[u8])] = &[\n");
    for path in &files {
        println!("cargo::rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    table.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("ui_package.rs"), table).expect("OUT_DIR is writable");
    println!("cargo::rustc-cfg=hub_ui_package");
}
