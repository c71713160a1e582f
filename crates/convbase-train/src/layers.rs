//! Building blocks of heads: Keras' Dense layer and inverted dropout with host-drawn masks.

use std::sync::{Arc, Mutex};

use candle_core::backprop::GradStore;
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
    kernel_grad: KernelGrad,
}

impl Dense {
    /// Creates (or loads) `{name}.kernel` and `{name}.bias`.
    pub fn new(params: &mut Params, name: &str, inputs: usize, units: usize) -> Result<Self> {
        let kernel = params.glorot_uniform(&format!("{name}.kernel"), inputs, units)?;
        let bias = params.zeros(&format!("{name}.bias"), &[units])?;
        let kernel_grad = params.direct_gradient(&kernel);
        Ok(Dense {
            kernel,
            bias,
            kernel_grad,
        })
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
            x.apply_op2(kernel, DataMatmul(self.kernel_grad.clone()))?
        };
        product.broadcast_add(self.bias.as_tensor())
    }

    pub fn kernel(&self) -> &Tensor {
        self.kernel.as_tensor()
    }
}

/// Where the backward pass of a Dense layer on data leaves its kernel's gradient, for
/// [`Params::gradients`] to put into the gradient store.
///
/// candle would accumulate it itself: a zero-filled tensor the kernel's size plus an addition,
/// every step (for the seed's 8192 x 256 kernel, 8 MB written three times over).
#[derive(Debug, Clone, Default)]
pub(crate) struct KernelGrad(Arc<Mutex<Option<Tensor>>>);

impl KernelGrad {
    fn set(&self, grad: Tensor) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(match slot.take() {
            Some(earlier) => (earlier + grad).expect("kernel gradients have one shape"),
            None => grad,
        });
    }

    /// Adds the gradient the last backward pass left here to `kernel`'s in `grads` (where
    /// other terms of the loss, such as a penalty on the kernel, put theirs).
    pub(crate) fn take_into(&self, kernel: &Var, grads: &mut GradStore) -> candle_core::Result<()> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = slot.take() {
            let sum = match grads.remove(kernel.as_tensor()) {
                Some(other) => (other + g)?,
                None => g,
            };
            grads.insert(kernel.as_tensor(), sum);
        }
        Ok(())
    }
}

/// `x @ kernel` where `x` needs no gradient: the backward pass computes only the kernel's,
/// and leaves it in the layer's [`KernelGrad`].
struct DataMatmul(KernelGrad);

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
        self.0.set(x.t()?.matmul(grad)?);
        Ok((None, None))
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

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::rng::{Stream, rng};

    /// The kernel gradient a Dense layer on data leaves for `Params::gradients` is the one
    /// candle's own matmul backward computes when the input is tracked, bit for bit, also
    /// with a penalty on the kernel; the bias still gets candle's.
    #[test]
    fn direct_kernel_gradient_matches_candles() {
        let grads_of = |track_input: bool| {
            let mut params = Params::init(rng(3, Stream::Init), &Device::Cpu);
            let dense = Dense::new(&mut params, "d", 37, 11).unwrap();
            let values: Vec<f32> = (0..5 * 37)
                .map(|i| ((i * 7919) % 23) as f32 - 11.0)
                .collect();
            let data = Tensor::from_vec(values, (5, 37), &Device::Cpu).unwrap();
            let x = if track_input {
                Var::from_tensor(&data).unwrap().as_tensor().clone()
            } else {
                data
            };
            // A penalty on the kernel, as the linear head's L2: its gradient adds to the
            // layer's own.
            let penalty = dense.kernel().sqr().unwrap().sum_all().unwrap();
            let loss =
                (dense.forward(&x).unwrap().sqr().unwrap().sum_all().unwrap() + penalty).unwrap();
            let grads = params.gradients(&loss).unwrap();
            let get = |v: &Var| {
                grads
                    .get(v.as_tensor())
                    .map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            };
            (get(&dense.kernel), get(&dense.bias))
        };
        let (direct_kernel, direct_bias) = grads_of(false);
        let (candle_kernel, candle_bias) = grads_of(true);
        let direct_kernel = direct_kernel.expect("the kernel has a gradient");
        assert!(direct_kernel.iter().any(|&g| g != 0.0));
        assert_eq!(Some(direct_kernel), candle_kernel);
        assert_eq!(direct_bias, candle_bias);
        assert!(direct_bias.is_some());
    }
}
