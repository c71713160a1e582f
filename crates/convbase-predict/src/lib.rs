//! Predicts new images with a trained run in one process: the conv base the run's features
//! came from (same weights, layer, size, resize filter and preprocessing, all read from the
//! run's provenance) followed by the run's head. A fine-tuned run (`convbase-finetune`) was
//! trained on block4_pool features: the conv base runs blocks 1-4, then the run's own block5
//! and head.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candle_core::{Device, Tensor};
use convbase_cli::InputRejected;
use convbase_data::{ResizeFilter, load_for_network};
use convbase_finetune::FineTuned;
use convbase_format::FeatureProvenance;
use convbase_head_dense::DenseHead;
use convbase_head_linear::LinearHead;
use convbase_train::{Head, TrainedModel};
use convbase_vgg16::{GlobalPool, Layer, Preprocess, Vgg16, Vgg16Error, Weights};

/// A trained head of any kind this binary knows, as read from a run directory.
#[derive(Debug)]
pub enum Classifier {
    Dense(TrainedModel<DenseHead>),
    Linear(TrainedModel<LinearHead>),
    /// block5 + dense head, on block4_pool features (boxed: its configuration is large).
    FineTuned(Box<TrainedModel<FineTuned>>),
}

impl Classifier {
    /// Loads the head named in `RUN_DIR/model.safetensors`.
    pub fn load(run_dir: &Path) -> anyhow::Result<Classifier> {
        let path = run_dir.join(convbase_train::run_dir::MODEL);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
            InputRejected(format!("{}: not a safetensors model: {e}", path.display()))
        })?;
        let head = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("convbase.head").cloned())
            .ok_or_else(|| InputRejected(format!("{}: not a convbase model", path.display())))?;
        Ok(match head.as_str() {
            DenseHead::NAME => Classifier::Dense(TrainedModel::load(run_dir)?),
            LinearHead::NAME => Classifier::Linear(TrainedModel::load(run_dir)?),
            FineTuned::NAME => Classifier::FineTuned(Box::new(TrainedModel::load(run_dir)?)),
            other => bail!(InputRejected(format!(
                "{}: trained by {other}, which convbase-predict does not know",
                path.display()
            ))),
        })
    }

    /// Provenance of the features the head was trained on.
    pub fn features(&self) -> &FeatureProvenance {
        match self {
            Classifier::Dense(m) => &m.config.features,
            Classifier::Linear(m) => &m.config.features,
            Classifier::FineTuned(m) => &m.config.features,
        }
    }

    /// Class probabilities for `rows` feature vectors stored row after row.
    pub fn predict_proba(&self, values: &[f32], rows: usize) -> anyhow::Result<Vec<f32>> {
        Ok(match self {
            Classifier::Dense(m) => m.model.predict_proba(values, rows)?,
            Classifier::Linear(m) => m.model.predict_proba(values, rows)?,
            Classifier::FineTuned(m) => m.model.predict_proba(values, rows)?,
        })
    }
}

/// One image's prediction, printed as a JSON line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    pub path: String,
    /// The predicted class name.
    pub label: String,
    /// Its index in the class list.
    pub label_id: usize,
    /// The probability of the predicted class.
    pub probability: f32,
    /// Every class's probability, by name.
    pub probabilities: BTreeMap<String, f32>,
}

/// Conv base and head, ready to predict.
#[derive(Debug)]
pub struct Predictor {
    classifier: Classifier,
    model: Vgg16,
    preprocess: Preprocess,
    filter: ResizeFilter,
    size: u32,
    device: Device,
}

fn parse<T: std::str::FromStr>(what: &str, value: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| {
        InputRejected(format!(
            "run provenance: {what} `{value}` not understood: {e}"
        ))
        .into()
    })
}

impl Predictor {
    /// Rebuilds the run's extractor. `weights` overrides where the weights are read from;
    /// either way their checksum must match the one the run was trained with.
    pub fn new(run_dir: &Path, weights: Option<&str>, device: Device) -> anyhow::Result<Self> {
        let classifier = Classifier::load(run_dir)?;
        let p = classifier.features().clone();
        let spec = weights.unwrap_or(&p.weights_source);
        let w = Weights::load(spec, &device).map_err(Vgg16Error::into_anyhow)?;
        if w.sha256 != p.weights_sha256 {
            bail!(InputRejected(format!(
                "weights {spec} (sha256 {}) are not the ones the run was trained on (sha256 {})",
                w.sha256, p.weights_sha256
            )));
        }
        let layer: Layer = parse("layer", &p.layer)?;
        let pool: GlobalPool = parse("pool", &p.pool)?;
        let model = Vgg16::new(&w, layer, pool, &device)?;
        let size = p.input_size;
        if model.output_shape(size as usize) != p.feature_shape {
            bail!(InputRejected(format!(
                "the conv base gives {:?}, the run was trained on {:?}",
                model.output_shape(size as usize),
                p.feature_shape
            )));
        }
        Ok(Predictor {
            preprocess: parse("preprocess", &p.preprocess)?,
            filter: parse("resize filter", &p.resize_filter)?,
            classifier,
            model,
            size,
            device,
        })
    }

    /// The class names.
    pub fn classes(&self) -> &[String] {
        &self.classifier.features().classes
    }

    /// Predicts a batch of images; an image that cannot be read gets its error, in order.
    pub fn predict(&self, paths: &[PathBuf]) -> anyhow::Result<Vec<Result<Prediction, String>>> {
        let size = self.size as usize;
        let per_image = 3 * size * size;
        let mut pixels = Vec::with_capacity(paths.len() * per_image);
        let mut results: Vec<Result<usize, String>> = Vec::with_capacity(paths.len());
        let mut ok = 0;
        for path in paths {
            match load_for_network(path, self.size, self.filter) {
                Ok(rgb) => {
                    let start = pixels.len();
                    pixels.resize(start + per_image, 0.0);
                    self.preprocess.apply(&rgb, size, &mut pixels[start..]);
                    results.push(Ok(ok));
                    ok += 1;
                }
                Err(e) => results.push(Err(e.to_string())),
            }
        }
        let probs = if ok > 0 {
            let x = Tensor::from_vec(pixels, (ok, 3, size, size), &self.device)?;
            let features = convbase_vgg16::flatten_hwc(&self.model.forward(&x)?)?;
            self.classifier.predict_proba(&features, ok)?
        } else {
            Vec::new()
        };
        let classes = self.classes();
        let n = classes.len();
        Ok(paths
            .iter()
            .zip(results)
            .map(|(path, r)| {
                r.map(|i| {
                    let p = &probs[i * n..(i + 1) * n];
                    let best = (0..n).fold(0, |b, k| if p[k] > p[b] { k } else { b });
                    Prediction {
                        path: path.display().to_string(),
                        label: classes[best].clone(),
                        label_id: best,
                        probability: p[best],
                        probabilities: classes.iter().cloned().zip(p.iter().copied()).collect(),
                    }
                })
            })
            .collect())
    }
}
