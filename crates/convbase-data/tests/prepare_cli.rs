//! `convbase-prepare` run as a user runs it, on data sets made in a temporary folder.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use convbase_format::{Manifest, Split};
use sha2::{Digest, Sha256};

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// `n` distinct PNGs `CLASS.i.png` under `dir` (seeds start at `first`).
fn pngs(dir: &Path, class: &str, first: usize, n: usize) {
    for i in first..first + n {
        write(
            &dir.join(format!("{class}.{i}.png")),
            &common::png(5 + (i % 4) as u32, 4, i as u8),
        );
    }
}

fn prepare(root: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_convbase-prepare"))
        .arg(root)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .expect("spawn convbase-prepare")
}

fn ok_manifest(root: &Path, out: &Path, extra: &[&str]) -> Manifest {
    let o = prepare(root, out, extra);
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    Manifest::read(out).unwrap()
}

fn presplit(root: &Path, validation: &str) {
    for (split, n) in [("train", 3), (validation, 2), ("test", 2)] {
        for class in ["dogs", "cats"] {
            pngs(&root.join(split).join(class), class, 0, n);
        }
    }
}

#[test]
fn presplit_layout_round_trips_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    presplit(&root, "validation");
    let jpg = common::jpeg(9, 6, 1);
    write(&root.join("test/dogs/photo.JPG"), &jpg);
    let m = ok_manifest(&root, &dir.path().join("m.parquet"), &[]);

    assert_eq!(m.meta.classes, ["cats", "dogs"]);
    assert_eq!(m.meta.layout, "presplit");
    assert_eq!(
        Path::new(&m.meta.root),
        std::fs::canonicalize(&root).unwrap()
    );
    assert_eq!(m.rows.len(), 3 * 2 + 2 * 2 + 2 * 2 + 1);
    let paths: Vec<_> = m.rows.iter().map(|r| r.path.clone()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "rows sorted by path");
    for r in &m.rows {
        let (split, class) = {
            let mut parts = r.path.split('/');
            (parts.next().unwrap(), parts.next().unwrap())
        };
        assert_eq!(r.split, split.parse::<Split>().unwrap());
        assert_eq!(r.class, class);
        assert_eq!(r.label, i32::from(class == "dogs"));
        assert_eq!(r.status, "ok", "{}", r.path);
        let bytes = std::fs::read(root.join(&r.path)).unwrap();
        assert_eq!(
            r.sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&bytes)).as_str())
        );
        assert_eq!(r.bytes, Some(bytes.len() as u64));
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((r.width, r.height), (Some(img.width()), Some(img.height())));
        assert_eq!(r.color.as_deref(), Some("Rgb8"));
    }
    assert!(m.rows.iter().any(|r| r.path == "test/dogs/photo.JPG"));
}

#[test]
fn val_folder_is_validation_and_test_is_optional() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    presplit(&root, "val");
    std::fs::remove_dir_all(root.join("test")).unwrap();
    let m = ok_manifest(&root, &dir.path().join("m.parquet"), &[]);
    let splits: std::collections::BTreeSet<_> = m.rows.iter().map(|r| r.split).collect();
    assert_eq!(
        splits.into_iter().collect::<Vec<_>>(),
        [Split::Train, Split::Validation]
    );
    assert!(m.rows.iter().any(|r| r.path.starts_with("val/")));
}

#[test]
fn classes_sorted_by_name_give_labels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    for split in ["train", "validation"] {
        for class in ["zebra", "Ant", "cat"] {
            pngs(&root.join(split).join(class), class, 0, 1);
        }
    }
    let m = ok_manifest(&root, &dir.path().join("m.parquet"), &[]);
    // Byte order, as Python's sorted(os.listdir()) in Keras: upper case first.
    assert_eq!(m.meta.classes, ["Ant", "cat", "zebra"]);
    for r in &m.rows {
        assert_eq!(m.meta.classes[r.label as usize], r.class);
    }
}

fn splits_by_path(m: &Manifest) -> BTreeMap<String, Split> {
    m.rows.iter().map(|r| (r.path.clone(), r.split)).collect()
}

#[test]
fn flat_split_is_deterministic_stratified_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("flat");
    for class in ["cats", "dogs"] {
        pngs(&root.join(class), class, 0, 100);
    }
    let spec = [
        "--split",
        "train=0.6,validation=0.2,test=0.2",
        "--seed",
        "7",
    ];
    let a = ok_manifest(&root, &dir.path().join("a.parquet"), &spec);
    let b = ok_manifest(&root, &dir.path().join("b.parquet"), &spec);
    assert_eq!(a, b, "same files, spec and seed: same manifest");
    assert_eq!(
        a.meta.layout,
        "split train=0.6,validation=0.2,test=0.2 seed 7"
    );
    for class in ["cats", "dogs"] {
        for (split, frac) in [
            (Split::Train, 0.6),
            (Split::Validation, 0.2),
            (Split::Test, 0.2),
        ] {
            let n = a
                .rows
                .iter()
                .filter(|r| r.class == class && r.split == split)
                .count();
            // Binomial(100, p): within 4 standard deviations.
            let sd = f64::sqrt(100.0 * frac * (1.0 - frac));
            assert!(
                (n as f64 - 100.0 * frac).abs() <= 4.0 * sd,
                "{class} {split}: {n} of 100"
            );
        }
    }

    // Adding images never moves an existing one.
    for class in ["cats", "dogs"] {
        pngs(&root.join(class), class, 100, 50);
    }
    let c = ok_manifest(&root, &dir.path().join("c.parquet"), &spec);
    assert_eq!(c.rows.len(), 300);
    let (before, after) = (splits_by_path(&a), splits_by_path(&c));
    for (path, split) in &before {
        assert_eq!(after[path], *split, "{path} changed split");
    }

    // Another seed gives another split.
    let d = ok_manifest(
        &root,
        &dir.path().join("d.parquet"),
        &[
            "--split",
            "train=0.6,validation=0.2,test=0.2",
            "--seed",
            "8",
        ],
    );
    let moved = splits_by_path(&d)
        .iter()
        .filter(|(p, s)| after[*p] != **s)
        .count();
    assert!(moved > 60, "seed 8 moved only {moved} of 300");
}

fn expect_rejected(root: &Path, extra: &[&str], message: &str) {
    let out = root.parent().unwrap().join("rejected.parquet");
    let o = prepare(root, &out, extra);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(message),
        "expected `{message}` in: {stderr}"
    );
    assert!(!out.exists(), "no manifest on rejection");
}

#[test]
fn layouts_that_cannot_be_prepared_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    pngs(&one.join("train/cats"), "cats", 0, 2);
    pngs(&one.join("validation/cats"), "cats", 0, 2);
    expect_rejected(&one, &[], "at least 2 are needed");

    let missing = dir.path().join("missing");
    presplit(&missing, "validation");
    std::fs::remove_dir_all(missing.join("validation/dogs")).unwrap();
    expect_rejected(
        &missing,
        &[],
        "split `validation` has no folder for class `dogs`",
    );

    let empty_class = dir.path().join("empty_class");
    presplit(&empty_class, "validation");
    for f in std::fs::read_dir(empty_class.join("test/cats")).unwrap() {
        std::fs::write(f.unwrap().path(), b"").unwrap();
    }
    expect_rejected(
        &empty_class,
        &[],
        "split `test` has no usable image of class `cats`",
    );

    let flat = dir.path().join("flat");
    pngs(&flat.join("cats"), "cats", 0, 2);
    pngs(&flat.join("dogs"), "dogs", 0, 2);
    expect_rejected(&flat, &[], "pass --split");
    expect_rejected(
        &missing,
        &["--split", "train=0.5,validation=0.5"],
        "drop --split",
    );

    let o = prepare(
        &flat,
        &dir.path().join("x.parquet"),
        &["--split", "train=0.5"],
    );
    assert_eq!(o.status.code(), Some(2), "bad --split is a usage error");
}

/// Every kind of bad input, with the words its status must contain.
fn bad_data_set(root: &Path) -> Vec<(PathBuf, &'static str)> {
    presplit(root, "validation");
    let d = root.join("train/cats");
    let mut bad = vec![];
    let mut add = |name: &str, bytes: &[u8], reason: &'static str| {
        write(&d.join(name), bytes);
        bad.push((PathBuf::from(format!("train/cats/{name}")), reason));
    };
    add("zero.jpg", b"", "empty file");
    add(
        "cut.jpg",
        &common::truncated(&common::jpeg(64, 48, 2), 0.6),
        "truncated JPEG",
    );
    add(
        "cut.png",
        &common::truncated(&common::png(64, 48, 2), 0.5),
        "corrupt Png",
    );
    add(
        ".DS_Store",
        b"\x00\x00\x00\x01Bud1\x00\x00\x10\x00",
        "not an image",
    );
    add(
        "Thumbs.db",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00",
        "not an image",
    );
    add("README.md", b"# About these cats\n", "not an image");
    add(
        "bomb.png",
        &common::png_bomb(50_000),
        "too large: declares 50000x50000",
    );
    std::os::unix::fs::symlink(d.join("gone.png"), d.join("dangling.png")).unwrap();
    bad.push(("train/cats/dangling.png".into(), "broken symlink"));
    let odd = OsStr::from_bytes(b"caf\xe9.png");
    std::fs::write(d.join(odd), common::png(4, 4, 9)).unwrap();
    bad.push(("train/cats/caf\u{FFFD}.png".into(), "not valid UTF-8"));
    std::fs::create_dir_all(d.join("folder.jpg")).unwrap();
    bad.push(("train/cats/folder.jpg".into(), "a folder, not a file"));
    bad
}

#[test]
fn bad_inputs_are_recorded_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let bad = bad_data_set(&root);
    let out = dir.path().join("m.parquet");
    let o = prepare(&root, &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{} files cannot be used", bad.len())),
        "{stderr}"
    );
    assert!(stderr.contains("train/cats/.DS_Store"), "{stderr}");
    let m = Manifest::read(&out).unwrap();
    let rows: BTreeMap<_, _> = m.rows.iter().map(|r| (r.path.clone(), r)).collect();
    for (path, reason) in &bad {
        let r = rows[path.to_str().unwrap()];
        assert!(
            r.status.contains(reason),
            "{}: status `{}`",
            r.path,
            r.status
        );
        assert_eq!(r.class, "cats");
        assert_eq!((r.width, r.height, r.color.as_ref()), (None, None, None));
    }
    assert_eq!(rows["train/cats/zero.jpg"].bytes, Some(0));
    assert_eq!(
        m.rows.iter().filter(|r| r.is_ok()).count(),
        m.rows.len() - bad.len()
    );
}

#[test]
fn unreadable_file_is_recorded() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    presplit(&root, "validation");
    let p = root.join("train/dogs/locked.png");
    write(&p, &common::png(4, 4, 1));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&p).is_ok() {
        // Root (CAP_DAC_OVERRIDE) reads files whatever their mode, and CI runs as root:
        // a permission error cannot be produced here.
        eprintln!("skipped: running with the right to read mode-000 files (root)");
        return;
    }
    let m = ok_manifest(&root, &dir.path().join("m.parquet"), &[]);
    let r = m
        .rows
        .iter()
        .find(|r| r.path == "train/dogs/locked.png")
        .unwrap();
    assert!(r.status.starts_with("unreadable"), "{}", r.status);
    assert_eq!(r.sha256, None);
}

#[test]
fn strict_makes_bad_files_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let bad = bad_data_set(&root);
    expect_rejected(
        &root,
        &["--strict"],
        &format!("{} unusable file(s)", bad.len()),
    );
}

#[test]
fn help_documents_layouts_split_rule_and_exit_codes() {
    let o = Command::new(env!("CARGO_BIN_EXE_convbase-prepare"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "Exit codes:",
        "--strict",
        "SHA-256 of (seed",
        "ROOT/CLASS/*",
        "val",
    ] {
        assert!(help.contains(needle), "--help lacks `{needle}`");
    }
}
