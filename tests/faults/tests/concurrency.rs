//! Two runs writing the same output at once. `convbase-extract` locks its output: the
//! second run waits for the first, then finds the output up to date or replaces it whole.
//! A watcher reads the output path every millisecond meanwhile: it may only ever hold
//! nothing or exactly what a single uninterrupted run writes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use convbase_faults_tests::bins::bin;
use convbase_faults_tests::fixtures::{copy_demo, weights};
use convbase_faults_tests::proc;

const LIMIT: Duration = Duration::from_secs(300);

/// Reads `path` every millisecond until stopped; returns the distinct contents seen, in
/// order (`None`: absent).
struct Watcher {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Option<Vec<u8>>>>,
}

impl Watcher {
    fn start(path: &Path) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, path) = (stop.clone(), path.to_path_buf());
        let handle = std::thread::spawn(move || {
            let mut seen: Vec<Option<Vec<u8>>> = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let now = std::fs::read(&path).ok();
                if seen.last() != Some(&now) {
                    seen.push(now);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            seen
        });
        Watcher { stop, handle }
    }

    /// Stops and checks every state seen was absent or one of `allowed`, returning their
    /// names in order.
    fn finish(self, allowed: &[(&str, &[u8])]) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.handle.join().unwrap();
        seen.iter()
            .map(|s| match s {
                None => "absent".to_string(),
                Some(b) => allowed
                    .iter()
                    .find(|(_, a)| *a == b.as_slice())
                    .map(|(n, _)| n.to_string())
                    .unwrap_or_else(|| {
                        panic!(
                            "the output held {} bytes that no single run writes",
                            b.len()
                        )
                    }),
            })
            .collect()
    }
}

fn spawn(cmd: &mut Command, stderr: &Path) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

fn wait(child: &mut Child, what: &str, stderr: &Path) -> Instant {
    let status = proc::wait_for(child, LIMIT).unwrap_or_else(|| panic!("{what} hung"));
    assert!(
        status.success(),
        "{what}: {status}\n{}",
        std::fs::read_to_string(stderr).unwrap()
    );
    Instant::now()
}

struct Data {
    dir: tempfile::TempDir,
    manifest: PathBuf,
}

fn data() -> Data {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("images");
    copy_demo(&root, &[("train", 10), ("validation", 5), ("test", 5)], 0);
    let manifest = dir.path().join("manifest.parquet");
    let mut cmd = Command::new(bin("convbase-prepare"));
    cmd.arg("-q").arg(&root).arg("-o").arg(&manifest);
    proc::run(&mut cmd, LIMIT).expect_code(0, "prepare");
    Data { dir, manifest }
}

fn extract(manifest: &Path, out: &Path, size: &str) -> Command {
    let mut cmd = Command::new(bin("convbase-extract"));
    cmd.args(["--size", size, "--batch", "4", "--chunk-batches", "1"])
        .arg("-w")
        .arg(weights())
        .arg("-m")
        .arg(manifest)
        .arg("-o")
        .arg(out);
    cmd
}

/// Runs two extractions on one output, the second started while the first computes;
/// returns the states the watcher saw, and the second run's stderr.
fn two_extracts(d: &Data, sizes: [&str; 2], refs: &[(&str, &[u8])]) -> (Vec<String>, String) {
    let out = d.dir.path().join("out/features.parquet");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let work = out.with_file_name(".features.parquet.work");
    let watcher = Watcher::start(&out);
    let (err_a, err_b) = (d.dir.path().join("a.err"), d.dir.path().join("b.err"));
    let mut a = spawn(&mut extract(&d.manifest, &out, sizes[0]), &err_a);
    // The first run holds the lock once it journals its first chunk.
    let deadline = Instant::now() + LIMIT;
    while !work.exists() {
        assert!(
            a.try_wait().unwrap().is_none(),
            "first run ended before it could be overlapped"
        );
        assert!(Instant::now() < deadline, "first run never journalled");
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut b = spawn(&mut extract(&d.manifest, &out, sizes[1]), &err_b);
    let a_done = wait(&mut a, "first extract", &err_a);
    let b_done = wait(&mut b, "second extract", &err_b);
    assert!(b_done >= a_done);
    let states = watcher.finish(refs);
    let stderr = std::fs::read_to_string(&err_b).unwrap();
    assert!(
        stderr.contains("another convbase-extract is writing") && stderr.contains("waiting"),
        "the second run did not say it waits:\n{stderr}"
    );
    assert!(!work.exists(), "journal left behind");
    (states, stderr)
}

fn reference(d: &Data, size: &str) -> Vec<u8> {
    let out = d
        .dir
        .path()
        .join(format!("reference-{size}/features.parquet"));
    proc::run(&mut extract(&d.manifest, &out, size), LIMIT).expect_code(0, "reference extract");
    std::fs::read(out).unwrap()
}

#[test]
fn a_second_extract_with_the_same_settings_waits_then_finds_it_done() {
    let d = data();
    let r = reference(&d, "32");
    let (states, stderr) = two_extracts(&d, ["32", "32"], &[("single run", &r)]);
    eprintln!("output states seen: {states:?}");
    assert_eq!(states, ["absent", "single run"]);
    assert!(
        stderr.contains("is up to date"),
        "second run recomputed:\n{stderr}"
    );
}

#[test]
fn a_second_extract_with_other_settings_waits_then_replaces_it_whole() {
    let d = data();
    let (r32, r48) = (reference(&d, "32"), reference(&d, "48"));
    let (states, _) = two_extracts(
        &d,
        ["32", "48"],
        &[("first run's", &r32), ("second run's", &r48)],
    );
    eprintln!("output states seen: {states:?}");
    assert_eq!(states, ["absent", "first run's", "second run's"]);
}

/// `convbase-prepare` takes no lock: two runs on one output each write a complete
/// manifest atomically; the last rename wins.
#[test]
fn two_prepares_on_one_output_leave_one_complete_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let mut refs = Vec::new();
    for k in 0..2 {
        let root = dir.path().join(format!("images{k}"));
        copy_demo(&root, &[("train", 200), ("validation", 100)], k * 200);
        let out = dir.path().join(format!("reference{k}.parquet"));
        let mut cmd = Command::new(bin("convbase-prepare"));
        cmd.arg("-q").arg(&root).arg("-o").arg(&out);
        proc::run(&mut cmd, LIMIT).expect_code(0, "reference prepare");
        refs.push(std::fs::read(out).unwrap());
    }
    for attempt in 0..5 {
        let out = dir.path().join(format!("out{attempt}/manifest.parquet"));
        let watcher = Watcher::start(&out);
        let errs: Vec<PathBuf> = (0..2)
            .map(|k| dir.path().join(format!("{attempt}-{k}.err")))
            .collect();
        let mut children: Vec<Child> = (0..2)
            .map(|k| {
                let mut cmd = Command::new(bin("convbase-prepare"));
                cmd.arg("-q")
                    .arg(dir.path().join(format!("images{k}")))
                    .arg("-o")
                    .arg(&out);
                spawn(&mut cmd, &errs[k])
            })
            .collect();
        for (k, c) in children.iter_mut().enumerate() {
            wait(c, "prepare", &errs[k]);
        }
        let states = watcher.finish(&[("first", &refs[0]), ("second", &refs[1])]);
        eprintln!("attempt {attempt}: output states seen: {states:?}");
        assert_ne!(states.last().unwrap(), "absent");
        let left: Vec<_> = std::fs::read_dir(out.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "only the manifest remains: {left:?}");
    }
}

/// Two `train` runs with one `--out`: the run directory must end up complete and from one
/// run (its config, model and predictions agree), never a mix or a partial directory.
#[test]
fn two_trains_on_one_run_directory_leave_one_complete_run() {
    let d = data();
    let features = d.dir.path().join("features.parquet");
    let mut cmd = extract(&d.manifest, &features, "32");
    cmd.arg("-q");
    proc::run(&mut cmd, LIMIT).expect_code(0, "extract");
    let train = |out: &Path, seed: &str| {
        let mut cmd = Command::new(bin("convbase-head-dense"));
        cmd.args([
            "-q",
            "train",
            "--epochs",
            "15",
            "--batch-size",
            "4",
            "--width",
            "64",
            "--seed",
            seed,
        ])
        .arg("--features")
        .arg(&features)
        .arg("--out")
        .arg(out);
        cmd
    };
    let refs: Vec<PathBuf> = ["1", "2"]
        .iter()
        .map(|seed| {
            let out = d.dir.path().join(format!("reference{seed}"));
            proc::run(&mut train(&out, seed), LIMIT).expect_code(0, "reference train");
            out
        })
        .collect();
    let mut problems = Vec::new();
    for attempt in 0..5 {
        let out = d.dir.path().join(format!("run{attempt}"));
        let errs: Vec<PathBuf> = (0..2)
            .map(|k| d.dir.path().join(format!("t{attempt}-{k}.err")))
            .collect();
        let mut children: Vec<Child> = ["1", "2"]
            .iter()
            .zip(&errs)
            .map(|(seed, e)| spawn(&mut train(&out, seed), e))
            .collect();
        let codes: Vec<Option<i32>> = children
            .iter_mut()
            .map(|c| proc::wait_for(c, LIMIT).expect("train hung").code())
            .collect();
        if !refs
            .iter()
            .zip([1, 2])
            .any(|(r, seed)| is_run_of(&out, r, seed))
        {
            let listing: Vec<_> = std::fs::read_dir(&out)
                .map(|d| d.map(|e| e.unwrap().file_name()).collect())
                .unwrap_or_default();
            problems.push(format!("attempt {attempt}: exit codes {codes:?}; {} holds {listing:?}, not one complete run", out.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// True when `run` is a complete run directory identical to the reference run with `seed`
/// (config, model tensors and predictions all from that run).
fn is_run_of(run: &Path, reference: &Path, seed: u64) -> bool {
    let config_seed = std::fs::read(run.join("config.json"))
        .ok()
        .and_then(|c| serde_json::from_slice::<serde_json::Value>(&c).ok())
        .and_then(|c| c["seed"].as_u64());
    let predictions = |r: &Path| std::fs::read(r.join("predictions.parquet")).ok();
    config_seed == Some(seed)
        && predictions(run).is_some()
        && predictions(run) == predictions(reference)
        && convbase_faults_tests::compare::safetensors_files(
            &run.join("model.safetensors"),
            &reference.join("model.safetensors"),
        )
        .is_ok()
        && ["history.csv", "curves.png"]
            .iter()
            .all(|f| run.join(f).is_file())
}
