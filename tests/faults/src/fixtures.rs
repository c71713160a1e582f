//! Inputs: the repository's demo images and real weights (made by
//! `scripts/dev/setup-test-env.sh`), subsets of them copied into temporary directories, and
//! the dev script that writes bad inputs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::proc;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

const SETUP: &str = "run scripts/dev/setup-test-env.sh first";

/// The real Keras ImageNet VGG16 weights.
pub fn weights() -> PathBuf {
    let p = repo().join("data/weights/vgg16-keras-imagenet.safetensors");
    assert!(
        p.is_file(),
        "real weights missing at {}: {SETUP}",
        p.display()
    );
    p
}

/// The demo data set (`data/demo/{train,validation,test}/{shirt,tshirt}`).
pub fn demo() -> PathBuf {
    let p = repo().join("data/demo");
    assert!(
        p.join("train/shirt").is_dir(),
        "demo data missing at {}: {SETUP}",
        p.display()
    );
    p
}

pub const CLASSES: [&str; 2] = ["shirt", "tshirt"];

/// Copies demo images into a pre-split data set at `dest`: for each `(split, n)`, files
/// `skip..skip + n` (in name order) of each class. Returns how many were copied.
pub fn copy_demo(dest: &Path, counts: &[(&str, usize)], skip: usize) -> usize {
    let mut copied = 0;
    for &(split, n) in counts {
        for class in CLASSES {
            let from = demo().join(split).join(class);
            let mut names: Vec<_> = std::fs::read_dir(&from)
                .unwrap_or_else(|e| panic!("{}: {e}", from.display()))
                .map(|e| e.expect("directory entry").file_name())
                .collect();
            names.sort();
            let to = dest.join(split).join(class);
            std::fs::create_dir_all(&to).expect("creating a class folder");
            for name in names.iter().skip(skip).take(n) {
                std::fs::copy(from.join(name), to.join(name)).expect("copying a demo image");
                copied += 1;
            }
        }
    }
    copied
}

/// The repository's Python (the dev venv: Pillow, numpy, pyarrow).
pub fn python() -> PathBuf {
    let p = repo().join(".venv/bin/python");
    assert!(p.is_file(), "{} missing: {SETUP}", p.display());
    p
}

/// Runs `scripts/dev/make-bad-corpus.py` with `args`.
pub fn make_bad_corpus(args: &[&std::ffi::OsStr]) {
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("scripts/dev/make-bad-corpus.py"))
        .args(args);
    proc::run(&mut cmd, Duration::from_secs(120)).expect_code(0, "make-bad-corpus.py");
}

/// Names of the hidden temporary files (`.NAME.tmp.*`) an interrupted atomic write leaves
/// in `dir`.
pub fn temp_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.') && n.contains(".tmp."))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
