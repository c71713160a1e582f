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
//! The directory is built as `RUN_DIR.tmp` and renamed into place when complete.

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

/// A run directory being written: files go into `RUN_DIR.tmp`, which replaces `RUN_DIR`
/// on [`StagedDir::commit`]. Dropped without a commit, it removes the staging directory.
#[derive(Debug)]
pub struct StagedDir {
    dest: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

impl StagedDir {
    /// Starts a run directory at `dest`. An existing `dest` is replaced only if it is empty
    /// or an earlier run directory (holds `config.json`); anything else is refused, so a
    /// mistyped path never deletes user files. A leftover `dest.tmp` of a killed run is
    /// removed.
    pub fn create(dest: &Path) -> Result<Self> {
        if dest.exists() && !is_replaceable(dest) {
            return Err(TrainError::Output {
                path: dest.to_path_buf(),
                problem: "exists and is not a run directory; choose another --out".into(),
            });
        }
        let mut name = dest
            .file_name()
            .ok_or_else(|| TrainError::Output {
                path: dest.to_path_buf(),
                problem: "has no directory name".into(),
            })?
            .to_os_string();
        name.push(".tmp");
        let tmp = dest.with_file_name(name);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        Ok(StagedDir {
            dest: dest.to_path_buf(),
            tmp,
            committed: false,
        })
    }

    /// Path of `name` inside the staging directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.tmp.join(name)
    }

    /// Moves the complete directory into place.
    pub fn commit(mut self) -> Result<()> {
        if self.dest.exists() {
            if !is_replaceable(&self.dest) {
                return Err(TrainError::Output {
                    path: self.dest.clone(),
                    problem: "appeared during training and is not a run directory".into(),
                });
            }
            let mut old = self.dest.clone().into_os_string();
            old.push(format!(".old.{}", std::process::id()));
            let old = PathBuf::from(old);
            std::fs::rename(&self.dest, &old).map_err(|e| TrainError::io(&self.dest, e))?;
            std::fs::rename(&self.tmp, &self.dest).map_err(|e| TrainError::io(&self.dest, e))?;
            std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
        } else {
            std::fs::rename(&self.tmp, &self.dest).map_err(|e| TrainError::io(&self.dest, e))?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
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
