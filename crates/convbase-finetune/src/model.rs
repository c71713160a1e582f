//! The fine-tuned model: block5 on block4_pool rows, then the dense head it started from.

use candle_core::{D, Tensor};
use convbase_format::FeatureProvenance;
use convbase_head_dense::{DenseConfig, DenseHead};
use convbase_train::{FitOutcome, Head, Mode, Params, Result, TrainError};
use convbase_vgg16::{GlobalPool, Layer};
use serde::{Deserialize, Serialize};

use crate::block5::{Block5, hwc_to_nchw, nchw_to_hwc};

/// The dense head run a fine-tuning started from, recorded in the fine-tuned run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadRun {
    /// The run directory, as given.
    pub dir: String,
    pub seed: u64,
    /// The block5_pool features file the head was trained on, and its provenance.
    pub features_file: String,
    pub features: FeatureProvenance,
    /// How the head's own training ended.
    pub outcome: Option<FitOutcome>,
}

/// The fine-tuned model's configuration (`config.json`'s `model`, and the model file's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuneConfig {
    /// The dense head's hyperparameters, as it was trained (dropout included).
    pub head: DenseConfig,
    /// (H, W, C) of the block4_pool maps the model takes: 9x9x512 at 150 px.
    pub block4_shape: Vec<usize>,
    /// Global pooling of block5_pool before the head (`none`, `avg`, `max`), as in the
    /// features the head was trained on.
    pub pool: String,
    pub head_run: HeadRun,
}

/// block5 + the dense head, on block4_pool feature rows. Its parameters are block5's six
/// tensors under torchvision names (`features.{24,26,28}.{weight,bias}`, OIHW) and the
/// dense head's (`hidden.{i}.*`, `output.*`, Keras layout).
#[derive(Debug)]
pub struct FineTuned {
    block5: Block5,
    /// (H, W, C) of the input maps.
    shape: (usize, usize, usize),
    pool: GlobalPool,
    head: DenseHead,
}

impl FineTuned {
    /// The block5_pool output the head sees, for block4_pool rows.
    ///
    /// # Shapes
    /// `x`: (N, H*W*C) -> (N, H/2 * W/2 * C) flattened HWC, or (N, C) when pooled
    pub fn head_inputs(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (h, w, c) = self.shape;
        let n = x.dim(0)?;
        // A row in HWC order is an NHWC map: block5 runs on it as it is.
        let maps = self.block5.forward(&x.reshape((n, h, w, c))?)?;
        match self.pool {
            GlobalPool::None => maps.flatten_from(1),
            GlobalPool::Avg => maps.mean(1)?.mean(1),
            GlobalPool::Max => maps.max(1)?.max(1),
        }
    }

    /// As [`FineTuned::head_inputs`] through block5's plain candle path (NCHW maps,
    /// [`Block5::forward_nchw`]), for comparison.
    pub fn head_inputs_nchw(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (h, w, c) = self.shape;
        let maps = self.block5.forward_nchw(&hwc_to_nchw(x, h, w, c)?)?;
        match self.pool {
            GlobalPool::None => nchw_to_hwc(&maps),
            GlobalPool::Avg => maps.mean(D::Minus1)?.mean(D::Minus1),
            GlobalPool::Max => maps.max(D::Minus1)?.max(D::Minus1),
        }
    }
}

impl Head for FineTuned {
    const NAME: &'static str = "convbase-finetune";
    const ABOUT: &'static str = "VGG16's block5 fine-tuned with a trained dense head on cached \
        block4_pool features (the seed's variant 3).";
    type Config = FineTuneConfig;

    fn build(
        config: &FineTuneConfig,
        inputs: usize,
        units: usize,
        params: &mut Params,
    ) -> Result<Self> {
        let channels = Layer::Block4Pool.channels();
        let &[h, w, c] = config.block4_shape.as_slice() else {
            return Err(TrainError::Rejected(format!(
                "block4_shape {:?} is not (H, W, C)",
                config.block4_shape
            )));
        };
        if c != channels || h < 2 || w < 2 || h * w * c != inputs {
            return Err(TrainError::Rejected(format!(
                "block5 takes (H, W, {channels}) maps with H, W >= 2; got shape {:?} for \
                 {inputs} inputs",
                config.block4_shape
            )));
        }
        let pool: GlobalPool = config
            .pool
            .parse()
            .map_err(|e: convbase_vgg16::ParseError| TrainError::Rejected(e.to_string()))?;
        let block5 = Block5::new(params)?;
        let head_inputs = match pool {
            GlobalPool::None => (h / 2) * (w / 2) * channels,
            GlobalPool::Avg | GlobalPool::Max => channels,
        };
        let head = DenseHead::build(&config.head, head_inputs, units, params)?;
        Ok(FineTuned {
            block5,
            shape: (h, w, c),
            pool,
            head,
        })
    }

    fn forward(&self, x: &Tensor, mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
        self.head.forward(&self.head_inputs(x)?, mode)
    }
}
