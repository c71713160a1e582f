//! The seed's dense head: Flatten -> Dense(256, relu) -> Dropout(0.5) -> Dense(1, sigmoid)
//! (softmax for more than two classes), with width, depth and dropout configurable.
//!
//! Only the model lives here; training, the run directory and prediction come from
//! `convbase-train`. Tensor names: `hidden.{i}.kernel` `(inputs, width)`,
//! `hidden.{i}.bias`, `output.kernel`, `output.bias` (Keras' kernel layout).

use candle_core::Tensor;
use convbase_train::{Dense, Head, Mode, Params, Result, TrainError, dropout};
use serde::{Deserialize, Serialize};

/// The dense head's hyperparameters.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize)]
pub struct DenseConfig {
    /// Units of each hidden Dense(relu) layer.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub width: u64,
    /// Number of hidden layers; 0 leaves a logistic regression on the features.
    #[arg(long, default_value_t = 1)]
    pub depth: u64,
    /// Dropout rate after each hidden layer (Keras' inverted dropout; 0 disables it).
    #[arg(long, default_value_t = 0.5, value_parser = parse_rate)]
    pub dropout: f32,
}

fn parse_rate(s: &str) -> std::result::Result<f32, String> {
    let r: f32 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..1.0).contains(&r) {
        Ok(r)
    } else {
        Err("must be in [0, 1)".into())
    }
}

/// Hidden Dense(relu) + Dropout layers, then the output Dense.
#[derive(Debug)]
pub struct DenseHead {
    hidden: Vec<Dense>,
    dropout: f32,
    output: Dense,
}

impl Head for DenseHead {
    const NAME: &'static str = "convbase-head-dense";
    const ABOUT: &'static str = "The seed's dense head on cached conv-base features: \
        Dense(256, relu) -> Dropout(0.5) -> Dense(1, sigmoid), trained with RMSprop(2e-5).";
    type Config = DenseConfig;

    fn build(
        config: &DenseConfig,
        inputs: usize,
        units: usize,
        params: &mut Params,
    ) -> Result<Self> {
        if !(0.0..1.0).contains(&config.dropout) {
            return Err(TrainError::Rejected(format!(
                "dropout {} outside [0, 1)",
                config.dropout
            )));
        }
        let width = config.width as usize;
        let mut hidden = Vec::new();
        let mut fan_in = inputs;
        for i in 0..config.depth {
            hidden.push(Dense::new(params, &format!("hidden.{i}"), fan_in, width)?);
            fan_in = width;
        }
        let output = Dense::new(params, "output", fan_in, units)?;
        Ok(DenseHead {
            hidden,
            dropout: config.dropout,
            output,
        })
    }

    fn forward(&self, x: &Tensor, mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.hidden {
            h = dropout(&layer.forward(&h)?.relu()?, self.dropout, mode)?;
        }
        self.output.forward(&h)
    }
}
