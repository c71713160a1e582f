//! The VGG16 convolutional base (13 conv 3x3 + ReLU, 5 max-pools) on candle, and the ImageNet
//! weights that feed it, loaded from every source a user has: the Hugging Face Hub
//! (`hf:timm/vgg16.tv_in1k`), a torchvision/timm `.safetensors`, a Keras VGG16 exported to ONNX
//! by tf2onnx, or Keras' own `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`.
//!
//! This crate owns three things later stages must not guess:
//! - the network: [`Vgg16`], batched NCHW, any input size from 32 px, output at any Keras layer
//!   ([`Layer`]), optional global pooling ([`GlobalPool`]); layers run in sub-ranges
//!   ([`Vgg16::forward_range`], candle ops, differentiable; [`Vgg16::forward_range_gemm`], the
//!   same with [`conv3x3`], whose forward pass and gradients are whole-batch GEMMs;
//!   [`Vgg16::forward_range_nhwc`], on NHWC maps with [`conv3x3_bias_relu_nhwc`] and
//!   [`max_pool_2x2_nhwc`], whose forward pass and gradients are Winograd F(3x3, 3x3) on the
//!   CPU, fine-tuning's path) so fine-tuning can run block5 alone, while [`Vgg16::forward`] on
//!   the CPU takes a faster inference-only path ([`fast`]: NHWC, Winograd F(4x4, 3x3) with
//!   weights transformed at load, AVX-512/AVX2 kernels chosen at run time);
//! - the weights and their provenance: [`Weights`] (source, SHA-256, and the preprocessing the
//!   weights expect, carried in the safetensors header metadata written by [`Weights::save`]);
//! - the preprocessing: [`Preprocess`] (`caffe` for Keras weights, `torch` for torchvision/timm,
//!   `rescale` = x/255 as in the seed), and the output layout: [`flatten_hwc`] flattens in
//!   Keras' order (channels fastest).
//!
//! Tensor names follow torchvision (`features.N.weight` OIHW, `features.N.bias`).

mod error;
pub mod fast;
mod hub;
mod keras_h5;
mod layer;
mod model;
mod onnx;
mod preprocess;
mod train_conv;
mod weights;

pub use error::{ParseError, Vgg16Error};
pub use layer::{GlobalPool, Layer};
pub use model::{Vgg16, flatten_hwc};
pub use preprocess::Preprocess;
pub use train_conv::{
    conv3x3, conv3x3_bias_relu_nhwc, conv3x3_bias_relu_nhwc_candle, max_pool_2x2_nhwc,
    max_pool_2x2_nhwc_candle,
};
pub use weights::{PARAMETER_COUNT, SourceFormat, Weights, conv_tensor_names, meta};
