//! Inputs `scripts/fuzz.sh` found to crash a crate this suite does not own, turned into
//! tests through the real binaries. The Parquet ones live in `convbase-format`'s own tests.

use std::process::Command;
use std::time::Duration;

use convbase_faults_tests::bins::bin;
use convbase_faults_tests::fixtures::{copy_demo, weights};
use convbase_faults_tests::{png, proc};
use convbase_format::Manifest;

const LIMIT: Duration = Duration::from_secs(300);

/// png 0.18.1 panics (an out-of-range slice in `create_rgba_palette`) on an indexed PNG
/// whose PLTE chunk length is not a multiple of 3 (image-rs/image-png#694, fixed upstream
/// but not released). Found by the `decode_image` target; this is the minimal form: 1x1,
/// a 4-byte palette, valid CRCs. The loader must refuse it, so that `convbase-prepare`
/// records it as unusable and `convbase-extract` skips it, instead of both crashing.
#[test]
fn a_palette_of_partial_entries_is_refused_not_a_crash() {
    let bad = png::indexed_1x1(&[255, 0, 0, 0]);
    assert!(png::indexed_1x1(&[255, 0, 0]).len() == bad.len() - 1);
    assert!(
        convbase_data::decode_rgb8(&png::indexed_1x1(&[255, 0, 0])).is_ok(),
        "the well-formed twin decodes"
    );
    let decoded = std::panic::catch_unwind(|| convbase_data::decode_rgb8(&bad).map(|_| ()));
    match decoded {
        Ok(Err(e)) => eprintln!("decode_rgb8: {e}"),
        Ok(Ok(())) => panic!("a palette of 4 bytes was accepted"),
        Err(_) => panic!("decode_rgb8 panicked"),
    }

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_demo(&data, &[("train", 3), ("validation", 3)], 0);
    std::fs::write(data.join("train/shirt/bad-palette.png"), &bad).unwrap();
    let manifest = dir.path().join("manifest.parquet");
    let mut cmd = Command::new(bin("convbase-prepare"));
    cmd.arg("-q").arg(&data).arg("-o").arg(&manifest);
    proc::run(&mut cmd, LIMIT).expect_code(0, "prepare with a bad palette");
    let m = Manifest::read(&manifest).unwrap();
    let row = m
        .rows
        .iter()
        .find(|r| r.path == "train/shirt/bad-palette.png")
        .unwrap();
    assert!(row.status.contains("Png"), "{}", row.status);

    // The same file appearing after prepare: extract skips it and goes on.
    let victim = m
        .rows
        .iter()
        .find(|r| r.is_ok() && r.path.starts_with("train/"))
        .unwrap();
    std::fs::write(data.join(&victim.path), &bad).unwrap();
    let mut cmd = Command::new(bin("convbase-extract"));
    cmd.args(["--size", "32"])
        .arg("-w")
        .arg(weights())
        .arg("-m")
        .arg(&manifest)
        .arg("-o")
        .arg(dir.path().join("f.parquet"));
    let run = proc::run(&mut cmd, LIMIT);
    run.expect_code(0, "extract meeting a bad palette");
    assert!(
        run.stderr
            .contains(&format!("skipping {}", data.join(&victim.path).display())),
        "{}",
        run.stderr
    );
}
