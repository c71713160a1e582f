//! Data stage of convbase: everything about image files.
//!
//! - Shared image loading used by every later stage: [`decode_rgb8`], [`load_rgb8`],
//!   [`resize`] and [`load_for_network`], reproducing what Keras' `load_img` feeds the
//!   network (PIL decoding to RGB, PIL `resize`), with decoder limits against
//!   decompression bombs and EXIF orientation applied.
//! - `convbase-prepare`: scans a data set (pre-split or flat with a deterministic split)
//!   into `manifest.parquet`, one row per file with its status ([`prepare`]).
//! - `convbase-demo-data`: writes the Fashion-MNIST demo set from IDX files ([`demo`]).
//! - Data augmentation with Keras' `ImageDataGenerator` semantics ([`augment`]) and
//!   `convbase-augment-preview`, which shows an image's augmented views on a contact sheet.

pub mod augment;
mod decode;
pub mod demo;
pub mod prepare;
mod resize;
pub mod split;

use std::path::Path;

pub use decode::{
    BadImage, Decoded, ImageError, MAX_DECODED_BYTES, MAX_SIDE, decode, decode_rgb8, load_rgb8,
    read_image,
};
pub use resize::{ResizeFilter, resize, resize_to};

/// Decode -> RGB8 -> resize -> HWC RGB `f32` in `0..=255` (length `size * size * 3`): the
/// layout the conv base's `Preprocess` takes.
pub fn load_for_network(
    path: &Path,
    size: u32,
    filter: ResizeFilter,
) -> Result<Vec<f32>, ImageError> {
    let bytes = read_image(path)?;
    decode_for_network(&bytes, size, filter).map_err(|reason| ImageError {
        path: Some(path.to_path_buf()),
        reason,
    })
}

/// [`load_for_network`] on a file's bytes already read (e.g. to hash exactly the bytes
/// that are decoded).
pub fn decode_for_network(
    bytes: &[u8],
    size: u32,
    filter: ResizeFilter,
) -> Result<Vec<f32>, BadImage> {
    let img = resize(&decode::into_rgb8(decode(bytes)?.image), size, filter);
    Ok(img.into_raw().into_iter().map(f32::from).collect())
}
