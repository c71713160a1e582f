//! A linear probe (logistic regression) head with the same contracts as the dense head:
//! one Dense layer from the features to the classes (sigmoid for two, softmax for more),
//! with an optional L2 penalty on the kernel as Keras' `kernel_regularizer=l2(...)`.
//!
//! Tensor names: `output.kernel` `(inputs, units)`, `output.bias`.

use candle_core::Tensor;
use convbase_train::{Dense, Head, Mode, Params, Result, TrainError};
use serde::{Deserialize, Serialize};

/// The linear probe's hyperparameters.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
pub struct LinearConfig {
    /// L2 penalty: adds L2 * sum(kernel^2) to the training loss (0 disables it).
    #[arg(long, default_value_t = 0.0)]
    pub l2: f32,
}

/// One Dense layer on the features.
#[derive(Debug)]
pub struct LinearHead {
    output: Dense,
    l2: f32,
}

impl Head for LinearHead {
    const NAME: &'static str = "convbase-head-linear";
    const ABOUT: &'static str = "A linear probe (logistic regression) on cached conv-base features, \
        with the same train/predict contracts as convbase-head-dense.";
    type Config = LinearConfig;

    fn build(
        config: &LinearConfig,
        inputs: usize,
        units: usize,
        params: &mut Params,
    ) -> Result<Self> {
        if !(config.l2.is_finite() && config.l2 >= 0.0) {
            return Err(TrainError::Rejected(format!(
                "--l2 {} must be >= 0",
                config.l2
            )));
        }
        Ok(LinearHead {
            output: Dense::new(params, "output", inputs, units)?,
            l2: config.l2,
        })
    }

    fn forward(&self, x: &Tensor, _mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
        self.output.forward(x)
    }

    fn penalty(&self) -> candle_core::Result<Option<Tensor>> {
        if self.l2 == 0.0 {
            return Ok(None);
        }
        let k = self.output.kernel();
        Ok(Some((k.sqr()?.sum_all()? * self.l2 as f64)?))
    }
}
