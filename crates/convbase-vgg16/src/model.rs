//! The network: 13 conv 3x3 (stride 1, padding 1) + ReLU and five 2x2/2 max-pools (floor),
//! built from a `VarBuilder` whose prefixes mirror torchvision's names.

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};

use crate::error::Vgg16Error;
use crate::fast::{Isa, Network};
use crate::layer::{GlobalPool, Layer};
use crate::weights::Weights;

/// Smallest square input the full base accepts (block5_pool is then 1x1).
pub const MIN_INPUT: usize = 32;

/// The VGG16 conv base up to a chosen output layer.
#[derive(Debug, Clone)]
pub struct Vgg16 {
    /// One entry per layer from block1_conv1 to `output`: `Some` for convs, `None` for pools.
    layers: Vec<Option<Conv2d>>,
    /// The same convs prepared for the CPU inference path (`None` when built from a
    /// `VarBuilder`, whose variables may change under training).
    fast: Option<Network>,
    output: Layer,
    pool: GlobalPool,
}

impl Vgg16 {
    /// Builds the base up to `output` from loaded weights (layers past `output` are not built).
    /// On the CPU, `forward` uses the widest instruction set the CPU has ([`Isa::detect`]).
    pub fn new(
        weights: &Weights,
        output: Layer,
        pool: GlobalPool,
        device: &Device,
    ) -> Result<Self, Vgg16Error> {
        let vb = VarBuilder::from_tensors(weights.tensors().clone(), DType::F32, device);
        let mut model = Self::from_varbuilder(vb, output, pool)?;
        if device.is_cpu() {
            model.fast = Some(Network::new(&model.layers, Isa::detect())?);
        }
        Ok(model)
    }

    /// As [`Vgg16::new`] on the CPU, with `forward`'s kernels for a chosen instruction set (to
    /// test or time each one).
    ///
    /// # Panics
    /// When `isa` does not run on this CPU (see [`Isa::available`]).
    pub fn with_isa(
        weights: &Weights,
        output: Layer,
        pool: GlobalPool,
        isa: Isa,
    ) -> Result<Self, Vgg16Error> {
        let vb = VarBuilder::from_tensors(weights.tensors().clone(), DType::F32, &Device::Cpu);
        let mut model = Self::from_varbuilder(vb, output, pool)?;
        model.fast = Some(Network::new(&model.layers, isa)?);
        Ok(model)
    }

    /// Builds the base from any `VarBuilder` holding `features.N.{weight,bias}` (e.g. one over a
    /// `VarMap`, so that a fine-tuning stage gets trainable variables).
    pub fn from_varbuilder(
        vb: VarBuilder,
        output: Layer,
        pool: GlobalPool,
    ) -> candle_core::Result<Self> {
        let features = vb.pp("features");
        let cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let layers = Layer::ALL[..=output as usize]
            .iter()
            .map(|&l| {
                l.is_conv()
                    .then(|| {
                        candle_nn::conv2d(
                            l.in_channels(),
                            l.channels(),
                            3,
                            cfg,
                            features.pp(l.torch_index()),
                        )
                    })
                    .transpose()
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            layers,
            fast: None,
            output,
            pool,
        })
    }

    /// The layer whose output `forward` returns.
    pub fn output(&self) -> Layer {
        self.output
    }

    /// The global pooling applied to the output.
    pub fn pool(&self) -> GlobalPool {
        self.pool
    }

    /// Runs the whole base, then the global pooling. On the CPU, a model built by [`Vgg16::new`]
    /// takes the inference path of [`crate::fast`] (NHWC, Winograd F(4x4, 3x3), packed weights);
    /// otherwise candle's ops (differentiable).
    ///
    /// # Shapes
    /// - `x`: (N, 3, H, W), preprocessed, H and W at least 32
    /// - returns (N, C, h, w), or (N, C) when pooled
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        if c != 3 || h < MIN_INPUT || w < MIN_INPUT {
            candle_core::bail!(
                "VGG16 input must be (N, 3, H, W) with H, W >= {MIN_INPUT}, got {:?}",
                x.dims()
            );
        }
        let y = match &self.fast {
            Some(fast) if x.device().is_cpu() && x.dtype() == DType::F32 => {
                let (n, _, h, w) = x.dims4()?;
                let nchw = x.flatten_all()?.to_vec1::<f32>()?;
                let (out, dims) = fast.forward(&nchw, [n, 3, h, w]);
                // NCHW view of the NHWC result: flatten_hwc then reads it without a copy.
                Tensor::from_vec(out, dims.to_vec(), x.device())?.permute((0, 3, 1, 2))?
            }
            _ => self.forward_range(x, Layer::Block1Conv1, self.output)?,
        };
        match self.pool {
            GlobalPool::None => Ok(y),
            GlobalPool::Avg => y.mean(D::Minus1)?.mean(D::Minus1),
            GlobalPool::Max => y.max(D::Minus1)?.max(D::Minus1),
        }
    }

    /// Runs the layers `from..=to` only (no global pooling): e.g. block5 alone on cached
    /// block4_pool outputs with `forward_range(x, Block5Conv1, Block5Pool)`. Candle's ops,
    /// differentiable.
    ///
    /// # Shapes
    /// - `x`: (N, C_in, H, W), the output of the layer before `from` (or the image for block1_conv1)
    /// - returns (N, C, h, w) of layer `to`
    pub fn forward_range(&self, x: &Tensor, from: Layer, to: Layer) -> candle_core::Result<Tensor> {
        self.run_range(x, from, to, |x, conv| conv.forward(x))
    }

    /// As [`Vgg16::forward_range`] (same result up to rounding, differentiable), with each conv
    /// run by [`crate::conv3x3`]: on the CPU the forward pass and both gradients are whole-batch
    /// GEMMs, several times faster than candle's conv2d for fine-tuning (block5 on cached
    /// block4_pool outputs).
    pub fn forward_range_gemm(
        &self,
        x: &Tensor,
        from: Layer,
        to: Layer,
    ) -> candle_core::Result<Tensor> {
        self.run_range(x, from, to, |x, conv| {
            let y = crate::conv3x3(x, conv.weight())?;
            match conv.bias() {
                Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
                None => Ok(y),
            }
        })
    }

    /// As [`Vgg16::forward_range`] on NHWC maps (same result up to rounding, differentiable):
    /// each conv + bias + ReLU by [`crate::conv3x3_bias_relu_nhwc`] (on the CPU, Winograd
    /// F(3x3, 3x3) for the output and both gradients), each pool by
    /// [`crate::max_pool_2x2_nhwc`]. Fine-tuning's path: block5 on cached block4_pool maps,
    /// which the features files hold in this layout.
    ///
    /// # Shapes
    /// - `x`: (N, H, W, C_in), the output of the layer before `from`
    /// - returns (N, h, w, C) of layer `to`
    pub fn forward_range_nhwc(
        &self,
        x: &Tensor,
        from: Layer,
        to: Layer,
    ) -> candle_core::Result<Tensor> {
        self.check_range(from, to)?;
        let mut x = x.clone();
        for layer in &self.layers[from as usize..=to as usize] {
            x = match layer {
                Some(c) => {
                    let bias = c.bias().expect("VGG convs have biases");
                    crate::conv3x3_bias_relu_nhwc(&x, c.weight(), bias)?
                }
                None => crate::max_pool_2x2_nhwc(&x)?,
            };
        }
        Ok(x)
    }

    fn check_range(&self, from: Layer, to: Layer) -> candle_core::Result<()> {
        if from > to || to > self.output {
            candle_core::bail!(
                "cannot run {from}..={to}: this base is built up to {}",
                self.output
            );
        }
        Ok(())
    }

    /// Layers `from..=to`, each conv by `conv` (without ReLU), then ReLU; pools by candle.
    fn run_range(
        &self,
        x: &Tensor,
        from: Layer,
        to: Layer,
        conv: impl Fn(&Tensor, &Conv2d) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Tensor> {
        self.check_range(from, to)?;
        let mut x = x.clone();
        for layer in &self.layers[from as usize..=to as usize] {
            x = match layer {
                Some(c) => conv(&x, c)?.relu()?,
                // candle's max_pool2d takes floor((n - 2) / 2) + 1, as Keras' 'valid' pooling.
                None => x.max_pool2d(2)?,
            };
        }
        Ok(x)
    }

    /// Shape of one output for a square input of `size` px: (H, W, C), or (C) when pooled.
    pub fn output_shape(&self, size: usize) -> Vec<usize> {
        let c = self.output.channels();
        match self.pool {
            GlobalPool::None => {
                let s = self.output.spatial_size(size);
                vec![s, s, c]
            }
            GlobalPool::Avg | GlobalPool::Max => vec![c],
        }
    }
}

/// Flattens a forward output into one row per image, in Keras' HWC order (channels fastest),
/// rows concatenated: (N, C, h, w) -> N * h*w*C values; (N, C) -> N * C.
pub fn flatten_hwc(out: &Tensor) -> candle_core::Result<Vec<f32>> {
    let hwc = match out.rank() {
        4 => out.permute((0, 2, 3, 1))?,
        2 => out.clone(),
        r => candle_core::bail!("expected a (N, C, h, w) or (N, C) output, got rank {r}"),
    };
    hwc.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
}
