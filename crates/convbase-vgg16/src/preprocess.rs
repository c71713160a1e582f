//! Turning RGB pixels into the network input each family of weights was trained on.

use std::fmt;
use std::str::FromStr;

use candle_core::{Device, Tensor};

use crate::error::ParseError;

/// Per-channel means of Keras' `caffe` mode, in B, G, R order.
const CAFFE_MEAN_BGR: [f32; 3] = [103.939, 116.779, 123.68];
/// torchvision's ImageNet mean and std, in R, G, B order (applied after x/255).
const TORCH_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const TORCH_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How pixels become network input.
///
/// | mode | for | channel order | value |
/// |---|---|---|---|
/// | `caffe` | Keras ImageNet weights | B, G, R | x - [103.939, 116.779, 123.68] (x in 0..255) |
/// | `torch` | torchvision/timm weights | R, G, B | (x/255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225] |
/// | `rescale` | the seed (book), any weights | R, G, B | x/255 |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Preprocess {
    Rescale,
    Caffe,
    Torch,
}

impl Preprocess {
    /// Writes the network input for one image.
    ///
    /// `rgb` is HWC, RGB order, values 0..=255 as f32, `size*size*3` long; `out` receives the
    /// input in CHW order, `3*size*size` long.
    ///
    /// # Panics
    /// When a slice has the wrong length (a caller's bug, not a data error).
    pub fn apply(&self, rgb: &[f32], size: usize, out: &mut [f32]) {
        let plane = size * size;
        assert_eq!(rgb.len(), plane * 3, "rgb must be size*size*3 long");
        assert_eq!(out.len(), plane * 3, "out must be 3*size*size long");
        // For each output channel: which RGB channel feeds it, and y = x * scale + shift.
        let (src, scale, shift): ([usize; 3], [f32; 3], [f32; 3]) = match self {
            Self::Rescale => ([0, 1, 2], [1.0 / 255.0; 3], [0.0; 3]),
            Self::Caffe => ([2, 1, 0], [1.0; 3], CAFFE_MEAN_BGR.map(|m| -m)),
            Self::Torch => (
                [0, 1, 2],
                TORCH_STD.map(|s| 1.0 / (255.0 * s)),
                [0, 1, 2].map(|c| -TORCH_MEAN[c] / TORCH_STD[c]),
            ),
        };
        for (c, out_plane) in out.chunks_exact_mut(plane).enumerate() {
            let (s, k, b) = (src[c], scale[c], shift[c]);
            for (o, px) in out_plane.iter_mut().zip(rgb.chunks_exact(3)) {
                *o = px[s] * k + b;
            }
        }
    }

    /// Preprocesses `n` images (HWC RGB 0..=255, concatenated) into an (n, 3, size, size)
    /// tensor on `device`.
    pub fn batch(
        &self,
        rgb: &[f32],
        n: usize,
        size: usize,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let per = 3 * size * size;
        if rgb.len() != n * per {
            candle_core::bail!(
                "expected {n} images of {size}x{size}x3 ({} values), got {}",
                n * per,
                rgb.len()
            );
        }
        let mut out = vec![0f32; n * per];
        for (img, o) in rgb.chunks_exact(per).zip(out.chunks_exact_mut(per)) {
            self.apply(img, size, o);
        }
        Tensor::from_vec(out, (n, 3, size, size), device)
    }
}

impl fmt::Display for Preprocess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rescale => "rescale",
            Self::Caffe => "caffe",
            Self::Torch => "torch",
        })
    }
}

impl FromStr for Preprocess {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rescale" => Ok(Self::Rescale),
            "caffe" => Ok(Self::Caffe),
            "torch" => Ok(Self::Torch),
            _ => Err(ParseError {
                what: "preprocessing",
                got: s.to_string(),
                expected: "rescale, caffe, torch".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1x2 image: pixel 0 = (R 10, G 20, B 30), pixel 1 = (255, 0, 128).
    const RGB: [f32; 6] = [10.0, 20.0, 30.0, 255.0, 0.0, 128.0];

    fn run(p: Preprocess) -> Vec<f32> {
        // apply() wants a square; a 1x2 image is fine as "size" only sets plane = len/3.
        let mut rgb = RGB.to_vec();
        rgb.extend_from_slice(&[0.0; 6]);
        let mut out = vec![0.0; 12];
        p.apply(&rgb, 2, &mut out);
        out
    }

    #[test]
    fn caffe_is_bgr_minus_keras_means() {
        let o = run(Preprocess::Caffe);
        // channel 0 = B: 30 - 103.939, 128 - 103.939
        assert!((o[0] - (30.0 - 103.939)).abs() < 1e-4);
        assert!((o[1] - (128.0 - 103.939)).abs() < 1e-4);
        // channel 2 = R: 10 - 123.68, 255 - 123.68
        assert!((o[8] - (10.0 - 123.68)).abs() < 1e-4);
        assert!((o[9] - (255.0 - 123.68)).abs() < 1e-4);
    }

    #[test]
    fn torch_and_rescale_keep_rgb() {
        let o = run(Preprocess::Torch);
        assert!((o[0] - (10.0 / 255.0 - 0.485) / 0.229).abs() < 1e-5);
        assert!((o[5] - (0.0 - 0.456) / 0.224).abs() < 1e-5);
        assert!((o[9] - (128.0 / 255.0 - 0.406) / 0.225).abs() < 1e-5);
        let r = run(Preprocess::Rescale);
        assert!((r[1] - 1.0).abs() < 1e-7 && (r[8] - 30.0 / 255.0).abs() < 1e-7);
        for p in ["rescale", "caffe", "torch"] {
            assert_eq!(p.parse::<Preprocess>().unwrap().to_string(), p);
        }
        assert!("tf".parse::<Preprocess>().is_err());
    }
}
