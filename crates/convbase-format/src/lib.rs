//! The Parquet contract between convbase stages.
//!
//! Stages talk only through three Parquet files; this crate is the one place that knows
//! their schemas, their footer metadata, how to write them so that a final path never holds
//! a half-written file, and how to read them back with validation. The schemas are
//! documented once, in this crate's `README.md`.
//!
//! - [`Manifest`]: one row per image file found by `convbase-prepare`.
//! - [`FeaturesWriter`] / [`Features`]: conv-base features, one row per (image, view).
//! - [`Predictions`]: a head's class probabilities, one row per (image, view).

mod atomic;
mod chunk;
mod error;
mod features;
mod manifest;
mod meta;
mod predictions;
mod split;
mod thrift;

pub use atomic::{AtomicFile, write_atomically};
pub use error::{FormatError, Result};
pub use features::{
    FeatureBatch, FeatureProvenance, Features, FeaturesFile, FeaturesWriter, read_features_meta,
};
pub use manifest::{Manifest, ManifestMeta, ManifestRow, STATUS_OK};
pub use meta::{FileKind, SCHEMA_VERSION, TOOL_VERSION, sha256_file};
pub use predictions::{PredictionRow, Predictions};
pub use split::Split;
