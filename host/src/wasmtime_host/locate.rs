//! Finding the built guest component (`--component` when not given).

use std::path::{Path, PathBuf};

use saguaro_engine::{Error, Result};

/// Environment variable naming the component file; checked first.
pub const COMPONENT_ENV: &str = "SAGUARO_COMPONENT";
/// A component installed next to the `saguaro` executable.
pub const INSTALLED_NAME: &str = "saguaro_component.wasm";
/// Where `cargo build --profile wasm-release -p saguaro-wasm --target wasm32-wasip2` puts the guest,
/// relative to the cargo target directory.
pub const BUILT_RELATIVE: &str = "wasm32-wasip2/wasm-release/saguaro_wasm.wasm";
/// How to build the guest (named in the error when none is found).
pub const BUILD_HINT: &str =
    "build it with scripts/build-component.sh (or `cargo build --profile wasm-release -p saguaro-wasm --target wasm32-wasip2`), \
     or give --component PATH or SAGUARO_COMPONENT";

/// The places [`find_component`] looks, in order, for an executable at `exe`: `$SAGUARO_COMPONENT`
/// (when set), `saguaro_component.wasm` next to the executable, then the guest built in the
/// same cargo target directory (`exe` is `target/<profile>/saguaro` or
/// `target/<triple>/<profile>/saguaro`; test binaries live one folder deeper in `deps/`).
pub fn component_candidates(exe: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(COMPONENT_ENV).filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = exe.and_then(Path::parent) {
        out.push(dir.join(INSTALLED_NAME));
        // target/<profile>, target/<triple>/<profile>, target/<profile>/deps
        for target in dir.ancestors().skip(1).take(3) {
            let p = target.join(BUILT_RELATIVE);
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// The component `--engine component` runs when no `--component` is given. `$SAGUARO_COMPONENT`,
/// when set, is used as is (an error if it does not exist) so that a typo is never silently
/// replaced by another build.
pub fn find_component() -> Result<PathBuf> {
    let exe = std::env::current_exe().ok();
    let candidates = component_candidates(exe.as_deref());
    if let Some(p) = std::env::var_os(COMPONENT_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Io(format!("{}: no such component file (from ${COMPONENT_ENV})", p.display())))
        };
    }
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        Error::Io(format!("no Saguaro component found (looked at {}); {BUILD_HINT}", looked.join(", ")))
    })
}
