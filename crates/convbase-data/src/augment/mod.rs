//! Data augmentation with Keras' `ImageDataGenerator` semantics, applied (as
//! `flow_from_directory` does) to the image already resized to the network's input size.
//!
//! - [`AugmentPolicy`]: the generator's arguments (rotation, shifts, shear, zoom, flips,
//!   fill mode) plus a seed; [`AugmentPolicy::draw`] gives view `k` of an image its
//!   parameters, deterministically from (seed, image key, k); view 0 is the image itself.
//!   Written as a short spec (`Display`/`FromStr`, the `--augment` flag) or JSON
//!   ([`AugmentPolicy::to_json`], the features footer).
//! - [`apply`]: one transform with explicit [`TransformParams`], reproducing Keras'
//!   `apply_affine_transform` + flips and SciPy's `affine_transform` sampling; checked
//!   against both in `tests/augment.rs`.
//! - [`sheet`]: the contact sheet of `convbase-augment-preview`.

mod affine;
mod policy;
pub mod sheet;

pub use affine::{Fill, Geometry, Interpolation, Sampling, TransformParams, apply};
pub use policy::{AugmentPolicy, PolicyError, ShearUnit};
