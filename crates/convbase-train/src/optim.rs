//! Optimisers with Keras 3 semantics, updating candle `Var`s in place.
//!
//! candle-nn has SGD without momentum and AdamW only, and no RMSprop. These follow Keras'
//! update rules exactly (checked against numpy goldens). Each update is one pass over the
//! parameter, its gradient and the optimiser state in host memory, split over the rayon
//! pool: no temporary tensors the size of the parameter per step.

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, Layout, Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Updates parameters from their gradients, once per batch.
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient in `grads`.
    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()>;
}

/// An optimiser's hyperparameters, as given on the command line and stored in the run
/// directory's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// Keras 3: v = rho*v + (1-rho)*g^2; p -= lr*g/sqrt(v+eps) (epsilon inside the root, as
    /// in `keras/src/optimizers/rmsprop.py`; the seed's reference numbers come from Keras 3).
    Rmsprop { lr: f64, rho: f64, eps: f64 },
    /// TF/Keras 2 (the book's era), also PyTorch's placement: p -= lr*g/(sqrt(v)+eps).
    /// (PyTorch's defaults also differ: rho 0.99, eps 1e-8.)
    RmspropLegacy { lr: f64, rho: f64, eps: f64 },
    /// m += (g-m)(1-b1); v += (g^2-v)(1-b2); p -= lr*sqrt(1-b2^t)/(1-b1^t)*m/(sqrt(v)+eps).
    Adam {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
    },
    /// Adam after decoupled weight decay p -= lr*weight_decay*p (Keras applies it to every
    /// variable, biases included).
    Adamw {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
    /// m = momentum*m - lr*g; p += m.
    Sgd { lr: f64, momentum: f64 },
}

impl OptimizerConfig {
    /// An optimiser over `vars` with these hyperparameters.
    pub fn build(&self, vars: Vec<Var>) -> Box<dyn Optimizer> {
        match *self {
            OptimizerConfig::Rmsprop { lr, rho, eps } => {
                Box::new(RmsProp::new(vars, lr, rho, eps, true))
            }
            OptimizerConfig::RmspropLegacy { lr, rho, eps } => {
                Box::new(RmsProp::new(vars, lr, rho, eps, false))
            }
            OptimizerConfig::Adam {
                lr,
                beta1,
                beta2,
                eps,
            } => Box::new(Adam::new(vars, lr, beta1, beta2, eps, 0.0)),
            OptimizerConfig::Adamw {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => Box::new(Adam::new(vars, lr, beta1, beta2, eps, weight_decay)),
            OptimizerConfig::Sgd { lr, momentum } => Box::new(Sgd::new(vars, lr, momentum)),
        }
    }
}

/// An in-place update of one parameter: `f(param, grad)` on contiguous f32 host slices.
struct InPlace<F>(RefCell<F>);

impl<F: FnMut(&mut [f32], &[f32])> candle_core::InplaceOp2 for InPlace<F> {
    fn name(&self) -> &'static str {
        "convbase-optimizer-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (Some((a1, b1)), Some((a2, b2))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("optimizer update needs contiguous parameter and gradient")
        };
        match (s1, s2) {
            (CpuStorage::F32(p), CpuStorage::F32(g)) => {
                (self.0.borrow_mut())(&mut p[a1..b1], &g[a2..b2]);
                Ok(())
            }
            _ => candle_core::bail!("optimizer update needs f32 parameters on the CPU"),
        }
    }
}

/// Runs `f(param, grad)` over `var`'s storage in place. Parameters live on the CPU.
pub fn update_in_place(
    var: &Var,
    grad: &Tensor,
    f: impl FnMut(&mut [f32], &[f32]),
) -> candle_core::Result<()> {
    if var.shape() != grad.shape() {
        candle_core::bail!(
            "gradient shape {:?} differs from parameter shape {:?}",
            grad.dims(),
            var.dims()
        );
    }
    let grad = grad.contiguous()?;
    var.as_tensor()
        .inplace_op2(&grad, &InPlace(RefCell::new(f)))
}

/// Optimiser state: one zero-initialised buffer per parameter, an `S` per element.
fn zeros_like<S: Default + Clone>(vars: &[Var]) -> Vec<Vec<S>> {
    vars.iter()
        .map(|v| vec![S::default(); v.elem_count()])
        .collect()
}

/// Elements per parallel task: the 2M-weight kernels of a dense head are updated by every
/// core, a bias stays on one.
const CHUNK: usize = 1 << 15;

/// Runs `f(param, grad, state)` on every element, in parallel over chunks. Each element's
/// update depends on that element only, so the result does not depend on the split.
fn par_each<S: Send>(
    p: &mut [f32],
    g: &[f32],
    state: &mut [S],
    f: impl Fn(&mut f32, f32, &mut S) + Sync,
) {
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(state.par_chunks_mut(CHUNK))
        .for_each(|((p, g), s)| {
            for ((p, &g), s) in p.iter_mut().zip(g).zip(s) {
                f(p, g, s);
            }
        });
}

/// Keras' RMSprop without momentum or centring (see [`OptimizerConfig::Rmsprop`] and
/// [`OptimizerConfig::RmspropLegacy`] for where epsilon goes).
#[derive(Debug)]
pub struct RmsProp {
    vars: Vec<Var>,
    velocity: Vec<Vec<f32>>,
    lr: f32,
    rho: f32,
    eps: f32,
    eps_in_root: bool,
}

impl RmsProp {
    pub fn new(vars: Vec<Var>, lr: f64, rho: f64, eps: f64, eps_in_root: bool) -> Self {
        RmsProp {
            velocity: zeros_like(&vars),
            vars,
            lr: lr as f32,
            rho: rho as f32,
            eps: eps as f32,
            eps_in_root,
        }
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let (lr, rho, eps, in_root) = (self.lr, self.rho, self.eps, self.eps_in_root);
        for (var, v) in self.vars.iter().zip(&mut self.velocity) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            update_in_place(var, grad, |p, g| {
                par_each(p, g, v, |p, g, v| {
                    *v = rho * *v + (1.0 - rho) * g * g;
                    let denominator = if in_root {
                        (*v + eps).sqrt()
                    } else {
                        v.sqrt() + eps
                    };
                    *p -= lr * g / denominator;
                })
            })?;
        }
        Ok(())
    }
}

/// Keras' Adam, and AdamW when `weight_decay` > 0 (see [`OptimizerConfig`]).
#[derive(Debug)]
pub struct Adam {
    vars: Vec<Var>,
    /// (first moment m, second moment v) per element.
    moments: Vec<Vec<[f32; 2]>>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f32,
    weight_decay: f32,
    t: i32,
}

impl Adam {
    pub fn new(vars: Vec<Var>, lr: f64, beta1: f64, beta2: f64, eps: f64, wd: f64) -> Self {
        Adam {
            moments: zeros_like(&vars),
            vars,
            lr,
            beta1,
            beta2,
            eps: eps as f32,
            weight_decay: wd as f32,
            t: 0,
        }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.t += 1;
        let alpha = (self.lr * (1.0 - self.beta2.powi(self.t)).sqrt()
            / (1.0 - self.beta1.powi(self.t))) as f32;
        let decay = (self.lr as f32) * self.weight_decay;
        let (b1, b2, eps) = (self.beta1 as f32, self.beta2 as f32, self.eps);
        for (var, moments) in self.vars.iter().zip(&mut self.moments) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            update_in_place(var, grad, |p, g| {
                par_each(p, g, moments, |p, g, [m, v]| {
                    if decay != 0.0 {
                        *p -= *p * decay;
                    }
                    *m += (g - *m) * (1.0 - b1);
                    *v += (g * g - *v) * (1.0 - b2);
                    *p -= alpha * *m / (v.sqrt() + eps);
                })
            })?;
        }
        Ok(())
    }
}

/// Keras' SGD with (non-Nesterov) momentum (see [`OptimizerConfig::Sgd`]).
#[derive(Debug)]
pub struct Sgd {
    vars: Vec<Var>,
    velocity: Vec<Vec<f32>>,
    lr: f32,
    momentum: f32,
}

impl Sgd {
    pub fn new(vars: Vec<Var>, lr: f64, momentum: f64) -> Self {
        Sgd {
            velocity: zeros_like(&vars),
            vars,
            lr: lr as f32,
            momentum: momentum as f32,
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let (lr, mu) = (self.lr, self.momentum);
        for (var, m) in self.vars.iter().zip(&mut self.velocity) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            update_in_place(var, grad, |p, g| {
                par_each(p, g, m, |p, g, m| {
                    *m = mu * *m - lr * g;
                    *p += *m;
                })
            })?;
        }
        Ok(())
    }
}
