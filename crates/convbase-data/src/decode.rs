//! Decoding any supported image file into RGB8, safely.
//!
//! One function decides whether a file is usable, so that `convbase-prepare` (which records
//! the reason in the manifest) and every later stage (which loads the pixels) agree.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

/// Largest width or height accepted. Larger declared sizes are refused before any pixel
/// buffer is allocated (a few-kilobyte file can declare 50000x50000 pixels).
pub const MAX_SIDE: u32 = 30_000;
/// Largest decoded pixel buffer accepted, in bytes.
pub const MAX_DECODED_BYTES: u64 = 512 * 1024 * 1024;

/// Why a file cannot be used as an image. The `Display` text is what the manifest records
/// as the file's `status`.
#[derive(Debug, thiserror::Error)]
pub enum BadImage {
    #[error("empty file")]
    Empty,
    #[error("unreadable: {0}")]
    Unreadable(#[source] std::io::Error),
    #[error("not an image (unrecognised content)")]
    UnknownFormat,
    #[error("unsupported format {0:?}")]
    Unsupported(ImageFormat),
    #[error("truncated JPEG (no end-of-image marker after the last scan)")]
    TruncatedJpeg,
    #[error("too large: declares {width}x{height} pixels (limits: {MAX_SIDE} a side, {} MiB decoded)", MAX_DECODED_BYTES >> 20)]
    TooLarge { width: u32, height: u32 },
    #[error("too large: refused by decoder limits ({0})")]
    Limits(String),
    #[error("corrupt {format:?}: {message}")]
    Corrupt {
        format: ImageFormat,
        message: String,
    },
}

/// A failure to load an image, naming the file when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{}{reason}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
pub struct ImageError {
    pub path: Option<PathBuf>,
    #[source]
    pub reason: BadImage,
}

impl ImageError {
    fn at(path: &Path, reason: BadImage) -> Self {
        ImageError {
            path: Some(path.to_path_buf()),
            reason,
        }
    }
}

impl From<BadImage> for ImageError {
    fn from(reason: BadImage) -> Self {
        ImageError { path: None, reason }
    }
}

/// A decoded image with what the manifest records about it.
#[derive(Debug)]
pub struct Decoded {
    /// Pixels after EXIF orientation, in the decoder's own colour type.
    pub image: DynamicImage,
    /// The file's colour type as the decoder reports it (`L8`, `Rgb8`, `Rgba16`, `Cmyk8`, ...).
    pub color: String,
    pub format: ImageFormat,
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_alloc = Some(MAX_DECODED_BYTES);
    // Sides are checked by us with the declared size in hand, for a clearer message.
    l.max_image_width = None;
    l.max_image_height = None;
    l
}

fn corrupt(format: ImageFormat, err: image::ImageError) -> BadImage {
    match err {
        image::ImageError::Limits(e) => BadImage::Limits(e.to_string()),
        image::ImageError::Unsupported(_) => BadImage::Unsupported(format),
        other => BadImage::Corrupt {
            format,
            message: other.to_string(),
        },
    }
}

/// The image crate's JPEG decoder (zune-jpeg, lenient mode) fills a truncated file's
/// missing rows with grey instead of failing. An end-of-image marker (`FF D9`) after the
/// start of the last scan (`FF DA`) shows the data is complete: neither byte pair can occur
/// inside entropy-coded data, and an EXIF thumbnail's own markers come before the main scan.
fn jpeg_complete(bytes: &[u8]) -> bool {
    let find_last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (find_last(0xDA), find_last(0xD9)) {
        (Some(sos), Some(eoi)) => eoi > sos,
        _ => false,
    }
}

/// Decodes a file's bytes: format from content (never the extension), decoder limits,
/// EXIF orientation applied. Keeps the decoder's colour type; see [`decode_rgb8`].
pub fn decode(bytes: &[u8]) -> Result<Decoded, BadImage> {
    if bytes.is_empty() {
        return Err(BadImage::Empty);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(BadImage::Unreadable)?;
    let format = reader.format().ok_or(BadImage::UnknownFormat)?;
    if !matches!(
        format,
        ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::WebP
            | ImageFormat::Bmp
            | ImageFormat::Gif
            | ImageFormat::Tiff
    ) {
        return Err(BadImage::Unsupported(format));
    }
    if format == ImageFormat::Jpeg && !jpeg_complete(bytes) {
        return Err(BadImage::TruncatedJpeg);
    }
    let mut limits = limits();
    reader.limits(limits.clone());
    contain_panics(format, move || {
        let mut decoder = reader.into_decoder().map_err(|e| corrupt(format, e))?;
        let (width, height) = decoder.dimensions();
        if width > MAX_SIDE || height > MAX_SIDE || limits.reserve(decoder.total_bytes()).is_err() {
            return Err(BadImage::TooLarge { width, height });
        }
        let color = format!("{:?}", decoder.original_color_type());
        let orientation = decoder.orientation().map_err(|e| corrupt(format, e))?;
        let mut image = DynamicImage::from_decoder(decoder).map_err(|e| corrupt(format, e))?;
        image.apply_orientation(orientation);
        Ok(Decoded {
            image,
            color,
            format,
        })
    })
}

thread_local! {
    /// Set while this thread runs a decoder under [`contain_panics`]; holds the message of
    /// the panic the hook saw, if any.
    static CONTAINED: std::cell::RefCell<Option<Option<String>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs a decoder, turning a panic into [`BadImage::Corrupt`]: a malformed file must be
/// refused, not crash the stage (png 0.18.1 panics on a palette whose length is not a
/// multiple of 3; a decoder may have other such bugs, which the `decode_image` fuzz target
/// looks for). A panic hook, installed once and deferring to the previous hook for any
/// other panic, keeps a contained panic off stderr and records where it happened.
fn contain_panics(
    format: ImageFormat,
    decode: impl FnOnce() -> Result<Decoded, BadImage>,
) -> Result<Decoded, BadImage> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let contained = CONTAINED.with(|c| {
                let mut c = c.borrow_mut();
                match c.as_mut() {
                    Some(slot) => {
                        let at = info
                            .location()
                            .map(|l| format!(" at {}:{}", crate_relative(l.file()), l.line()))
                            .unwrap_or_default();
                        *slot = Some(format!("{}{at}", payload_text(info.payload())));
                        true
                    }
                    None => false,
                }
            });
            if !contained {
                previous(info);
            }
        }));
    });
    let outer = CONTAINED.with(|c| c.replace(Some(None)));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode));
    let seen = CONTAINED.with(|c| c.replace(outer)).flatten();
    result.unwrap_or_else(|payload| {
        Err(BadImage::Corrupt {
            format,
            message: format!(
                "the decoder failed on malformed data ({})",
                seen.unwrap_or_else(|| payload_text(payload.as_ref()))
            ),
        })
    })
}

/// `png-0.18.1/src/x.rs` for `/home/u/.cargo/registry/src/index/png-0.18.1/src/x.rs`: the
/// manifest records the message, and must not depend on where the crate was built.
fn crate_relative(file: &str) -> &str {
    match file.rfind("/src/") {
        Some(i) => file[..i].rfind('/').map_or(file, |j| &file[j + 1..]),
        None => file,
    }
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Decodes any supported file's bytes to RGB8: limits, EXIF orientation, and any colour
/// type (grey, palette, alpha, CMYK, 16-bit) converted as PIL's `convert('RGB')` does for
/// 8-bit images: grey replicated into R, G and B, alpha dropped.
pub fn decode_rgb8(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    Ok(into_rgb8(decode(bytes)?.image))
}

/// [`decode_rgb8`] on a file; the error names the path.
pub fn load_rgb8(path: &Path) -> Result<RgbImage, ImageError> {
    let bytes = read_file(path).map_err(|r| ImageError::at(path, r))?;
    decode(&bytes)
        .map(|d| into_rgb8(d.image))
        .map_err(|r| ImageError::at(path, r))
}

/// Reads a whole image file (an empty one is [`BadImage::Empty`]); the error names the path.
pub fn read_image(path: &Path) -> Result<Vec<u8>, ImageError> {
    read_file(path).map_err(|r| ImageError::at(path, r))
}

/// Reads a whole file, mapping an empty one to [`BadImage::Empty`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, BadImage> {
    let bytes = std::fs::read(path).map_err(BadImage::Unreadable)?;
    if bytes.is_empty() {
        return Err(BadImage::Empty);
    }
    Ok(bytes)
}

pub(crate) fn into_rgb8(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_completeness_ignores_thumbnail_markers() {
        // thumbnail SOS..EOI, then the main scan without its EOI: truncated.
        let truncated = [0xFF, 0xD8, 0xFF, 0xDA, 1, 0xFF, 0xD9, 0xFF, 0xDA, 2, 3];
        assert!(!jpeg_complete(&truncated));
        let complete = [
            0xFF, 0xD8, 0xFF, 0xDA, 1, 0xFF, 0xD9, 0xFF, 0xDA, 2, 0xFF, 0xD9,
        ];
        assert!(jpeg_complete(&complete));
    }

    /// A 1x1 8-bit indexed PNG whose PLTE chunk holds `palette`, CRCs valid.
    fn indexed_1x1(palette: &[u8]) -> Vec<u8> {
        fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            png.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            png.extend_from_slice(kind);
            png.extend_from_slice(data);
            png.extend_from_slice(&crc.sum().to_be_bytes());
        }
        let mut idat = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::none());
        std::io::Write::write_all(&mut idat, &[0, 0]).unwrap(); // filter 0, index 0
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut png, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 3, 0, 0, 0]);
        chunk(&mut png, b"PLTE", palette);
        chunk(&mut png, b"IDAT", &idat.finish().unwrap());
        chunk(&mut png, b"IEND", b"");
        png
    }

    /// png 0.18.1 panics on a PLTE chunk that is not whole RGB entries (found by the
    /// `decode_image` fuzz target): the file is refused as a corrupt PNG instead.
    #[test]
    fn a_decoder_panic_is_a_corrupt_file_not_a_crash() {
        let good = decode_rgb8(&indexed_1x1(&[255, 0, 0])).unwrap();
        assert_eq!(good.as_raw(), &[255, 0, 0]);
        for palette in [&[255, 0, 0, 0][..], &[255, 0, 0, 7, 7]] {
            match decode(&indexed_1x1(palette)) {
                Err(
                    e @ BadImage::Corrupt {
                        format: ImageFormat::Png,
                        ..
                    },
                ) => {
                    assert!(e.to_string().starts_with("corrupt Png: "), "{e}")
                }
                other => panic!("{} palette bytes: {other:?}", palette.len()),
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad-palette.png");
        std::fs::write(&path, indexed_1x1(&[255, 0, 0, 0])).unwrap();
        let e = load_rgb8(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: corrupt Png:", path.display())),
            "{e}"
        );
    }

    #[test]
    fn a_contained_panic_says_what_and_where_and_others_still_panic() {
        let e = contain_panics(ImageFormat::Gif, || panic!("index {} out of range", 7))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("corrupt Gif: the decoder failed on malformed data (index 7 out of range at convbase-data/src/decode.rs:"), "{e}");
        assert!(CONTAINED.with(|c| c.borrow().is_none()), "flag cleared");
        // Outside the decoder a panic is a panic, reported by the usual hook.
        assert!(std::panic::catch_unwind(|| panic!("not contained")).is_err());
        assert_eq!(
            crate_relative("/h/.cargo/registry/src/idx/png-0.18.1/src/a/b.rs"),
            "png-0.18.1/src/a/b.rs"
        );
    }
}
