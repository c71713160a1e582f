//! Fine-tuning VGG16's block5 with a trained dense head on cached `block4_pool` features: the
//! seed's variant 3 at a fraction of its cost, since a step runs block5 and the head only,
//! never blocks 1-4.
//!
//! This crate owns the fine-tuned model ([`FineTuned`]: block5's three convs + pool over
//! trainable variables, then the dense head), the checks that the features, the head run and
//! the weights belong together ([`check_inputs`]), and the `convbase-finetune` binary. The
//! training loop, optimisers, losses, seeded draws and the run directory are
//! `convbase-train`'s; the head is `convbase-head-dense`'s.
//!
//! Layouts: a features row holds a block4_pool map flattened in Keras' HWC order, i.e. an NHWC
//! map: block5 runs on it as it is (Winograd convs on the CPU, convbase-vgg16's
//! `conv3x3_bias_relu_nhwc`), and its NHWC block5_pool output flattens to the HWC rows the head
//! was trained on. The plain candle path on NCHW tensors ([`hwc_to_nchw`], [`nchw_to_hwc`],
//! [`Block5::forward_nchw`]) is kept as the reference.
//!
//! A fine-tuned run directory is a head run directory whose `model.safetensors` says
//! `convbase.head = convbase-finetune` and holds block5 (`features.{24,26,28}.*`, OIHW)
//! and the head; `convbase-predict` runs blocks 1-4 of the conv base and then this model.

mod block5;
pub mod cli;
mod error;
mod model;
mod train;

pub use block5::{Block5, CONVS, hwc_to_nchw, max_pool_2x2, nchw_to_hwc, tensor_names};
pub use error::FineTuneError;
pub use model::{FineTuneConfig, FineTuned, HeadRun};
pub use train::{Job, check_inputs, start_model, train};
