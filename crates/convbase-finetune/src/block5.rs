//! VGG16's block5 (three conv 3x3 + ReLU, then a 2x2 max-pool) over trainable variables, on
//! NHWC maps (the features files' HWC rows, reshaped), and the layout changes between feature
//! rows and candle's NCHW convs for the plain candle path.

use candle_core::Tensor;
use convbase_train::{Params, Result};
use convbase_vgg16::{Layer, conv3x3, conv3x3_bias_relu_nhwc, max_pool_2x2_nhwc};

/// The three convs of block5, in order.
pub const CONVS: [Layer; 3] = [Layer::Block5Conv1, Layer::Block5Conv2, Layer::Block5Conv3];

/// Names and shapes of block5's tensors, as the conv base's weights file has them
/// (torchvision names, OIHW kernels): `features.{24,26,28}.{weight,bias}`.
pub fn tensor_names() -> Vec<(String, Vec<usize>)> {
    CONVS
        .iter()
        .flat_map(|l| {
            let (o, i, n) = (l.channels(), l.in_channels(), l.torch_index());
            [
                (format!("features.{n}.weight"), vec![o, i, 3, 3]),
                (format!("features.{n}.bias"), vec![o]),
            ]
        })
        .collect()
}

/// block5_conv1..3 and block5_pool, with parameters taken from a [`Params`].
#[derive(Debug, Clone)]
pub struct Block5 {
    /// (OIHW kernel, bias (O)) per conv.
    convs: Vec<(Tensor, Tensor)>,
}

impl Block5 {
    /// Loads the six tensors of [`tensor_names`] from `params` as trainable variables.
    /// They have no initialiser: fine-tuning starts from pretrained weights.
    pub fn new(params: &mut Params) -> Result<Self> {
        let mut convs = Vec::with_capacity(CONVS.len());
        let names = tensor_names();
        for pair in names.chunks(2) {
            let weight = params.stored(&pair[0].0, &pair[0].1)?;
            let bias = params.stored(&pair[1].0, &pair[1].1)?;
            convs.push((weight.as_tensor().clone(), bias.as_tensor().clone()));
        }
        Ok(Block5 { convs })
    }

    /// Fine-tuning's pass: each conv + bias + ReLU one op whose forward pass and gradients
    /// are Winograd F(3x3, 3x3) on the CPU (convbase-vgg16's `conv3x3_bias_relu_nhwc`; the
    /// input gradient of the first conv is skipped, as cached features need none), then
    /// the pool whose gradient goes whole to each maximum. Off the CPU, candle's ops.
    ///
    /// # Shapes
    /// `x`: (N, H, W, 512) NHWC block4_pool maps -> (N, H/2, W/2, 512), block5_pool (floor)
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = x.clone();
        for (weight, bias) in &self.convs {
            y = conv3x3_bias_relu_nhwc(&y, weight, bias)?;
        }
        max_pool_2x2_nhwc(&y)
    }

    /// The same on NCHW maps with candle tensors ops: each conv convbase-vgg16's GEMM
    /// `conv3x3`, then candle's bias add and ReLU, and [`max_pool_2x2`]. Kept as the
    /// reference the NHWC path is tested against.
    ///
    /// # Shapes
    /// `x`: (N, 512, H, W), block4_pool maps -> (N, 512, H/2, W/2), block5_pool (floor)
    pub fn forward_nchw(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = x.clone();
        for (weight, bias) in &self.convs {
            let bias = bias.reshape((1, (), 1, 1))?;
            y = conv3x3(&y, weight)?.broadcast_add(&bias)?.relu()?;
        }
        max_pool_2x2(&y)
    }
}

/// Rows of maps flattened in Keras' HWC order (channels fastest), as a features file holds
/// them, to the NCHW layout candle's convolutions take.
///
/// # Shapes
/// `x`: (N, H*W*C) -> (N, C, H, W), contiguous
pub fn hwc_to_nchw(x: &Tensor, h: usize, w: usize, c: usize) -> candle_core::Result<Tensor> {
    let n = x.dim(0)?;
    x.reshape((n, h, w, c))?.permute((0, 3, 1, 2))?.contiguous()
}

/// The inverse of [`hwc_to_nchw`]: NCHW maps to rows in Keras' `Flatten` order, the layout
/// of the features a head is trained on.
///
/// # Shapes
/// `x`: (N, C, H, W) -> (N, H*W*C)
pub fn nchw_to_hwc(x: &Tensor) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    x.permute((0, 2, 3, 1))?.reshape((n, h * w * c))
}

/// 2x2 max-pool with stride 2, floor (Keras' `valid`), whose gradient goes to each window's
/// maximum.
///
/// candle 0.11's `max_pool2d` backward multiplies the gradient by (maxima in the window) / 4,
/// so a unique maximum gets a quarter of its gradient; this pool is built from `max`
/// reductions instead, whose backward passes the whole gradient to the maximum (to every
/// maximum on an exact tie, a case of measure zero outside all-zero windows, where the ReLU
/// below passes nothing back anyway).
///
/// # Shapes
/// `x`: (N, C, H, W) -> (N, C, H/2, W/2)
pub fn max_pool_2x2(x: &Tensor) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (h / 2, w / 2);
    x.narrow(2, 0, 2 * ho)?
        .narrow(3, 0, 2 * wo)?
        .reshape((n, c, ho, 2, wo, 2))?
        .max(5)?
        .max(3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn ramp(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1013) as f32).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn hwc_rows_become_nchw_maps_and_back() {
        let (n, h, w, c) = (2, 3, 5, 4);
        let rows = ramp(&[n, h * w * c]);
        let flat = rows.to_vec2::<f32>().unwrap();
        let maps = hwc_to_nchw(&rows, h, w, c).unwrap();
        assert_eq!(maps.dims(), [n, c, h, w]);
        let nchw = maps.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for b in 0..n {
            for y in 0..h {
                for x in 0..w {
                    for ch in 0..c {
                        // Keras' Flatten of an (H, W, C) map: channels fastest.
                        assert_eq!(
                            nchw[((b * c + ch) * h + y) * w + x],
                            flat[b][(y * w + x) * c + ch],
                            "({b},{y},{x},{ch})"
                        );
                    }
                }
            }
        }
        let back = nchw_to_hwc(&maps).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(back, flat);
        // The conv base's own flattening agrees (it writes the features files).
        let theirs = convbase_vgg16::flatten_hwc(&maps).unwrap();
        assert_eq!(theirs, flat.concat());
    }

    #[test]
    fn pool_takes_window_maxima_with_floor_and_routes_the_whole_gradient() {
        let x = ramp(&[2, 3, 5, 7]);
        let ours = max_pool_2x2(&x).unwrap();
        let candle = x.max_pool2d(2).unwrap();
        assert_eq!(ours.dims(), [2, 3, 2, 3]);
        assert_eq!(
            ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            candle.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        // d(sum of the pooled values)/dx is 1 at each window's maximum, 0 elsewhere.
        let v = Var::from_tensor(&x).unwrap();
        let grads = max_pool_2x2(v.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = grads.get(v.as_tensor()).unwrap();
        let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(g.iter().filter(|&&v| v == 1.0).count(), 2 * 3 * 2 * 3);
        assert_eq!(g.iter().sum::<f32>(), (2 * 3 * 2 * 3) as f32);
        // What this pool exists for: candle's own gives each maximum a quarter (here on even
        // sizes; on odd ones its gradient is further off).
        let v = Var::from_tensor(&ramp(&[2, 3, 4, 6])).unwrap();
        let grads = v
            .as_tensor()
            .max_pool2d(2)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let total: f32 = grads
            .get(v.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(total, (2 * 3 * 2 * 3) as f32 / 4.0);
    }
}
