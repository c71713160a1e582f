//! `train`: checks that the features, the head run and the weights belong together, builds
//! the model from them, and trains it with the heads' loop into a run directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use convbase_cli::GlobalArgs;
use convbase_format::{FeatureProvenance, read_features_meta};
use convbase_head_dense::DenseHead;
use convbase_train::cli::{Session, TrainArgs};
use convbase_train::run_dir::MODEL;
use convbase_train::{Model, TrainedModel};
use convbase_vgg16::{GlobalPool, Layer, Weights};
use tracing::info;

use crate::block5;
use crate::error::FineTuneError;
use crate::model::{FineTuneConfig, FineTuned, HeadRun};

type Result<T, E = FineTuneError> = std::result::Result<T, E>;

/// Where a fine-tuning reads and writes.
#[derive(Debug, Clone)]
pub struct Job {
    /// block4_pool features (`convbase-extract --layer block4_pool --pool none`), all views.
    pub features: PathBuf,
    /// A `convbase-head-dense` run trained on block5_pool features of the same extractor.
    pub head_run: PathBuf,
    /// Where to read the conv base weights; default: the source the features record.
    pub weights: Option<String>,
    /// The run directory to write.
    pub out: PathBuf,
}

/// Checks that `block4` (the features at `features`) can feed block5, and that the head in
/// `head_run`, trained on `head` features, was trained on block5_pool outputs of the same
/// extractor (weights, size, filter, preprocessing, classes) with a matching shape.
pub fn check_inputs(
    block4: &FeatureProvenance,
    features: &Path,
    head: &FeatureProvenance,
    head_run: &Path,
) -> Result<()> {
    let reject = |msg: String| Err(FineTuneError::Rejected(msg));
    let (f, run) = (features.display(), head_run.display());
    if block4.layer != Layer::Block4Pool.keras_name() {
        return reject(format!(
            "{f}: features of layer {}; fine-tuning block5 needs block4_pool features \
             (convbase-extract --layer block4_pool --pool none)",
            block4.layer
        ));
    }
    if block4.pool != "none" || block4.flatten_order != "hwc" {
        return reject(format!(
            "{f}: block4_pool features with pooling `{}` and flatten order `{}`; block5 needs \
             the whole maps (--pool none) in hwc order",
            block4.pool, block4.flatten_order
        ));
    }
    let channels = Layer::Block4Pool.channels();
    let &[h, w, c] = block4.feature_shape.as_slice() else {
        return reject(format!(
            "{f}: feature_shape {:?} is not (H, W, C)",
            block4.feature_shape
        ));
    };
    if c != channels || h < 2 || w < 2 {
        return reject(format!(
            "{f}: feature_shape {:?}; block5 needs (H, W, {channels}) maps with H, W >= 2",
            block4.feature_shape
        ));
    }
    if head.layer != Layer::Block5Pool.keras_name() {
        return reject(format!(
            "{run}: the head was trained on {} features; fine-tuning block5 needs a head \
             trained on block5_pool features",
            head.layer
        ));
    }
    macro_rules! same {
        ($($field:ident),*) => {$(
            if block4.$field != head.$field {
                return reject(format!(
                    "{f}: {} is {:?}, but the head in {run} was trained on features with {:?}",
                    stringify!($field), block4.$field, head.$field
                ));
            }
        )*};
    }
    same!(
        weights_sha256,
        input_size,
        resize_filter,
        preprocess,
        classes
    );
    let pool: GlobalPool = head
        .pool
        .parse()
        .map_err(|e| FineTuneError::Rejected(format!("{run}: the head's features: {e}")))?;
    let expected = match pool {
        GlobalPool::None => vec![h / 2, w / 2, channels],
        GlobalPool::Avg | GlobalPool::Max => vec![channels],
    };
    if head.feature_shape != expected || (pool == GlobalPool::None && head.flatten_order != "hwc") {
        return reject(format!(
            "{run}: the head was trained on features of shape {:?} ({} order); block5_pool of \
             {f}'s maps gives {expected:?} (hwc)",
            head.feature_shape, head.flatten_order
        ));
    }
    Ok(())
}

/// The model a fine-tuning starts from, with its configuration: block5's pretrained weights
/// and the trained head read from `head_run` (recorded in the configuration).
pub fn start_model(
    block4: &FeatureProvenance,
    weights: &Weights,
    head: &TrainedModel<DenseHead>,
    head_run: &Path,
) -> Result<(FineTuneConfig, Model<FineTuned>)> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, _) in block5::tensor_names() {
        tensors.insert(
            name.clone(),
            weights.tensors()[&name].to_device(&Device::Cpu)?,
        );
    }
    for (name, var) in head.model.params.vars() {
        tensors.insert(name.clone(), var.as_tensor().copy()?);
    }
    let h = &head.config;
    let config = FineTuneConfig {
        head: h.model.clone(),
        block4_shape: block4.feature_shape.clone(),
        pool: h.features.pool.clone(),
        head_run: HeadRun {
            dir: head_run.display().to_string(),
            seed: h.seed,
            features_file: h.features_file.clone(),
            features: h.features.clone(),
            outcome: h.outcome.clone(),
        },
    };
    let model = Model::from_tensors(
        &config,
        block4.dim(),
        block4.classes.len(),
        tensors,
        &head_run.join(MODEL),
    )?;
    Ok((config, model))
}

/// Fine-tunes block5 and the head of `job.head_run` on `job.features` and writes the run
/// directory `job.out`: `config.json`, `model.safetensors` (block5 + head), `history.csv`,
/// `curves.png`, `predictions.parquet` (view 0 of every split). Inputs that do not belong
/// together are refused before anything is written.
pub fn train(job: &Job, args: &TrainArgs, global: &GlobalArgs) -> Result<()> {
    let head = TrainedModel::<DenseHead>::load(&job.head_run)?;
    let (block4, _) = read_features_meta(&job.features)?;
    check_inputs(&block4, &job.features, &head.config.features, &job.head_run)?;
    let spec = job.weights.as_deref().unwrap_or(&block4.weights_source);
    let weights = Weights::load(spec, &Device::Cpu)?;
    if weights.sha256 != block4.weights_sha256 {
        return Err(FineTuneError::Rejected(format!(
            "weights {spec} (sha256 {}) are not the ones {} were computed with (sha256 {})",
            weights.sha256,
            job.features.display(),
            block4.weights_sha256
        )));
    }
    let session = Session::start(&job.features, &job.out, args)?;
    info!(
        "{}, block4_pool {:?}; head from {}; seed {}",
        session.summary(),
        block4.feature_shape,
        job.head_run.display(),
        session.seed
    );
    let (model_config, model) = start_model(&block4, &weights, &head, &job.head_run)?;
    drop(weights);
    Ok(session.fit_into_run(model, model_config, global)?)
}
