//! Image files made in Rust for the tests: good ones in every format, and bad ones.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, RgbImage};

/// A small RGB image whose pixels depend on `seed`, so files differ in content.
pub fn pattern(w: u32, h: u32, seed: u8) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 37 + u32::from(seed) * 11) as u8,
            (y * 53 + u32::from(seed)) as u8,
            ((x ^ y) * 29) as u8,
        ])
    })
}

pub fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

pub fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    encode(
        &DynamicImage::ImageRgb8(pattern(w, h, seed)),
        ImageFormat::Png,
    )
}

pub fn jpeg(w: u32, h: u32, seed: u8) -> Vec<u8> {
    encode(
        &DynamicImage::ImageRgb8(pattern(w, h, seed)),
        ImageFormat::Jpeg,
    )
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A valid-looking PNG of a few dozen bytes that declares `side` x `side` RGB pixels.
pub fn png_bomb(side: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    png_chunk(&mut out, b"IHDR", &ihdr);
    // A zlib stream of a few zero bytes: far less data than declared.
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A GIF header declaring a `side` x `side` screen and one frame of that size.
pub fn gif_bomb(side: u16) -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&side.to_le_bytes());
    out.extend_from_slice(&side.to_le_bytes());
    out.extend_from_slice(&[0x80, 0, 0]); // global colour table of 2 entries
    out.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    out.push(0x2C); // image descriptor
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&side.to_le_bytes());
    out.extend_from_slice(&side.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&[2, 2, 0x4C, 0x01, 0]); // a tiny LZW stream
    out.push(0x3B);
    out
}

/// The first `fraction` of `bytes`.
pub fn truncated(bytes: &[u8], fraction: f64) -> Vec<u8> {
    bytes[..(bytes.len() as f64 * fraction) as usize].to_vec()
}
