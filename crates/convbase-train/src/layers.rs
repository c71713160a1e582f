//! Building blocks of heads: Keras' Dense layer and inverted dropout with host-drawn masks.

use candle_core::{Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;
use crate::params::Params;

/// A fully connected layer as Keras stores it: `y = x @ kernel + bias`, kernel
/// `(inputs, units)` initialised `glorot_uniform`, bias zero.
#[derive(Debug, Clone)]
pub struct Dense {
    kernel: Var,
    bias: Var,
}

impl Dense {
    /// Creates (or loads) `{name}.kernel` and `{name}.bias`.
    pub fn new(params: &mut Params, name: &str, inputs: usize, units: usize) -> Result<Self> {
        let kernel = params.glorot_uniform(&format!("{name}.kernel"), inputs, units)?;
        let bias = params.zeros(&format!("{name}.bias"), &[units])?;
        Ok(Dense { kernel, bias })
    }

    /// # Shapes
    /// `x`: (batch, inputs) -> (batch, units)
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let kernel = self.kernel.as_tensor();
        let product = if x.track_op() {
            x.matmul(kernel)?
        } else {
            // The input is data, not a function of parameters: skip its gradient, which
            // candle's matmul would compute at the cost of a second forward pass.
            x.apply_op2(kernel, DataMatmul)?
        };
        product.broadcast_add(self.bias.as_tensor())
    }

    pub fn kernel(&self) -> &Tensor {
        self.kernel.as_tensor()
    }
}

/// `x @ kernel` where `x` needs no gradient: the backward pass computes only the kernel's.
struct DataMatmul;

impl candle_core::CustomOp2 for DataMatmul {
    fn name(&self) -> &'static str {
        "data-matmul"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::backend::BackendStorage;
        let (m, k) = l1.shape().dims2()?;
        let (k2, n) = l2.shape().dims2()?;
        if k != k2 {
            candle_core::bail!("data-matmul: ({m}, {k}) @ ({k2}, {n})");
        }
        Ok((s1.matmul(s2, (1, m, n, k), l1, l2)?, (m, n).into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _kernel: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((None, Some(x.t()?.matmul(grad)?)))
    }
}

/// Source of dropout masks: values 0 (dropped) or 1/(1-rate) (kept), row-major.
pub trait DropoutMasks {
    fn mask(&mut self, rows: usize, cols: usize, rate: f32) -> Vec<f32>;
}

/// Masks drawn from a seeded generator, so a CPU run is reproducible.
#[derive(Debug)]
pub struct SeededMasks(pub ChaCha8Rng);

impl DropoutMasks for SeededMasks {
    fn mask(&mut self, rows: usize, cols: usize, rate: f32) -> Vec<f32> {
        let keep = 1.0 / (1.0 - rate);
        (0..rows * cols)
            .map(|_| {
                if self.0.random::<f32>() >= rate {
                    keep
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// Whether a forward pass trains (dropout active) or evaluates.
pub enum Mode<'a> {
    Eval,
    Train(&'a mut dyn DropoutMasks),
}

/// Keras' `Dropout(rate)`: at training time each unit is zeroed with probability `rate`
/// and the kept ones are scaled by 1/(1-rate); at evaluation time the identity.
///
/// # Shapes
/// `x`: (batch, units) -> (batch, units)
pub fn dropout(x: &Tensor, rate: f32, mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
    match mode {
        Mode::Train(masks) if rate > 0.0 => {
            let (rows, cols) = x.dims2()?;
            let mask = Tensor::from_vec(masks.mask(rows, cols, rate), (rows, cols), x.device())?;
            x.mul(&mask)
        }
        _ => Ok(x.clone()),
    }
}
