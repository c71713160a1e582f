//! The binaries under test. Cargo gives `CARGO_BIN_EXE_*` only to a package's own tests, so
//! they are found in the profile directory the test executable was built into
//! (`target/release/deps/..` -> `target/release/`), and refused when older than any source
//! file cargo's dep-info lists for them: a stale binary would test old code.
//! `CONVBASE_FAULTS_ALLOW_STALE=1` lets them run anyway (a tree being edited by others while
//! the suite runs); it says so on stderr.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The profile directory (`target/release`) the test executable lives under.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable in PROFILE/deps/")
        .to_path_buf()
}

/// The release binary `name`, checked to be built and up to date.
pub fn bin(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --release --bins` first \
         (`cargo test --release --workspace` builds it)",
        path.display()
    );
    if let Some(source) = newer_source(&path) {
        if std::env::var_os("CONVBASE_FAULTS_ALLOW_STALE").is_some() {
            eprintln!(
                "warning: {} is older than {} (allowed by CONVBASE_FAULTS_ALLOW_STALE)",
                path.display(),
                source.display()
            );
            return path;
        }
        panic!(
            "{} is older than {}: run `cargo build --release --bins` first",
            path.display(),
            source.display()
        );
    }
    path
}

/// The first source file in the binary's dep-info (`NAME.d`) modified after the binary.
fn newer_source(bin: &Path) -> Option<PathBuf> {
    let built = modified(bin)?;
    let mut dep_info = bin.as_os_str().to_owned();
    dep_info.push(".d");
    let text = std::fs::read_to_string(PathBuf::from(dep_info)).ok()?;
    let (_, deps) = text.lines().next()?.split_once(": ")?;
    // Make-style escaping: a space inside a path is written `\ `.
    deps.replace("\\ ", "\0")
        .split_whitespace()
        .map(|p| PathBuf::from(p.replace('\0', " ")))
        .find(|p| modified(p).is_some_and(|m| m > built))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).ok()?.modified().ok()
}
