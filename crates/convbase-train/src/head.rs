//! The one trait a head crate implements, and a model = head + parameters + output.

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::layers::Mode;
use crate::output::Output;
use crate::params::Params;
use crate::rng::{Stream, rng};

/// A classifier on feature vectors. A head crate implements this and calls
/// [`crate::cli::main`]; training, run directories and prediction are shared.
pub trait Head: Sized {
    /// The binary's name, recorded in run directories and predictions.
    const NAME: &'static str;
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// The model's hyperparameters, stored in `config.json` and in the model file so that
    /// `predict` rebuilds the same model. A head run by [`crate::cli::main`] also takes them
    /// as flags of `train` (`clap::Args`).
    type Config: Serialize + DeserializeOwned + Clone + Debug;

    /// Creates (or loads, depending on `params`) the head's parameters.
    fn build(
        config: &Self::Config,
        inputs: usize,
        units: usize,
        params: &mut Params,
    ) -> Result<Self>;

    /// # Shapes
    /// `x`: (batch, inputs) -> logits (batch, units)
    fn forward(&self, x: &Tensor, mode: &mut Mode<'_>) -> candle_core::Result<Tensor>;

    /// A term added to the training loss (e.g. an L2 penalty on kernels), if any.
    fn penalty(&self) -> candle_core::Result<Option<Tensor>> {
        Ok(None)
    }
}

/// A head with its parameters and output activation.
pub struct Model<H: Head> {
    pub head: H,
    pub params: Params,
    pub output: Output,
    pub inputs: usize,
}

impl<H: Head> std::fmt::Debug for Model<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("head", &H::NAME)
            .field("params", &self.params)
            .field("output", &self.output)
            .field("inputs", &self.inputs)
            .finish()
    }
}

impl<H: Head> Model<H> {
    /// A freshly initialised model; its weights depend only on `seed`.
    pub fn init(config: &H::Config, inputs: usize, classes: usize, seed: u64) -> Result<Self> {
        let output = Output::for_classes(classes)?;
        let mut params = Params::init(rng(seed, Stream::Init), &Device::Cpu);
        let head = H::build(config, inputs, output.units(), &mut params)?;
        Ok(Model {
            head,
            params,
            output,
            inputs,
        })
    }

    /// A model from stored tensors (`path` is named in errors).
    pub fn from_tensors(
        config: &H::Config,
        inputs: usize,
        classes: usize,
        tensors: HashMap<String, Tensor>,
        path: &Path,
    ) -> Result<Self> {
        let output = Output::for_classes(classes)?;
        let mut params = Params::load(tensors, path, &Device::Cpu);
        let head = H::build(config, inputs, output.units(), &mut params)?;
        params.finish()?;
        Ok(Model {
            head,
            params,
            output,
            inputs,
        })
    }

    /// The trainable variables, in creation order.
    pub fn vars(&self) -> Vec<Var> {
        self.params.vars().iter().map(|(_, v)| v.clone()).collect()
    }

    /// Class probabilities for `rows` feature vectors stored row after row in `values`.
    /// Works in chunks, so memory stays small whatever the number of rows.
    pub fn predict_proba(&self, values: &[f32], rows: usize) -> Result<Vec<f32>> {
        const CHUNK: usize = 512;
        let mut out = Vec::with_capacity(rows * self.output.classes());
        for start in (0..rows).step_by(CHUNK) {
            let n = CHUNK.min(rows - start);
            let x = Tensor::from_slice(
                &values[start * self.inputs..(start + n) * self.inputs],
                (n, self.inputs),
                &Device::Cpu,
            )?;
            let logits = self.head.forward(&x, &mut Mode::Eval)?;
            let probs = self.output.probabilities(&logits)?;
            out.extend(probs.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}
