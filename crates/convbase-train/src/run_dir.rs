//! The run directory every head writes, and reading a trained model back from it.
//!
//! | file | content |
//! |---|---|
//! | `config.json` | [`RunConfig`]: head, seed, model and training hyperparameters, the features' provenance, how the fit ended |
//! | `model.safetensors` | the parameters (Keras layout: kernels `(inputs, units)`); metadata `convbase.head`, `convbase.config` (the config JSON), `convbase.features` (provenance JSON) |
//! | `history.csv` | `epoch,loss,acc,val_loss,val_acc,seconds` |
//! | `curves.png` | training (dots) and validation (line) accuracy and loss per epoch |
//! | `predictions.parquet` | view 0 rows of every split in the features, per `convbase_format::Predictions` |
//!
//! The directory is built in a staging directory of its own (`.RUN_DIR.tmp.PID.N`) and
//! renamed into place when complete, under a lock; see [`StagedDir`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use convbase_format::{
    FeatureProvenance, Features, PredictionRow, Predictions, Split, write_atomically,
};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::error::{Result, TrainError};
use crate::fit::{EpochMetrics, FitOutcome, FitSettings, history_csv};
use crate::head::{Head, Model};
use crate::optim::OptimizerConfig;
use crate::output::argmax_rows;
use crate::plot::write_curves;

pub const CONFIG: &str = "config.json";
pub const MODEL: &str = "model.safetensors";
pub const HISTORY: &str = "history.csv";
pub const CURVES: &str = "curves.png";
pub const PREDICTIONS: &str = "predictions.parquet";

/// `config.json`: everything needed to explain and repeat a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig<C> {
    /// The head's binary name.
    pub head: String,
    pub tool_version: String,
    pub seed: u64,
    /// The head's own hyperparameters.
    pub model: C,
    pub optimizer: OptimizerConfig,
    pub fit: FitSettings,
    /// Per-class weights of the training loss, by label; absent when unweighted.
    pub class_weights: Option<Vec<f32>>,
    /// Length of a feature vector.
    pub inputs: usize,
    pub classes: Vec<String>,
    /// The features file trained on, as given.
    pub features_file: String,
    pub features: FeatureProvenance,
    /// How the fit ended (absent only while training).
    pub outcome: Option<FitOutcome>,
}

/// A run directory being written: files go into a staging directory of this writer's own
/// (`.RUN_DIR.tmp.PID.N` beside `RUN_DIR`), which replaces `RUN_DIR` on
/// [`StagedDir::commit`]. Dropped without a commit, it removes the staging directory.
///
/// Any number of runs may write the same `RUN_DIR` at once (a sweep started twice): each
/// stages alone, and each commit (moving the old directory aside, renaming the staging one
/// into place) runs under an exclusive lock on `.RUN_DIR.lock` (present only while held), so
/// `RUN_DIR` is always one
/// run's complete directory; the last to finish wins. A writer holds a lock on its staging
/// directory for its whole life: a staging directory nobody holds belongs to a killed run
/// and is removed by the next [`StagedDir::create`] for the same `RUN_DIR`; a run directory
/// a commit moved aside and was killed before replacing (`RUN_DIR.old.PID`) is put back by
/// the next run (or removed, if the commit got its own directory in place).
#[derive(Debug)]
pub struct StagedDir {
    dest: PathBuf,
    tmp: PathBuf,
    /// The open staging directory, locked (`None` where directories cannot be locked).
    lock: Option<std::fs::File>,
    /// What `dest` was when the run started, to tell when another run replaced it since.
    dest_at_start: Option<FileId>,
    committed: bool,
}

impl StagedDir {
    /// Starts a run directory at `dest`. An existing `dest` is replaced only if it is empty
    /// or an earlier run directory (holds `config.json`); anything else is refused, so a
    /// mistyped path never deletes user files. Staging directories of killed runs for the
    /// same `dest` are removed.
    pub fn create(dest: &Path) -> Result<Self> {
        if dest.exists() && !is_replaceable(dest) {
            return Err(TrainError::Output {
                path: dest.to_path_buf(),
                problem: "exists and is not a run directory; choose another --out".into(),
            });
        }
        let name = dir_name(dest)?;
        let parent = parent_of(dest);
        std::fs::create_dir_all(&parent).map_err(|e| TrainError::io(&parent, e))?;
        remove_abandoned_staging(&parent, &name);
        if !moved_aside(&parent, &name).is_empty() {
            drop(commit_lock(dest)?); // puts back a run directory a killed commit moved aside
        }
        let dest_at_start = FileId::of(dest);
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        for _ in 0..100 {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = parent.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
            match std::fs::create_dir(&tmp) {
                Ok(()) => {}
                // A killed run of an earlier process with this PID, that nobody removed.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(TrainError::io(&tmp, e)),
            }
            // Between the create and the lock another run may take the empty directory for
            // abandoned and remove it: then it is made again under another name.
            match lock_dir(&tmp) {
                Ok(lock) => {
                    return Ok(StagedDir {
                        dest: dest.to_path_buf(),
                        tmp,
                        lock,
                        dest_at_start,
                        committed: false,
                    });
                }
                Err(Taken::Gone) => continue,
                Err(Taken::Io(e)) => return Err(TrainError::io(&tmp, e)),
            }
        }
        Err(TrainError::Output {
            path: dest.to_path_buf(),
            problem: "cannot create a staging directory beside it (removed by other runs)".into(),
        })
    }

    /// Path of `name` inside the staging directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// The staging directory.
    pub fn staging_dir(&self) -> &Path {
        &self.tmp
    }

    /// Moves the complete directory into place, under the commit lock of `RUN_DIR`.
    pub fn commit(mut self) -> Result<()> {
        let lock = commit_lock(&self.dest)?;
        if self.dest.exists() {
            if !is_replaceable(&self.dest) {
                return Err(TrainError::Output {
                    path: self.dest.clone(),
                    problem: "appeared during training and is not a run directory".into(),
                });
            }
            if FileId::of(&self.dest) != self.dest_at_start {
                tracing::warn!(
                    "{} was written by another run while this one trained; replacing it with this run's",
                    self.dest.display()
                );
            }
            let mut old = self.dest.clone().into_os_string();
            old.push(format!(".old.{}", std::process::id()));
            let old = PathBuf::from(old);
            std::fs::rename(&self.dest, &old).map_err(|e| TrainError::io(&self.dest, e))?;
            std::fs::rename(&self.tmp, &self.dest).map_err(|e| TrainError::io(&self.dest, e))?;
            self.committed = true;
            std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
        } else {
            std::fs::rename(&self.tmp, &self.dest).map_err(|e| TrainError::io(&self.dest, e))?;
            self.committed = true;
        }
        // Make the renames durable; not all platforms allow opening a directory.
        if let Ok(d) = std::fs::File::open(parent_of(&self.dest)) {
            let _ = d.sync_all();
        }
        drop(lock);
        Ok(())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            // Removed while still locked, so no other run's cleanup races this one.
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
        drop(self.lock.take());
    }
}

fn dir_name(dest: &Path) -> Result<String> {
    dest.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| TrainError::Output {
            path: dest.to_path_buf(),
            problem: "has no directory name".into(),
        })
}

fn parent_of(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Device and inode of a path, to tell whether it still names the same directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

impl FileId {
    #[cfg(unix)]
    fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| FileId(m.dev(), m.ino()))
    }

    #[cfg(unix)]
    fn of_file(file: &std::fs::File) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        file.metadata().ok().map(|m| FileId(m.dev(), m.ino()))
    }

    #[cfg(not(unix))]
    fn of(path: &Path) -> Option<FileId> {
        path.exists().then_some(FileId(0, 0))
    }

    #[cfg(not(unix))]
    fn of_file(_: &std::fs::File) -> Option<FileId> {
        Some(FileId(0, 0)) // an open file cannot be removed here
    }
}

enum Taken {
    /// The directory was removed (or replaced) before it could be locked.
    Gone,
    Io(std::io::Error),
}

/// Opens and locks the directory `dir` just created, checking it is still there once locked.
#[cfg(unix)]
fn lock_dir(dir: &Path) -> std::result::Result<Option<std::fs::File>, Taken> {
    let file = match std::fs::File::open(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Taken::Gone),
        Err(e) => return Err(Taken::Io(e)),
    };
    // A cleaner holds the lock for an instant (and then removes the directory).
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            // No locks on this file system: no cleanup of others' directories either.
            Err(std::fs::TryLockError::Error(_)) => return Ok(Some(file)),
        }
    }
    use std::os::unix::fs::MetadataExt;
    let same = match (std::fs::metadata(dir), file.metadata()) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    };
    if same {
        Ok(Some(file))
    } else {
        Err(Taken::Gone)
    }
}

#[cfg(not(unix))]
fn lock_dir(_: &Path) -> std::result::Result<Option<std::fs::File>, Taken> {
    Ok(None) // directories cannot be opened as files here: nothing is cleaned up
}

/// Removes the staging directories for `dir/NAME` of runs that were killed: those nobody
/// holds a lock on (`.NAME.tmp.PID.N`). Best effort; errors are ignored.
fn remove_abandoned_staging(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        let ours = n.strip_prefix(&prefix).is_some_and(|rest| {
            rest.split('.').count() == 2
                && rest
                    .split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        });
        if !ours || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        remove_if_unlocked(&entry.path());
    }
}

#[cfg(unix)]
fn remove_if_unlocked(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir)
        && f.try_lock().is_ok()
    {
        tracing::debug!("removing {}, left by a killed run", dir.display());
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(not(unix))]
fn remove_if_unlocked(_: &Path) {}

/// The exclusive lock on `.NAME.lock` beside a run directory, under which it is moved aside
/// and replaced. The lock file exists only while held: its holder removes it before
/// unlocking, and a waiter that then gets the lock of the removed file tries again.
#[derive(Debug)]
struct CommitLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl CommitLock {
    fn take(path: PathBuf) -> Result<CommitLock> {
        loop {
            let file = std::fs::File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| TrainError::io(&path, e))?;
            if let Err(e) = file.lock() {
                // Losing a finished training to a file system without locks would be worse
                // than the race the lock prevents.
                tracing::warn!(
                    "cannot lock {} ({e}); committing without the lock",
                    path.display()
                );
                return Ok(CommitLock { path, _file: file });
            }
            if FileId::of(&path).is_some() && FileId::of(&path) == FileId::of_file(&file) {
                return Ok(CommitLock { path, _file: file });
            }
        }
    }
}

impl Drop for CommitLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path); // still locked: see `take`
    }
}

/// Takes the commit lock of `dest` and repairs what a killed commit left: only a holder of
/// the lock moves a run directory aside (`NAME.old.PID`), so any found now was left by a
/// commit that was killed. With `dest` absent, it was killed between its two renames: the
/// previous complete run is put back; otherwise the copy is removed.
fn commit_lock(dest: &Path) -> Result<CommitLock> {
    let name = dir_name(dest)?;
    let parent = parent_of(dest);
    let lock = CommitLock::take(parent.join(format!(".{name}.lock")))?;
    let mut moved = moved_aside(&parent, &name);
    if !dest.exists()
        && let Some(previous) = moved.pop()
    {
        tracing::info!(
            "putting back {} (moved aside by a run killed while it committed)",
            dest.display()
        );
        std::fs::rename(&previous, dest).map_err(|e| TrainError::io(&previous, e))?;
    }
    for path in moved {
        tracing::debug!("removing {}, moved aside by a killed run", path.display());
        let _ = std::fs::remove_dir_all(&path);
    }
    Ok(lock)
}

/// The run directories moved aside beside `dir/NAME` (`NAME.old.PID`), sorted.
fn moved_aside(dir: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = format!("{name}.old.");
    let mut moved: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    e.file_name().to_str().is_some_and(|n| {
                        n.strip_prefix(&prefix).is_some_and(|pid| {
                            !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
                        })
                    }) && e.file_type().is_ok_and(|t| t.is_dir())
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    moved.sort();
    moved
}

fn is_replaceable(dir: &Path) -> bool {
    dir.is_dir()
        && (dir.join(CONFIG).is_file()
            || std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none()))
}

/// Writes `model.safetensors` with the head name, config and provenance as metadata.
pub fn save_model<H: Head>(
    model: &Model<H>,
    config: &RunConfig<H::Config>,
    path: &Path,
) -> Result<()> {
    let config_json = serde_json::to_string(config).expect("config serialises");
    let features_json = serde_json::to_string(&config.features).expect("provenance serialises");
    let metadata = HashMap::from([
        ("convbase.head".to_string(), H::NAME.to_string()),
        ("convbase.config".to_string(), config_json),
        ("convbase.features".to_string(), features_json),
    ]);
    let tensors = model
        .params
        .vars()
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()));
    let bytes =
        safetensors::serialize(tensors, Some(metadata)).map_err(|e| TrainError::Output {
            path: path.to_path_buf(),
            problem: format!("cannot serialise the model: {e}"),
        })?;
    write_atomically(path, |f| {
        std::io::Write::write_all(f, &bytes).map_err(|e| TrainError::io(path, e))
    })
}

/// Writes a trained model's run directory into `staged` and moves it into place: the model
/// file, `config.json`, `history.csv`, `curves.png` and the predictions of view 0 of every
/// split in `features` (logging each split's accuracy).
pub fn write_run<H: Head>(
    staged: StagedDir,
    model: &Model<H>,
    config: &RunConfig<H::Config>,
    history: &[EpochMetrics],
    features: &Features,
) -> Result<()> {
    save_model(model, config, &staged.file(MODEL))?;
    let json = serde_json::to_string_pretty(config).expect("config serialises") + "\n";
    let path = staged.file(CONFIG);
    write_atomically(&path, |f| {
        std::io::Write::write_all(f, json.as_bytes()).map_err(|e| TrainError::io(&path, e))
    })?;
    let path = staged.file(HISTORY);
    let csv = history_csv(history);
    write_atomically(&path, |f| {
        std::io::Write::write_all(f, csv.as_bytes()).map_err(|e| TrainError::io(&path, e))
    })?;
    write_curves(history, &staged.file(CURVES))?;
    let view0: Vec<usize> = (0..features.rows.len())
        .filter(|&i| features.rows.views[i] == 0)
        .collect();
    let predictions = predict_rows(model, features, &view0)?;
    for split in Split::ALL {
        let (n, ok) = predictions
            .rows
            .iter()
            .filter(|r| r.split == split)
            .fold((0, 0), |(n, ok), r| {
                (n + 1, ok + (r.predicted == r.label) as usize)
            });
        if n > 0 {
            info!("{split}: accuracy {:.4} ({ok}/{n})", ok as f64 / n as f64);
        }
    }
    predictions.write(&staged.file(PREDICTIONS))?;
    staged.commit()
}

/// A model read back from a run directory, with its configuration.
pub struct TrainedModel<H: Head> {
    pub model: Model<H>,
    pub config: RunConfig<H::Config>,
}

impl<H: Head> std::fmt::Debug for TrainedModel<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainedModel")
            .field("model", &self.model)
            .field("config", &self.config)
            .finish()
    }
}

impl<H: Head> TrainedModel<H> {
    /// Loads `RUN_DIR/model.safetensors`; its metadata alone rebuilds the head. Refuses a
    /// model of another head, or a corrupt or incomplete file (exit code 3).
    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(MODEL);
        let bytes = std::fs::read(&path).map_err(|e| TrainError::io(&path, e))?;
        let bad = |problem: String| TrainError::Model {
            path: path.clone(),
            problem,
        };
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let head = meta
            .get("convbase.head")
            .ok_or_else(|| bad("no `convbase.head` metadata: not a convbase model".into()))?;
        if head != H::NAME {
            return Err(bad(format!(
                "was trained by {head}; use that binary to predict with it, not {}",
                H::NAME
            )));
        }
        let config: RunConfig<H::Config> = meta
            .get("convbase.config")
            .ok_or_else(|| bad("no `convbase.config` metadata".into()))
            .and_then(|s| {
                serde_json::from_str(s).map_err(|e| bad(format!("`convbase.config`: {e}")))
            })?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| bad(format!("cannot read the tensors: {e}")))?;
        let model = Model::from_tensors(
            &config.model,
            config.inputs,
            config.classes.len(),
            tensors,
            &path,
        )?;
        Ok(TrainedModel { model, config })
    }

    /// Checks that `features` were computed like the ones the model was trained on.
    pub fn check_features(&self, features: &FeatureProvenance, path: &Path) -> Result<()> {
        self.config
            .features
            .check_compatible(features)
            .map_err(|why| {
                TrainError::Rejected(format!(
                    "{}: features are not compatible with the model's ({why})",
                    path.display()
                ))
            })
    }
}

/// Predicts `rows` of `features` with `model` into a predictions file's content.
pub fn predict_rows<H: Head>(
    model: &Model<H>,
    features: &Features,
    rows: &[usize],
) -> Result<Predictions> {
    let mut buf = Vec::new();
    let mut probs = Vec::with_capacity(rows.len() * model.output.classes());
    for chunk in rows.chunks(512) {
        crate::data::gather(features, chunk, &mut buf);
        probs.extend(model.predict_proba(&buf, chunk.len())?);
    }
    let classes = model.output.classes();
    let predicted = argmax_rows(&probs, classes);
    let r = &features.rows;
    let rows = rows
        .iter()
        .enumerate()
        .map(|(k, &i)| PredictionRow {
            path: r.paths[i].clone(),
            split: r.splits[i],
            label: r.labels[i],
            view: r.views[i],
            probabilities: probs[k * classes..(k + 1) * classes].to_vec(),
            predicted: predicted[k] as i32,
        })
        .collect();
    Ok(Predictions {
        classes: features.provenance.classes.clone(),
        head: H::NAME.to_string(),
        features: features.provenance.clone(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Stages a run directory whose files all say `who`.
    fn stage(dest: &Path, who: &str) -> StagedDir {
        let staged = StagedDir::create(dest).unwrap();
        for file in [CONFIG, MODEL, PREDICTIONS] {
            std::fs::write(staged.file(file), who).unwrap();
        }
        staged
    }

    /// The run `dest` holds, checked complete and from one run.
    fn run_of(dest: &Path) -> String {
        let who = std::fs::read_to_string(dest.join(CONFIG)).unwrap();
        for file in [MODEL, PREDICTIONS] {
            assert_eq!(
                std::fs::read_to_string(dest.join(file)).unwrap(),
                who,
                "{file}"
            );
        }
        assert_eq!(listing(dest).len(), 3);
        who
    }

    #[test]
    fn two_writers_of_one_run_directory_stage_apart_and_the_last_commit_wins() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("run");
        let (a, b) = (stage(&dest, "a"), stage(&dest, "b"));
        assert_ne!(a.staging_dir(), b.staging_dir());
        a.commit().unwrap();
        assert_eq!(run_of(&dest), "a");
        b.commit().unwrap(); // replaces a's whole directory
        assert_eq!(run_of(&dest), "b");
        assert_eq!(listing(dir.path()), ["run"], "nothing else left");

        // Dropped without a commit: its staging directory goes, the run stays.
        drop(stage(&dest, "c"));
        assert_eq!(run_of(&dest), "b");
        assert_eq!(listing(dir.path()), ["run"]);
    }

    #[test]
    fn concurrent_commits_always_leave_one_complete_run() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("run");
        for round in 0..20 {
            let barrier = std::sync::Barrier::new(4);
            std::thread::scope(|s| {
                for k in 0..4 {
                    let (dest, barrier) = (&dest, &barrier);
                    s.spawn(move || {
                        let staged = stage(dest, &format!("{round}-{k}"));
                        barrier.wait();
                        staged.commit().unwrap();
                    });
                }
            });
            assert!(run_of(&dest).starts_with(&format!("{round}-")));
            assert_eq!(listing(dir.path()), ["run"]);
        }
    }

    #[test]
    fn staging_directories_of_killed_runs_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("run");
        // A killed run's staging directory: nobody holds its lock.
        let dead = dir.path().join(".run.tmp.4000001.0");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(MODEL), "half").unwrap();
        // Other names are not ours.
        let other = dir.path().join(".run2.tmp.4000001.0");
        std::fs::create_dir(&other).unwrap();
        let live = stage(&dest, "live");
        assert!(!dead.exists(), "abandoned staging directory removed");
        assert!(other.exists());
        let second = stage(&dest, "second");
        assert!(
            live.staging_dir().is_dir(),
            "a live run's staging directory is kept"
        );
        second.commit().unwrap();
        live.commit().unwrap();
        assert_eq!(run_of(&dest), "live");
    }

    #[test]
    fn a_run_directory_moved_aside_by_a_killed_commit_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("run");
        stage(&dest, "previous").commit().unwrap();
        // Killed between its two renames: the previous run is aside, nothing in place.
        let aside = dir.path().join("run.old.4000001");
        std::fs::rename(&dest, &aside).unwrap();
        let staged = stage(&dest, "next");
        assert_eq!(
            run_of(&dest),
            "previous",
            "put back when the next run starts"
        );
        assert!(!aside.exists());
        // Killed after both renames: the copy aside is removed by the next commit.
        copy(&dest, &aside);
        staged.commit().unwrap();
        assert_eq!(run_of(&dest), "next");
        assert_eq!(listing(dir.path()), ["run"]);
    }

    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir(to).unwrap();
        for name in listing(from) {
            std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        }
    }

    #[test]
    fn a_directory_that_is_not_a_run_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("photos");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("cat.jpg"), "x").unwrap();
        let e = StagedDir::create(&dest).unwrap_err().to_string();
        assert!(
            e.contains("photos") && e.contains("not a run directory"),
            "{e}"
        );
        assert_eq!(listing(dir.path()), ["photos"]);
    }
}
