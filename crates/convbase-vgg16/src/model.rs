//! The network: 13 conv 3x3 (stride 1, padding 1) + ReLU and five 2x2/2 max-pools (floor),
//! built from a `VarBuilder` whose prefixes mirror torchvision's names.

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};

use crate::error::Vgg16Error;
use crate::layer::{GlobalPool, Layer};
use crate::weights::Weights;

/// Smallest square input the full base accepts (block5_pool is then 1x1).
pub const MIN_INPUT: usize = 32;

/// The VGG16 conv base up to a chosen output layer.
#[derive(Debug, Clone)]
pub struct Vgg16 {
    /// One entry per layer from block1_conv1 to `output`: `Some` for convs, `None` for pools.
    layers: Vec<Option<Conv2d>>,
    /// The same convs as (weight OIHW, bias), for the NHWC im2col path.
    convs: Vec<Option<(Tensor, Tensor)>>,
    output: Layer,
    pool: GlobalPool,
}

impl Vgg16 {
    /// Builds the base up to `output` from loaded weights (layers past `output` are not built).
    pub fn new(
        weights: &Weights,
        output: Layer,
        pool: GlobalPool,
        device: &Device,
    ) -> Result<Self, Vgg16Error> {
        let vb = VarBuilder::from_tensors(weights.tensors().clone(), DType::F32, device);
        Ok(Self::from_varbuilder(vb, output, pool)?)
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
        let layers: Vec<Option<Conv2d>> = Layer::ALL[..=output as usize]
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
        let convs = layers
            .iter()
            .map(|l: &Option<Conv2d>| {
                l.as_ref()
                    .map(|c| (c.weight().clone(), c.bias().expect("conv has bias").clone()))
            })
            .collect();
        Ok(Self {
            layers,
            convs,
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

    /// Runs the whole base, then the global pooling.
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
        let y = self.forward_range(x, Layer::Block1Conv1, self.output)?;
        match self.pool {
            GlobalPool::None => Ok(y),
            GlobalPool::Avg => y.mean(D::Minus1)?.mean(D::Minus1),
            GlobalPool::Max => y.max(D::Minus1)?.max(D::Minus1),
        }
    }

    /// Runs the layers `from..=to` only (no global pooling): e.g. block5 alone on cached
    /// block4_pool outputs with `forward_range(x, Block5Conv1, Block5Pool)`.
    ///
    /// # Shapes
    /// - `x`: (N, C_in, H, W), the output of the layer before `from` (or the image for block1_conv1)
    /// - returns (N, C, h, w) of layer `to`
    pub fn forward_range(&self, x: &Tensor, from: Layer, to: Layer) -> candle_core::Result<Tensor> {
        if from > to || to > self.output {
            candle_core::bail!(
                "cannot run {from}..={to}: this base is built up to {}",
                self.output
            );
        }
        if std::env::var_os("VGG_NHWC").is_some() {
            let mut x = x.permute((0, 2, 3, 1))?.contiguous()?;
            for layer in &self.convs[from as usize..=to as usize] {
                x = match layer {
                    Some((w, b)) => conv3x3_relu_nhwc(&x, w, b)?,
                    None => max_pool_nhwc(&x)?,
                };
            }
            return x.permute((0, 3, 1, 2));
        }
        let mut x = x.clone();
        for layer in &self.layers[from as usize..=to as usize] {
            x = match layer {
                Some(conv) => conv.forward(&x)?.relu()?,
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

/// Floats an im2col chunk may hold (128 MiB); larger batches are split.
const IM2COL_FLOATS: usize = 32 << 20;

/// 3x3 conv (stride 1, zero padding 1) + bias + ReLU on NHWC activations as one gemm per chunk.
///
/// The padded input is seen as one long (rows, C) matrix; tap (i, j) of every output pixel is
/// that matrix shifted by `i * (W + 2) + j` rows, a contiguous slice, so the im2col matrix is a
/// single concatenation. Outputs are computed on the padded grid and the two border columns
/// and rows are dropped.
///
/// # Shapes
/// - `x`: (N, H, W, C); `w`: (O, C, 3, 3); `b`: (O)
/// - returns (N, H, W, O), contiguous
fn conv3x3_relu_nhwc(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let (n, h, wd, c) = x.dims4()?;
    let o = w.dim(0)?;
    let (hp, wp) = (h + 2, wd + 2);
    // (O, C, kh, kw) -> (kh, kw, C, O) -> (9C, O): row (i*3 + j)*C + c matches the taps below.
    let wm = w.permute((2, 3, 1, 0))?.reshape((9 * c, o))?;
    let xp = x.pad_with_zeros(1, 1, 1)?.pad_with_zeros(2, 1, 1)?;
    let per_image = hp * wp;
    let chunk = (IM2COL_FLOATS / (per_image * 9 * c)).clamp(1, n);
    let mut outs = Vec::with_capacity(n.div_ceil(chunk));
    for start in (0..n).step_by(chunk) {
        let len = chunk.min(n - start);
        let rows = len * per_image;
        let flat = xp
            .narrow(0, start, len)?
            .reshape((rows, c))?
            .pad_with_zeros(0, 0, 2 * wp + 2)?;
        let taps = (0..3)
            .flat_map(|i| (0..3).map(move |j| i * wp + j))
            .map(|off| flat.narrow(0, off, rows))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let y = Tensor::cat(&taps, 1)?
            .matmul(&wm)?
            .broadcast_add(b)?
            .relu()?;
        outs.push(
            y.reshape((len, hp, wp, o))?
                .narrow(1, 0, h)?
                .narrow(2, 0, wd)?
                .contiguous()?,
        );
    }
    Tensor::cat(&outs, 0)
}

/// 2x2 max-pool, stride 2, floor (an odd last row/column is dropped), on NHWC activations.
///
/// # Shapes
/// - `x`: (N, H, W, C); returns (N, H/2, W/2, C), contiguous
fn max_pool_nhwc(x: &Tensor) -> candle_core::Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let (h2, w2) = (h / 2, w / 2);
    let x = if h % 2 == 1 || w % 2 == 1 {
        x.narrow(1, 0, 2 * h2)?.narrow(2, 0, 2 * w2)?.contiguous()?
    } else {
        x.clone()
    };
    // (n, 2a+p, 2b+q, c) -> (n*h2, p, w2, q*C + c)
    let x = x.reshape((n * h2, 2, w2, 2 * c))?;
    let rows = x.narrow(1, 0, 1)?.maximum(&x.narrow(1, 1, 1)?)?;
    let cols = rows.narrow(3, 0, c)?.maximum(&rows.narrow(3, c, c)?)?;
    cols.reshape((n, h2, w2, c))
}
