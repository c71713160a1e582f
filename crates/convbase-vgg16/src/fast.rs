//! The CPU paths of the conv base, and their building blocks: inference (below) and, in
//! [`train`], the fine-tuning convs' forward and backward passes (Winograd F(3x3, 3x3) on
//! plain NHWC maps, with the same GEMM micro-kernels and ISA dispatch).
//!
//! Activations stay NHWC in zero-bordered frames ([`Activations`]) from the first layer to the
//! output. Each 3x3 conv ([`Conv3x3`]) has its weights transformed and packed once, at model
//! load, for the instruction set picked at run time ([`Isa`]: AVX-512F, with AMX-BF16 tiles for
//! the Winograd GEMMs of 128 or more input channels where the CPU has them, AVX2+FMA, or
//! portable Rust). The 12 convs with 64 or more input channels run Winograd F(4x4, 3x3): per
//! block of tiles, an input transform, 36 GEMMs in the Winograd domain with a register-blocked
//! micro-kernel, and an output transform that adds the bias, applies ReLU and the following
//! max-pool, writing straight into the next layer's frame. The first conv (3 input channels)
//! runs im2col rows through the same GEMM. Work is split into blocks over the global rayon
//! pool (one task per block, no nested parallelism), and the per-thread work space and the
//! frames are reused across layers and batches.
//!
//! Numerics: Winograd rounds differently from a direct convolution (the transforms add and
//! scale values before the products); the goldens bound the result against onnxruntime, and
//! `tests/kernels.rs`, `tests/train_kernels.rs` bound both paths against f64 direct convs.

mod amx;
mod conv;
pub(crate) mod gemm;
mod isa;
pub mod train;
mod wino3;
mod winograd;

use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use conv::Geometry;
pub use conv::{Activations, Algorithm, Conv3x3};
pub use isa::{ISA_ENV, Isa};

/// Convs with fewer input channels than this run im2col (Winograd's GEMMs would be too thin).
const WINOGRAD_MIN_CHANNELS: usize = 16;

/// The algorithm [`crate::Vgg16::forward`] uses for a conv with `c` input channels.
pub fn algorithm_for(c: usize) -> Algorithm {
    if c < WINOGRAD_MIN_CHANNELS {
        Algorithm::Im2col
    } else {
        Algorithm::Winograd
    }
}

/// The conv base's layers prepared for the CPU path, with frames reused across batches.
pub(crate) struct Network {
    /// One stage per conv from block1_conv1 on: the conv and whether the max-pool that
    /// follows it in the range is fused into it.
    stages: Arc<Vec<(Conv3x3, bool)>>,
    /// Frames not in use; a call takes a set or makes one, so concurrent calls never wait for
    /// each other.
    frames: Mutex<Vec<Frames>>,
}

/// The frames one call runs on.
#[derive(Default)]
struct Frames {
    /// Layer input and output, whole batch, taking turns.
    pair: [Activations; 2],
    /// One image's input and intermediate in the first block.
    image: [Activations; 2],
}

impl Clone for Network {
    fn clone(&self) -> Self {
        Self {
            stages: Arc::clone(&self.stages),
            frames: Mutex::default(),
        }
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("stages", &self.stages)
            .finish()
    }
}

impl Network {
    /// Prepares every conv of `layers` (candle's, from the loaded weights: `Some` for convs,
    /// `None` for pools, from block1_conv1 on) for `isa`.
    pub fn new(layers: &[Option<candle_nn::Conv2d>], isa: Isa) -> candle_core::Result<Self> {
        let stages = layers
            .par_iter()
            .enumerate()
            .filter_map(|(i, l)| l.as_ref().map(|conv| (i, conv)))
            .map(|(i, conv)| -> candle_core::Result<(Conv3x3, bool)> {
                let w = conv.weight();
                let (o, c, _, _) = w.dims4()?;
                let bias = conv.bias().expect("VGG convs have biases");
                let prepared = Conv3x3::new(
                    &w.flatten_all()?.to_vec1::<f32>()?,
                    &bias.to_vec1::<f32>()?,
                    [o, c],
                    algorithm_for(c),
                    isa,
                );
                let pool = matches!(layers.get(i + 1), Some(None));
                Ok((prepared, pool))
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            stages: Arc::new(stages),
            frames: Mutex::default(),
        })
    }

    /// Runs every layer on a preprocessed batch.
    ///
    /// The first block (the convs up to the first pool) runs one image at a time: its
    /// activations, the largest of the network (150x150x64 floats, 6 MB, per 150 px image),
    /// then pass from one conv to the next through the cache rather than through memory; the
    /// deeper layers run on the whole batch, so that each pass over their larger weights
    /// serves every image.
    ///
    /// # Shapes
    /// - `x`: (N, 3, H, W) values, NCHW
    /// - returns the NHWC output (N, h, w, C) and its dims
    pub fn forward(&self, x: &[f32], dims: [usize; 4]) -> (Vec<f32>, [usize; 4]) {
        let [n, c, h, w] = dims;
        let taken = self.frames.lock().map(|mut f| f.pop()).unwrap_or(None);
        let mut f = taken.unwrap_or_default();
        let stages = &self.stages[..];
        let head = stages.iter().position(|s| s.1).map_or(0, |p| p + 1);
        let start = if head >= 2 && n > 1 {
            let whole = stages[..head]
                .iter()
                .fold(Geometry { n, h, w, c }, |g, (conv, pool)| {
                    conv.output_geometry(g, *pool)
                });
            f.pair[0].reshape(whole);
            let per = c * h * w;
            for (i, img) in x.chunks_exact(per).enumerate() {
                let [a, b] = &mut f.image;
                a.fill_from_nchw(img, [1, c, h, w]);
                let (mut src, mut dst) = (a, b);
                for (conv, pool) in &stages[..head - 1] {
                    conv.forward(src, *pool, dst);
                    std::mem::swap(&mut src, &mut dst);
                }
                let (conv, pool) = &stages[head - 1];
                conv.forward_into(src, *pool, &mut f.pair[0], i);
            }
            head
        } else {
            f.pair[0].fill_from_nchw(x, dims);
            0
        };
        let mut cur = 0;
        for (conv, pool) in &stages[start..] {
            let [a, b] = &mut f.pair;
            let (src, dst) = if cur == 0 { (&*a, b) } else { (&*b, a) };
            conv.forward(src, *pool, dst);
            cur = 1 - cur;
        }
        let out = (f.pair[cur].to_nhwc(), f.pair[cur].dims());
        if let Ok(mut pool) = self.frames.lock() {
            pool.push(f);
        }
        out
    }
}
