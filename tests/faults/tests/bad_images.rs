//! Bad and unusual image files among good ones, through the real `convbase-prepare` and
//! `convbase-extract`: every unusable file is recorded with its path and reason and the run
//! goes on; every valid but unusual file (grey, palette with transparency, 16-bit, CMYK,
//! EXIF-rotated, animated GIF, wrong extension, ...) decodes to the pixels an independent
//! decoder (Pillow, numpy) gives. The corpus is written by `scripts/dev/make-bad-corpus.py`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use convbase_faults_tests::bins::bin;
use convbase_faults_tests::fixtures::{copy_demo, make_bad_corpus, weights};
use convbase_faults_tests::proc;
use convbase_format::{Features, Manifest, ManifestRow};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(300);

/// One file of the corpus, as `expected.json` describes it.
struct Expected {
    kind: String,
    path: String,
    status: String,
    /// For valid kinds: width, height, colour type, expected pixels, tolerance, twin.
    valid: Option<Valid>,
}

struct Valid {
    width: u32,
    height: u32,
    color: String,
    rgb: PathBuf,
    tolerance: u8,
    twin: String,
}

fn corpus(dir: &Path) -> Vec<Expected> {
    make_bad_corpus(&["images".as_ref(), dir.as_os_str()]);
    let json: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    json["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            let u = |k: &str| f[k].as_u64().unwrap_or(0);
            Expected {
                kind: s("kind"),
                path: s("path"),
                status: s("status"),
                valid: (s("status") == "ok").then(|| Valid {
                    width: u("width") as u32,
                    height: u("height") as u32,
                    color: s("color"),
                    rgb: dir.join(s("rgb")),
                    tolerance: u("tolerance") as u8,
                    twin: s("twin"),
                }),
            }
        })
        .collect()
}

/// Largest per-channel difference and mean absolute difference.
fn diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    let max = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0);
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    (max, sum as f64 / a.len().max(1) as f64)
}

fn l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn bad_images_are_reported_and_good_ones_processed() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus(dir.path());
    let data = dir.path().join("data");
    let good_demo = copy_demo(&data, &[("train", 5), ("validation", 5)], 0);
    let bad: Vec<&Expected> = files.iter().filter(|f| f.valid.is_none()).collect();
    let valid: Vec<&Expected> = files.iter().filter(|f| f.valid.is_some()).collect();
    eprintln!(
        "corpus: {} kinds ({} valid, {} unusable) among {good_demo} demo images",
        files.len(),
        valid.len(),
        bad.len()
    );
    assert!(files.len() >= 15);
    let mut problems = Vec::new();

    // convbase-prepare: a row per file, the reason for each unusable one.
    let manifest_path = dir.path().join("manifest.parquet");
    let mut cmd = Command::new(bin("convbase-prepare"));
    cmd.arg(&data).arg("-o").arg(&manifest_path);
    let run = proc::run(&mut cmd, LIMIT);
    run.expect_code(0, "convbase-prepare over the bad corpus");
    let want = format!("{} files cannot be used", bad.len());
    if !run.stderr.contains(&want) {
        problems.push(format!("prepare's stderr lacks `{want}`:\n{}", run.stderr));
    }
    let manifest = Manifest::read(&manifest_path).unwrap();
    let rows: BTreeMap<&str, &ManifestRow> =
        manifest.rows.iter().map(|r| (r.path.as_str(), r)).collect();
    // The first 10 are listed on stderr with their reasons.
    for line in run
        .stderr
        .lines()
        .filter(|l| l.contains("train/tshirt/") && l.contains(": "))
    {
        let listed = line
            .trim_start_matches(|c: char| !c.is_ascii_alphabetic())
            .trim_start_matches("WARN")
            .trim();
        let (path, status) = listed.split_once(": ").unwrap();
        match rows.get(path) {
            Some(r) if r.status == status => {}
            _ => problems.push(format!(
                "stderr lists `{listed}`, which is not a manifest row"
            )),
        }
    }
    for f in &files {
        let Some(row) = rows.get(f.path.as_str()) else {
            problems.push(format!("{} ({}): no manifest row", f.path, f.kind));
            continue;
        };
        match &f.valid {
            None => {
                if row.is_ok() || !row.status.contains(&f.status) {
                    problems.push(format!(
                        "{} ({}): status `{}`, expected `{}`",
                        f.path, f.kind, row.status, f.status
                    ));
                }
            }
            Some(v) => {
                if !row.is_ok() {
                    problems.push(format!(
                        "{} ({}): status `{}`, expected ok",
                        f.path, f.kind, row.status
                    ));
                }
                let got = (row.width, row.height, row.color.as_deref());
                if got != (Some(v.width), Some(v.height), Some(v.color.as_str())) {
                    problems.push(format!(
                        "{} ({}): manifest says {got:?}, expected {}x{} {}",
                        f.path, f.kind, v.width, v.height, v.color
                    ));
                }
                // The pixels every stage gets (convbase-data's loader) against Pillow/numpy.
                match convbase_data::load_rgb8(&data.join(&f.path)) {
                    Err(e) => problems.push(format!("{} ({}): {e}", f.path, f.kind)),
                    Ok(img) => {
                        let expected = std::fs::read(&v.rgb).unwrap();
                        let (max, mean) = diff(img.as_raw(), &expected);
                        if img.dimensions() != (v.width, v.height) || max > v.tolerance {
                            problems.push(format!(
                                "{} ({}): decoded {:?}, max difference {max} (mean {mean:.2}) from the reference, tolerance {}",
                                f.path, f.kind, img.dimensions(), v.tolerance
                            ));
                        } else {
                            eprintln!(
                                "  {:<45} {:>2}x{:<2} {:<6} max diff {max} mean {mean:.2}",
                                f.kind, v.width, v.height, v.color
                            );
                        }
                    }
                }
            }
        }
    }
    let demo_rows = manifest
        .rows
        .iter()
        .filter(|r| r.path.contains("/shirt.") || r.path.contains("/tshirt."))
        .count();
    if demo_rows != good_demo
        || !manifest
            .rows
            .iter()
            .filter(|r| r.path.contains("/shirt.") || r.path.contains("/tshirt."))
            .all(ManifestRow::is_ok)
    {
        problems.push(format!(
            "{demo_rows} demo rows (expected {good_demo}), all must be ok"
        ));
    }

    // convbase-extract: a feature row for every usable image, none for the others.
    let features_path = dir.path().join("features.parquet");
    let mut cmd = Command::new(bin("convbase-extract"));
    cmd.args(["--size", "32", "--batch", "8"])
        .arg("-w")
        .arg(weights())
        .arg("-m")
        .arg(&manifest_path)
        .arg("-o")
        .arg(&features_path);
    let run = proc::run(&mut cmd, LIMIT);
    run.expect_code(0, "convbase-extract over the bad corpus");
    let want = format!("{} manifest rows are not usable", bad.len());
    if !run.stderr.contains(&want) {
        problems.push(format!("extract's stderr lacks `{want}`:\n{}", run.stderr));
    }
    let features = Features::read(&features_path).unwrap();
    let got: BTreeSet<&str> = features.rows.paths.iter().map(String::as_str).collect();
    let ok: BTreeSet<&str> = manifest
        .rows
        .iter()
        .filter(|r| r.is_ok())
        .map(|r| r.path.as_str())
        .collect();
    if got != ok {
        problems.push(format!(
            "feature rows differ from the usable images: extra {:?}, missing {:?}",
            got.difference(&ok).collect::<Vec<_>>(),
            ok.difference(&got).collect::<Vec<_>>()
        ));
    }
    // Each valid kind gives the features of its twin (a plain RGB8 PNG of the expected
    // pixels): bit for bit when the decoding is exact; for JPEG kinds, nearer its twin than
    // any image with other pixels (the same pattern rotated or mirrored by another EXIF
    // orientation, other kinds, the demo images).
    let index: BTreeMap<&str, usize> = features
        .rows
        .paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let row = |p: &str| index.get(p).map(|&i| features.rows.row(i, features.dim));
    let pixels: BTreeMap<&str, (u32, u32, Vec<u8>)> = valid
        .iter()
        .flat_map(|f| {
            let v = f.valid.as_ref().unwrap();
            let px = (v.width, v.height, std::fs::read(&v.rgb).unwrap());
            [(f.path.as_str(), px.clone()), (v.twin.as_str(), px)]
        })
        .collect();
    for f in &valid {
        let v = f.valid.as_ref().unwrap();
        let (Some(a), Some(t)) = (row(&f.path), row(&v.twin)) else {
            continue; // already reported as a missing row
        };
        if v.tolerance == 0 {
            if a.iter().zip(t).any(|(x, y)| x.to_bits() != y.to_bits()) {
                problems.push(format!(
                    "{} ({}): features differ from its twin's",
                    f.path, f.kind
                ));
            }
            continue;
        }
        let mine = &pixels[f.path.as_str()];
        let other_pixels = |p: &str| match pixels.get(p) {
            None => true,
            Some(px) => {
                (px.0, px.1) != (mine.0, mine.1) || diff(&px.2, &mine.2).0 > 2 * v.tolerance
            }
        };
        let to_twin = l2(a, t);
        let (nearest, other) = features
            .rows
            .paths
            .iter()
            .filter(|p| other_pixels(p))
            .map(|p| (l2(a, row(p).unwrap()), p))
            .fold((f64::INFINITY, None), |m, (d, p)| {
                if d < m.0 { (d, Some(p)) } else { m }
            });
        eprintln!(
            "  {:<45} feature distance to twin {to_twin:.2}, to nearest other image {nearest:.2}",
            f.kind
        );
        if to_twin >= nearest {
            problems.push(format!(
                "{} ({}): features nearer {other:?} ({nearest:.2}) than its twin ({to_twin:.2})",
                f.path, f.kind
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Files that break between `convbase-prepare` and `convbase-extract` (deleted, replaced
/// by text, truncated, turned into a folder, a decompression bomb) are skipped by extract,
/// each reported with its path and reason; the others are all extracted.
#[test]
fn images_broken_after_prepare_are_skipped_with_path_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_demo(&data, &[("train", 6), ("validation", 3)], 0);
    let manifest_path = dir.path().join("manifest.parquet");
    let mut cmd = Command::new(bin("convbase-prepare"));
    cmd.arg("-q").arg(&data).arg("-o").arg(&manifest_path);
    proc::run(&mut cmd, LIMIT).expect_code(0, "prepare");
    let manifest = Manifest::read(&manifest_path).unwrap();
    let train: Vec<&str> = manifest
        .rows
        .iter()
        .filter(|r| r.path.starts_with("train/"))
        .map(|r| r.path.as_str())
        .collect();

    let png = std::fs::read(data.join(train[2])).unwrap();
    // The same PNG with its header saying 50000x50000 (and the header's CRC fixed).
    let mut bomb = png.clone();
    bomb[16..20].copy_from_slice(&50_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&50_000u32.to_be_bytes());
    let crc = convbase_faults_tests::png::crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let breakages: [(&str, &str); 5] = [
        (train[0], "No such file"),
        (train[1], "not an image"),
        (train[2], "corrupt Png"),
        (train[3], "Is a directory"),
        (train[4], "too large: declares 50000x50000"),
    ];
    std::fs::remove_file(data.join(train[0])).unwrap();
    std::fs::write(data.join(train[1]), "replaced by a text file\n").unwrap();
    std::fs::write(data.join(train[2]), &png[..png.len() / 2]).unwrap();
    std::fs::remove_file(data.join(train[3])).unwrap();
    std::fs::create_dir(data.join(train[3])).unwrap();
    std::fs::write(data.join(train[4]), &bomb).unwrap();

    let out = dir.path().join("features.parquet");
    let mut cmd = Command::new(bin("convbase-extract"));
    cmd.args(["--size", "32", "--batch", "4"])
        .arg("-w")
        .arg(weights())
        .arg("-m")
        .arg(&manifest_path)
        .arg("-o")
        .arg(&out);
    let run = proc::run(&mut cmd, LIMIT);
    run.expect_code(0, "extract with images broken after prepare");
    let mut problems = Vec::new();
    for (path, reason) in breakages {
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains("skipping") && l.contains(path));
        match line {
            Some(l) if l.contains(&data.join(path).display().to_string()) && l.contains(reason) => {
                eprintln!("  {}", l.trim())
            }
            _ => problems.push(format!(
                "no `skipping {path}: ...{reason}...` line on stderr"
            )),
        }
    }
    if !run
        .stderr
        .contains(&format!("{} failed to decode", breakages.len()))
    {
        problems.push(format!(
            "summary lacks `{} failed to decode`",
            breakages.len()
        ));
    }
    let features = Features::read(&out).unwrap();
    let got: BTreeSet<&str> = features.rows.paths.iter().map(String::as_str).collect();
    let want: BTreeSet<&str> = manifest
        .rows
        .iter()
        .map(|r| r.path.as_str())
        .filter(|p| !breakages.iter().any(|(b, _)| b == p))
        .collect();
    if got != want {
        problems.push(format!("rows {got:?}, expected {want:?}"));
    }
    assert!(
        problems.is_empty(),
        "{}\nstderr:\n{}",
        problems.join("\n"),
        run.stderr
    );
}

/// An image whose content changes between `convbase-prepare` and `convbase-extract` must
/// not have the new content's features stored under the old content's hash (the cache
/// key): once the image is back to what the manifest describes, extract must give what a
/// fresh extraction gives.
#[test]
fn an_image_changed_after_prepare_never_poisons_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_demo(&data, &[("train", 3), ("validation", 3)], 0);
    let manifest_path = dir.path().join("manifest.parquet");
    let prepare = || {
        let mut cmd = Command::new(bin("convbase-prepare"));
        cmd.arg("-q").arg(&data).arg("-o").arg(&manifest_path);
        proc::run(&mut cmd, LIMIT).expect_code(0, "prepare");
    };
    let extract = |out: &Path| {
        let mut cmd = Command::new(bin("convbase-extract"));
        cmd.args(["-q", "--size", "32"])
            .arg("-w")
            .arg(weights())
            .arg("-m")
            .arg(&manifest_path)
            .arg("-o")
            .arg(out);
        proc::run(&mut cmd, LIMIT)
    };
    prepare();
    let victim = data
        .join("train/shirt")
        .join(first_name(&data.join("train/shirt")));
    let original = std::fs::read(&victim).unwrap();
    let other = data
        .join("train/tshirt")
        .join(first_name(&data.join("train/tshirt")));
    std::fs::copy(&other, &victim).unwrap(); // edited after prepare
    let cached = dir.path().join("features.parquet");
    extract(&cached); // whatever it does with the edited file
    std::fs::write(&victim, &original).unwrap(); // back to what the manifest says
    prepare();
    extract(&cached).expect_code(0, "extract after restoring the image");
    let fresh = dir.path().join("fresh.parquet");
    extract(&fresh).expect_code(0, "fresh extract");
    let (a, b) = (
        Features::read(&cached).unwrap(),
        Features::read(&fresh).unwrap(),
    );
    convbase_faults_tests::compare::features(&a, &b).unwrap();
}

fn first_name(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.remove(0)
}
