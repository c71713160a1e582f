//! Named trainable parameters, drawn with Keras' initialisers or loaded from a model file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TrainError};
use crate::layers::KernelGrad;

enum Source {
    Init(Box<ChaCha8Rng>),
    Load {
        tensors: HashMap<String, Tensor>,
        path: PathBuf,
    },
}

/// Where a head gets its parameters: a model asks for each tensor by name and shape, and
/// gets either a fresh initialisation or the stored tensor (checked for shape). Like
/// candle-nn's `VarBuilder`, but seeded, with Keras' initialisers, and keeping the list of
/// variables in creation order for the optimiser and the model file.
pub struct Params {
    source: Source,
    device: Device,
    vars: Vec<(String, Var)>,
    /// Variables whose gradients their layers compute outside candle's accumulation.
    direct: Vec<(Var, KernelGrad)>,
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.vars.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Params").field("vars", &names).finish()
    }
}

impl Params {
    /// Fresh parameters drawn from `rng`.
    pub fn init(rng: ChaCha8Rng, device: &Device) -> Self {
        Params {
            source: Source::Init(Box::new(rng)),
            device: device.clone(),
            vars: Vec::new(),
            direct: Vec::new(),
        }
    }

    /// Parameters taken from `tensors` (read from `path`, named in errors).
    pub fn load(tensors: HashMap<String, Tensor>, path: &Path, device: &Device) -> Self {
        Params {
            source: Source::Load {
                tensors,
                path: path.to_path_buf(),
            },
            device: device.clone(),
            vars: Vec::new(),
            direct: Vec::new(),
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A kernel of shape `(fan_in, fan_out)` initialised like Keras' `glorot_uniform`:
    /// U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)).
    pub fn glorot_uniform(&mut self, name: &str, fan_in: usize, fan_out: usize) -> Result<Var> {
        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
        self.get(name, &[fan_in, fan_out], |rng| {
            (0..fan_in * fan_out)
                .map(|_| rng.random_range(-limit..limit))
                .collect()
        })
    }

    /// A parameter without an initialiser of its own, which must come from stored tensors
    /// (e.g. pretrained conv weights being fine-tuned): an error for fresh parameters.
    pub fn stored(&mut self, name: &str, shape: &[usize]) -> Result<Var> {
        if matches!(self.source, Source::Init(_)) {
            return Err(TrainError::Rejected(format!(
                "`{name}` has no initialiser: it must be loaded from a model file"
            )));
        }
        self.get(name, shape, |_| Vec::new())
    }

    /// A zero-initialised parameter (Keras' bias initialiser).
    pub fn zeros(&mut self, name: &str, shape: &[usize]) -> Result<Var> {
        let n = shape.iter().product();
        self.get(name, shape, |_| vec![0.0; n])
    }

    fn get(
        &mut self,
        name: &str,
        shape: &[usize],
        draw: impl FnOnce(&mut ChaCha8Rng) -> Vec<f32>,
    ) -> Result<Var> {
        let tensor = match &mut self.source {
            Source::Init(rng) => Tensor::from_vec(draw(rng), shape, &self.device)?,
            Source::Load { tensors, path } => {
                let t = tensors.remove(name).ok_or_else(|| TrainError::Model {
                    path: path.clone(),
                    problem: format!("tensor `{name}` is missing"),
                })?;
                if t.dims() != shape {
                    return Err(TrainError::Model {
                        path: path.clone(),
                        problem: format!(
                            "tensor `{name}` has shape {:?}, the head expects {shape:?}",
                            t.dims()
                        ),
                    });
                }
                t.to_dtype(candle_core::DType::F32)?
                    .to_device(&self.device)?
            }
        };
        let var = Var::from_tensor(&tensor)?;
        self.vars.push((name.to_string(), var.clone()));
        Ok(var)
    }

    /// Checks that a loaded model file held no tensor the head did not ask for (a sign
    /// that it belongs to another configuration).
    pub fn finish(&self) -> Result<()> {
        if let Source::Load { tensors, path } = &self.source
            && let Some(name) = tensors.keys().min()
        {
            return Err(TrainError::Model {
                path: path.clone(),
                problem: format!("unexpected tensor `{name}` for this head's configuration"),
            });
        }
        Ok(())
    }

    /// A slot where a layer leaves `var`'s gradient itself (see [`KernelGrad`]).
    pub(crate) fn direct_gradient(&mut self, var: &Var) -> KernelGrad {
        let slot = KernelGrad::default();
        self.direct.push((var.clone(), slot.clone()));
        slot
    }

    /// The gradients of `loss` with respect to every variable: candle's backward pass plus
    /// the ones layers computed themselves. Use this, not `loss.backward()`.
    pub fn gradients(&self, loss: &Tensor) -> candle_core::Result<GradStore> {
        let mut grads = loss.backward()?;
        for (var, slot) in &self.direct {
            slot.take_into(var, &mut grads)?;
        }
        Ok(grads)
    }

    /// The variables in creation order, with their names.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }
}
