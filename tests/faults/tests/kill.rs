//! SIGKILL at random moments: `convbase-prepare`, `convbase-extract` and
//! `convbase-head-dense train` never leave a half-written file at a final path, and a run to
//! completion after any number of kills gives exactly what an uninterrupted run gives
//! (manifest row for row, features bit for bit, predictions and model weights bit for bit).
//!
//! Each stage alternates two kinds of round: from nothing, and over a complete output of
//! other input (which must stay intact until the new one replaces it whole).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use convbase_faults_tests::bins::bin;
use convbase_faults_tests::fixtures::{copy_demo, temp_files, weights};
use convbase_faults_tests::kill::{self, Stage};
use convbase_faults_tests::{compare, long, proc};
use convbase_format::{Features, Manifest, Predictions};

const LIMIT: Duration = Duration::from_secs(600);

fn kills() -> usize {
    if long() { 60 } else { 20 }
}

/// Runs `cmd` to completion, returning its wall time.
fn timed(cmd: &mut Command, what: &str) -> Duration {
    let done = proc::run(cmd, LIMIT);
    done.expect_code(0, what);
    Duration::from_secs_f64(done.seconds)
}

fn bytes(p: &Path) -> Option<Vec<u8>> {
    std::fs::read(p).ok()
}

/// A completed run removes what killed runs left beside its output.
fn no_temp_files(out: &Path) -> Result<(), String> {
    let left = temp_files(out.parent().unwrap());
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "temporary files of killed runs left beside the output: {left:?}"
        ))
    }
}

/// What a file at a final path holds, among the complete outputs it may hold (by name).
fn which(
    out: &Path,
    allowed: &[(&str, &[u8])],
    read_ok: impl Fn(&Path) -> bool,
) -> Result<String, String> {
    let Some(have) = bytes(out) else {
        return Ok("absent".into());
    };
    if !read_ok(out) {
        return Err(format!(
            "{} is not a valid complete file ({} bytes)",
            out.display(),
            have.len()
        ));
    }
    allowed
        .iter()
        .find(|(_, b)| *b == have.as_slice())
        .map(|(name, _)| name.to_string())
        .ok_or_else(|| {
            format!(
                "{} is readable but equals no uninterrupted run",
                out.display()
            )
        })
}

// ---------------------------------------------------------------------------------------
// convbase-prepare

struct Prepare {
    dir: tempfile::TempDir,
    roots: [PathBuf; 2],
    refs: [Vec<u8>; 2],
    durations: [Duration; 2],
    out: PathBuf,
}

impl Prepare {
    fn new() -> Prepare {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        // B: A plus 10 training images per class that A does not have.
        let per = if long() {
            [990, 500, 500]
        } else {
            [100, 50, 50]
        };
        let counts = [("train", per[0]), ("validation", per[1]), ("test", per[2])];
        copy_demo(&a, &counts, 0);
        copy_demo(&b, &counts, 0);
        copy_demo(&b, &[("train", 10)], per[0]);
        let mut p = Prepare {
            roots: [a, b],
            refs: [vec![], vec![]],
            durations: [Duration::ZERO; 2],
            out: dir.path().join("out/manifest.parquet"),
            dir,
        };
        for k in 0..2 {
            let reference = p.dir.path().join(format!("reference{k}.parquet"));
            let mut cmd = Command::new(bin("convbase-prepare"));
            cmd.arg("-q").arg(&p.roots[k]).arg("-o").arg(&reference);
            p.durations[k] = timed(&mut cmd, "uninterrupted prepare");
            p.refs[k] = std::fs::read(&reference).unwrap();
        }
        assert_ne!(p.refs[0], p.refs[1]);
        p
    }
}

impl Stage for Prepare {
    fn name(&self) -> &str {
        "convbase-prepare"
    }
    fn start_round(&mut self, round: usize) {
        let _ = std::fs::remove_file(&self.out);
        std::fs::create_dir_all(self.out.parent().unwrap()).unwrap();
        if round % 2 == 1 {
            std::fs::write(&self.out, &self.refs[0]).unwrap();
        }
    }
    fn command(&self, round: usize) -> Command {
        let mut cmd = Command::new(bin("convbase-prepare"));
        cmd.arg("-q")
            .arg(&self.roots[round % 2])
            .arg("-o")
            .arg(&self.out);
        cmd
    }
    fn duration(&self, round: usize) -> Duration {
        self.durations[round % 2]
    }
    fn after_kill(&self, round: usize) -> Result<String, String> {
        let k = round % 2;
        let allowed: Vec<(&str, &[u8])> = if k == 0 {
            vec![("complete", &self.refs[0])]
        } else {
            vec![
                ("previous output intact", &self.refs[0]),
                ("complete", &self.refs[1]),
            ]
        };
        let state = which(&self.out, &allowed, |p| Manifest::read(p).is_ok())?;
        if k == 1 && state == "absent" {
            return Err("the previous complete manifest disappeared".into());
        }
        Ok(state)
    }
    fn after_completion(&self, round: usize) -> Result<(), String> {
        let k = round % 2;
        no_temp_files(&self.out)?;
        if bytes(&self.out).as_deref() == Some(&self.refs[k][..]) {
            return Ok(());
        }
        let reference = self.dir.path().join(format!("reference{k}.parquet"));
        compare::manifests(
            &Manifest::read(&self.out).map_err(|e| e.to_string())?,
            &Manifest::read(&reference).unwrap(),
        )?;
        Err("same rows but not the same bytes".into())
    }
    fn commit_markers(&self) -> Vec<String> {
        temp_files(self.out.parent().unwrap())
    }
}

#[test]
fn prepare_survives_kills() {
    let mut stage = Prepare::new();
    let report = kill::run(&mut stage, kills(), kill::seed(), LIMIT);
    assert!(report.kills >= kills());
}

// ---------------------------------------------------------------------------------------
// convbase-extract

/// A small data set and its manifest: 40 demo images (A), and A plus 8 (B).
struct Inputs {
    manifests: [PathBuf; 2],
}

fn extract_inputs(dir: &Path) -> Inputs {
    let per = if long() { [100, 50, 50] } else { [10, 5, 5] };
    let counts = [("train", per[0]), ("validation", per[1]), ("test", per[2])];
    let mut manifests = [PathBuf::new(), PathBuf::new()];
    for (k, m) in manifests.iter_mut().enumerate() {
        let root = dir.join(format!("images{k}"));
        copy_demo(&root, &counts, 0);
        if k == 1 {
            copy_demo(&root, &[("train", 4)], per[0]);
        }
        *m = dir.join(format!("manifest{k}.parquet"));
        let mut cmd = Command::new(bin("convbase-prepare"));
        cmd.arg("-q").arg(&root).arg("-o").arg(&*m);
        timed(&mut cmd, "prepare");
    }
    Inputs { manifests }
}

fn extract_cmd(manifest: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(bin("convbase-extract"));
    cmd.args(["-q", "--size", "32", "--batch", "4", "--chunk-batches", "1"])
        .arg("-w")
        .arg(weights())
        .arg("-m")
        .arg(manifest)
        .arg("-o")
        .arg(out);
    cmd
}

fn work_dir(out: &Path) -> PathBuf {
    let name = out.file_name().unwrap().to_string_lossy();
    out.with_file_name(format!(".{name}.work"))
}

struct Extract {
    dir: tempfile::TempDir,
    inputs: Inputs,
    refs: [Vec<u8>; 2],
    durations: [Duration; 2],
    out: PathBuf,
}

impl Extract {
    fn new() -> Extract {
        let dir = tempfile::tempdir().unwrap();
        let inputs = extract_inputs(dir.path());
        let mut refs = [vec![], vec![]];
        let mut durations = [Duration::ZERO; 2];
        for k in 0..2 {
            let reference = dir.path().join(format!("reference{k}/features.parquet"));
            durations[k] = timed(
                &mut extract_cmd(&inputs.manifests[k], &reference),
                "uninterrupted extract",
            );
            refs[k] = std::fs::read(&reference).unwrap();
        }
        Extract {
            out: dir.path().join("out/features.parquet"),
            dir,
            inputs,
            refs,
            durations,
        }
    }

    fn reference(&self, k: usize) -> Features {
        Features::read(
            &self
                .dir
                .path()
                .join(format!("reference{k}/features.parquet")),
        )
        .unwrap()
    }
}

impl Stage for Extract {
    fn name(&self) -> &str {
        "convbase-extract"
    }
    fn start_round(&mut self, round: usize) {
        let _ = std::fs::remove_file(&self.out);
        let _ = std::fs::remove_dir_all(work_dir(&self.out));
        std::fs::create_dir_all(self.out.parent().unwrap()).unwrap();
        if round % 2 == 1 {
            std::fs::write(&self.out, &self.refs[0]).unwrap();
        }
    }
    fn command(&self, round: usize) -> Command {
        extract_cmd(&self.inputs.manifests[round % 2], &self.out)
    }
    fn duration(&self, round: usize) -> Duration {
        self.durations[round % 2]
    }
    fn after_kill(&self, round: usize) -> Result<String, String> {
        let k = round % 2;
        let allowed: Vec<(&str, &[u8])> = if k == 0 {
            vec![("complete", &self.refs[0])]
        } else {
            vec![
                ("previous output intact", &self.refs[0]),
                ("complete", &self.refs[1]),
            ]
        };
        let state = which(&self.out, &allowed, |p| Features::read(p).is_ok())?;
        if k == 1 && state == "absent" {
            return Err("the previous complete features file disappeared".into());
        }
        let chunks = std::fs::read_dir(work_dir(&self.out))
            .map(|d| d.count())
            .unwrap_or(0);
        Ok(format!(
            "{state}, {} journal",
            if chunks > 0 { "with" } else { "no" }
        ))
    }
    fn after_completion(&self, round: usize) -> Result<(), String> {
        let k = round % 2;
        if work_dir(&self.out).exists() {
            return Err("journal left after completion".into());
        }
        no_temp_files(&self.out)?;
        if bytes(&self.out).as_deref() == Some(&self.refs[k][..]) {
            return Ok(());
        }
        let got = Features::read(&self.out).map_err(|e| e.to_string())?;
        compare::features(&got, &self.reference(k))?;
        Err("same rows and bits but not the same file bytes".into())
    }
    fn commit_markers(&self) -> Vec<String> {
        temp_files(self.out.parent().unwrap())
    }
}

#[test]
fn extract_survives_kills() {
    let mut stage = Extract::new();
    let report = kill::run(&mut stage, kills(), kill::seed(), LIMIT);
    assert!(report.kills >= kills());
}

// ---------------------------------------------------------------------------------------
// convbase-head-dense train

/// The files of a complete run directory whose content must not depend on timing.
fn run_dir_check(run: &Path, reference: &Path) -> Result<(), String> {
    for f in [
        "config.json",
        "model.safetensors",
        "history.csv",
        "curves.png",
        "predictions.parquet",
    ] {
        let len = std::fs::metadata(run.join(f)).map(|m| m.len()).unwrap_or(0);
        if len == 0 {
            return Err(format!("{} missing or empty", run.join(f).display()));
        }
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap())
            .map_err(|e| format!("config.json: {e}"))?;
    if config["outcome"].is_null() {
        return Err("config.json has no outcome".into());
    }
    let read =
        |p: &Path| Predictions::read(&p.join("predictions.parquet")).map_err(|e| e.to_string());
    compare::predictions(&read(run)?, &read(reference)?)?;
    compare::safetensors_files(
        &run.join("model.safetensors"),
        &reference.join("model.safetensors"),
    )?;
    // history.csv: every column but the wall time.
    let history = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("history.csv"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.rsplit_once(',').map_or(l, |(head, _)| head).to_string())
            .collect()
    };
    if history(run) != history(reference) {
        return Err("history.csv differs".into());
    }
    Ok(())
}

struct Train {
    dir: tempfile::TempDir,
    features: PathBuf,
    durations: [Duration; 2],
    out: PathBuf,
}

const SEEDS: [&str; 2] = ["7", "8"];

fn train_cmd(features: &Path, out: &Path, seed: &str) -> Command {
    let mut cmd = Command::new(bin("convbase-head-dense"));
    let epochs = if long() { "60" } else { "15" };
    cmd.args([
        "-q",
        "train",
        "--epochs",
        epochs,
        "--batch-size",
        "4",
        "--width",
        "64",
        "--seed",
        seed,
    ])
    .arg("--features")
    .arg(features)
    .arg("--out")
    .arg(out);
    cmd
}

impl Train {
    fn new() -> Train {
        let dir = tempfile::tempdir().unwrap();
        let inputs = extract_inputs(dir.path());
        let features = dir.path().join("features.parquet");
        timed(&mut extract_cmd(&inputs.manifests[0], &features), "extract");
        let mut durations = [Duration::ZERO; 2];
        for k in 0..2 {
            let reference = dir.path().join(format!("reference{k}"));
            durations[k] = timed(
                &mut train_cmd(&features, &reference, SEEDS[k]),
                "uninterrupted train",
            );
        }
        Train {
            out: dir.path().join("out/run"),
            dir,
            features,
            durations,
        }
    }
    fn reference(&self, k: usize) -> PathBuf {
        self.dir.path().join(format!("reference{k}"))
    }
    /// Run directories moved aside by a commit that was killed (`RUN.old.PID`).
    fn moved_aside(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.out.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("run.old.")
            })
            .collect()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

impl Stage for Train {
    fn name(&self) -> &str {
        "convbase-head-dense train"
    }
    fn start_round(&mut self, round: usize) {
        let _ = std::fs::remove_dir_all(&self.out);
        std::fs::create_dir_all(self.out.parent().unwrap()).unwrap();
        if round % 2 == 1 {
            copy_dir(&self.reference(0), &self.out);
        }
    }
    fn command(&self, round: usize) -> Command {
        train_cmd(&self.features, &self.out, SEEDS[round % 2])
    }
    fn duration(&self, round: usize) -> Duration {
        self.durations[round % 2]
    }
    fn after_kill(&self, round: usize) -> Result<String, String> {
        let k = round % 2;
        if !self.out.exists() {
            if k == 1 && self.moved_aside().is_empty() {
                return Err("the previous complete run directory disappeared".into());
            }
            return Ok(if k == 1 {
                "absent (previous run moved aside mid-commit)"
            } else {
                "absent"
            }
            .into());
        }
        if run_dir_check(&self.out, &self.reference(k)).is_ok() {
            return Ok("complete".into());
        }
        if k == 1 && run_dir_check(&self.out, &self.reference(0)).is_ok() {
            return Ok("previous output intact".into());
        }
        Err(format!(
            "{} is neither a complete run nor the previous one: {}",
            self.out.display(),
            run_dir_check(&self.out, &self.reference(k)).unwrap_err()
        ))
    }
    fn after_completion(&self, round: usize) -> Result<(), String> {
        run_dir_check(&self.out, &self.reference(round % 2))
    }
    /// The predictions' temporary file: written last before the staging directory (each
    /// run's own, `.run.tmp.PID.N`) is renamed into place.
    fn commit_markers(&self) -> Vec<String> {
        let mut m: Vec<String> = std::fs::read_dir(self.out.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".run.tmp."))
            .flat_map(|staging| {
                temp_files(&self.out.with_file_name(&staging))
                    .into_iter()
                    .map(move |f| format!("{staging}/{f}"))
            })
            .collect();
        m.retain(|n| n.contains("predictions"));
        m
    }
}

#[test]
fn train_survives_kills() {
    let mut stage = Train::new();
    let report = kill::run(&mut stage, kills(), kill::seed(), LIMIT);
    assert!(report.kills >= kills());
    let left: Vec<_> = std::fs::read_dir(stage.out.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "run")
        .collect();
    eprintln!("convbase-head-dense train: left beside the run directory: {left:?}");
}
