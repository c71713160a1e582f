//! Image loading checked against Pillow (goldens from scripts/dev/make_resize_goldens.py)
//! and against files of every supported format and colour type made here.

mod common;

use std::path::{Path, PathBuf};

use convbase_data::{
    BadImage, ResizeFilter, decode, decode_rgb8, load_for_network, load_rgb8, resize,
};
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, RgbImage, Rgba};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// A golden PNG written by Pillow, read back as RGB8.
fn golden_rgb(name: &str) -> RgbImage {
    let img = image::open(golden(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        matches!(img, DynamicImage::ImageRgb8(_)),
        "{name} is not an RGB PNG"
    );
    img.to_rgb8()
}

/// (largest channel difference, number of differing channel values).
fn diff(a: &RgbImage, b: &RgbImage) -> (u8, usize) {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .fold((0, 0), |(m, n), d| (m.max(d), n + usize::from(d > 0)))
}

const INPUTS: [&str; 4] = ["gray28", "rgb28", "rgb499x375", "rgb375x500"];

#[test]
fn nearest_reproduces_pillow_exactly() {
    for name in INPUTS {
        let src = load_rgb8(&golden(&format!("{name}.png"))).unwrap();
        let ours = resize(&src, 150, ResizeFilter::Nearest);
        let pil = golden_rgb(&format!("{name}.nearest150.png"));
        assert_eq!(
            diff(&ours, &pil),
            (0, 0),
            "{name}: nearest differs from Pillow"
        );
    }
}

/// Same algorithm and 22-bit fixed-point arithmetic as Pillow's `ImagingResample`, so the
/// results are identical; only Lanczos, which calls `sin`, is allowed a rare one-level
/// difference in case the platform's `sin` rounds differently from the C library's.
#[test]
fn smooth_filters_reproduce_pillow() {
    for (filter, tolerance) in [
        (ResizeFilter::Bilinear, 0),
        (ResizeFilter::Bicubic, 0),
        (ResizeFilter::Lanczos3, 1),
    ] {
        for name in INPUTS {
            let src = load_rgb8(&golden(&format!("{name}.png"))).unwrap();
            let ours = resize(&src, 150, filter);
            let pil = golden_rgb(&format!("{name}.{filter}150.png"));
            let (max, count) = diff(&ours, &pil);
            assert!(
                max <= tolerance && count * 1000 <= ours.as_raw().len(),
                "{name} {filter}: differs from Pillow by up to {max} ({count} values)"
            );
        }
    }
}

#[test]
fn gray_is_replicated_like_pil_convert_rgb() {
    let ours = load_rgb8(&golden("gray28.png")).unwrap();
    assert_eq!(ours, golden_rgb("gray28.rgb.png"));
    let gray = image::open(golden("gray28.png")).unwrap().to_luma8();
    for (p, g) in ours.pixels().zip(gray.pixels()) {
        assert_eq!(p.0, [g.0[0]; 3]);
    }
}

#[test]
fn palette_png_expands_like_pil() {
    let d = decode(&std::fs::read(golden("palette.png")).unwrap()).unwrap();
    assert_eq!(d.format, ImageFormat::Png);
    assert_eq!(
        load_rgb8(&golden("palette.png")).unwrap(),
        golden_rgb("palette.rgb.png")
    );
}

#[test]
fn cmyk_jpeg_made_by_pillow_decodes_to_its_colours() {
    let ours = load_rgb8(&golden("cmyk.jpg")).unwrap();
    let pil = golden_rgb("cmyk.rgb.png");
    let (max, _) = diff(&ours, &pil);
    assert!(
        max <= 8,
        "CMYK JPEG differs from Pillow's decoding by {max}"
    );
    // Centres of the six colour blocks the dev script painted.
    let colours = [
        [220, 30, 30],
        [30, 200, 40],
        [40, 60, 210],
        [240, 240, 240],
        [90, 90, 90],
        [250, 200, 20],
    ];
    for (i, want) in colours.iter().enumerate() {
        let p = ours
            .get_pixel((i as u32 % 3) * 16 + 8, (i as u32 / 3) * 16 + 8)
            .0;
        for c in 0..3 {
            assert!(
                p[c].abs_diff(want[c]) <= 12,
                "block {i}: {p:?}, painted {want:?}"
            );
        }
    }
}

#[test]
fn exif_orientation_is_applied() {
    // Stored 40x20, left red / right blue, orientation 6 (rotate 90 degrees clockwise).
    let ours = load_rgb8(&golden("orient6.jpg")).unwrap();
    assert_eq!(ours.dimensions(), (20, 40));
    let pil = golden_rgb("orient6.rgb.png");
    let (max, _) = diff(&ours, &pil);
    assert!(max <= 8, "differs from Pillow's exif_transpose by {max}");
    let top = ours.get_pixel(10, 5).0;
    let bottom = ours.get_pixel(10, 34).0;
    assert!(top[0] > 200 && top[2] < 60, "top {top:?} not red");
    assert!(
        bottom[2] > 200 && bottom[0] < 60,
        "bottom {bottom:?} not blue"
    );
}

#[test]
fn every_format_decodes_to_the_same_pixels() {
    let img = common::pattern(13, 7, 3);
    for format in [
        ImageFormat::Png,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::WebP,
    ] {
        let bytes = common::encode(&DynamicImage::ImageRgb8(img.clone()), format);
        let d = decode(&bytes).unwrap();
        assert_eq!(d.format, format);
        assert_eq!(d.color, "Rgb8");
        assert_eq!(decode_rgb8(&bytes).unwrap(), img, "{format:?}");
    }
    let bytes = common::jpeg(13, 7, 3);
    let (max, _) = diff(&decode_rgb8(&bytes).unwrap(), &img);
    assert!(max < 80, "JPEG far from its source ({max})");
}

#[test]
fn gif_gives_its_first_frame() {
    use image::codecs::gif::GifEncoder;
    use image::{Delay, Frame};
    let frame = |c: [u8; 4]| {
        Frame::from_parts(
            ImageBuffer::from_pixel(6, 4, Rgba(c)),
            0,
            0,
            Delay::from_numer_denom_ms(100, 1),
        )
    };
    let mut bytes = Vec::new();
    GifEncoder::new(&mut bytes)
        .encode_frames([frame([250, 0, 0, 255]), frame([0, 0, 250, 255])])
        .unwrap();
    let rgb = decode_rgb8(&bytes).unwrap();
    assert_eq!(rgb.dimensions(), (6, 4));
    assert!(
        rgb.pixels()
            .all(|p| p.0[0] > 200 && p.0[1] < 30 && p.0[2] < 30),
        "not the first (red) frame"
    );
}

#[test]
fn colour_types_become_rgb8() {
    let png = |img: DynamicImage| common::encode(&img, ImageFormat::Png);
    // 16-bit grey with alpha: grey scaled to 8 bits and replicated, alpha dropped.
    let la16 = ImageBuffer::from_fn(4, 3, |x, y| LumaA([(x * 1000 + y * 20000) as u16, 7]));
    let bytes = png(DynamicImage::ImageLumaA16(la16.clone()));
    assert_eq!(decode(&bytes).unwrap().color, "La16");
    let rgb = decode_rgb8(&bytes).unwrap();
    for (p, s) in rgb.pixels().zip(la16.pixels()) {
        let v = ((u32::from(s.0[0]) * 255 + 32767) / 65535) as u8;
        assert_eq!(p.0, [v; 3]);
    }
    // 16-bit RGBA.
    let rgba16 = ImageBuffer::from_pixel(2, 2, Rgba([65535u16, 0, 32896, 0]));
    assert_eq!(
        decode_rgb8(&png(DynamicImage::ImageRgba16(rgba16))).unwrap(),
        RgbImage::from_pixel(2, 2, Rgb([255, 0, 128]))
    );
    // 8-bit RGBA: alpha dropped, colour kept (as PIL's convert('RGB')).
    let rgba8 = ImageBuffer::from_pixel(3, 1, Rgba([10u8, 20, 30, 0]));
    assert_eq!(
        decode_rgb8(&png(DynamicImage::ImageRgba8(rgba8))).unwrap(),
        RgbImage::from_pixel(3, 1, Rgb([10, 20, 30]))
    );
    let l8 = ImageBuffer::from_pixel(2, 2, Luma([77u8]));
    assert_eq!(
        decode_rgb8(&png(DynamicImage::ImageLuma8(l8))).unwrap(),
        RgbImage::from_pixel(2, 2, Rgb([77, 77, 77]))
    );
}

#[test]
fn bombs_are_refused_without_allocating() {
    let start = std::time::Instant::now();
    for (name, bytes) in [
        ("png", common::png_bomb(50_000)),
        ("gif", common::gif_bomb(50_000)),
    ] {
        assert!(bytes.len() < 100, "{name} bomb is {} bytes", bytes.len());
        match decode(&bytes) {
            Err(BadImage::TooLarge { width, height }) => {
                assert_eq!((width, height), (50_000, 50_000), "{name}")
            }
            other => panic!("{name} bomb: {other:?}"),
        }
    }
    // Refused from the header: no 7.5 GB buffer was filled.
    assert!(start.elapsed().as_secs_f64() < 1.0);
}

#[test]
fn bad_bytes_have_reasons() {
    assert!(matches!(decode(&[]), Err(BadImage::Empty)));
    assert!(matches!(
        decode(b"# README\nnot an image\n"),
        Err(BadImage::UnknownFormat)
    ));
    let png = common::png(40, 30, 1);
    match decode(&common::truncated(&png, 0.5)) {
        Err(BadImage::Corrupt { format, .. }) => assert_eq!(format, ImageFormat::Png),
        other => panic!("truncated PNG: {other:?}"),
    }
    let jpeg = common::jpeg(64, 48, 1);
    assert!(decode(&jpeg).is_ok());
    assert!(matches!(
        decode(&common::truncated(&jpeg, 0.7)),
        Err(BadImage::TruncatedJpeg)
    ));
    // A format the image crate knows but convbase does not take.
    assert!(matches!(
        decode(b"P5\n2 2\n255\n\x00\x01\x02\x03"),
        Err(BadImage::Unsupported(ImageFormat::Pnm))
    ));
}

#[test]
fn load_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.jpg");
    std::fs::write(&p, b"").unwrap();
    let err = load_rgb8(&p).unwrap_err().to_string();
    assert!(
        err.contains("empty.jpg") && err.contains("empty file"),
        "{err}"
    );
    let err = load_rgb8(&dir.path().join("missing.png"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.png"), "{err}");
}

#[test]
fn load_for_network_is_hwc_rgb_0_to_255() {
    let v = load_for_network(&golden("rgb499x375.png"), 150, ResizeFilter::Nearest).unwrap();
    assert_eq!(v.len(), 150 * 150 * 3);
    let pil = golden_rgb("rgb499x375.nearest150.png");
    // HWC: index (y * 150 + x) * 3 + c.
    for (x, y) in [(0, 0), (149, 0), (17, 93), (149, 149)] {
        for c in 0..3 {
            assert_eq!(
                v[(y * 150 + x) * 3 + c],
                f32::from(pil.get_pixel(x as u32, y as u32).0[c])
            );
        }
    }
    assert!(v.iter().all(|&x| (0.0..=255.0).contains(&x)));
}
