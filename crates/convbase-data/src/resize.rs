//! Square resizing that reproduces Pillow's `Image.resize`, which Keras' `load_img` calls.
//!
//! - `nearest` follows Pillow's `ImagingScaleAffine`: output pixel `x` takes input pixel
//!   `trunc(0.5 * s + x * s)` with `s = in / out` accumulated in double precision by
//!   repeated addition, exactly as Pillow does (so ties fall where Pillow's fall).
//! - `bilinear`, `bicubic` and `lanczos3` follow Pillow's `ImagingResample`: a separable
//!   convolution whose kernel is widened by the scale factor on downscale (antialiasing),
//!   weights normalised and rounded to 22-bit fixed point, horizontal pass first, each
//!   pass rounded and clamped to 8 bits.

use std::fmt;
use std::str::FromStr;

use image::RgbImage;

/// Interpolation used to resize images to the network's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, clap::ValueEnum)]
pub enum ResizeFilter {
    /// Keras' default for `flow_from_directory` / `load_img` (PIL `NEAREST`).
    #[default]
    Nearest,
    /// PIL `BILINEAR` (triangle filter, antialiased on downscale).
    Bilinear,
    /// PIL `BICUBIC` (a = -0.5).
    Bicubic,
    /// PIL `LANCZOS` (3 lobes).
    Lanczos3,
}

impl ResizeFilter {
    pub const ALL: [ResizeFilter; 4] = [
        ResizeFilter::Nearest,
        ResizeFilter::Bilinear,
        ResizeFilter::Bicubic,
        ResizeFilter::Lanczos3,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResizeFilter::Nearest => "nearest",
            ResizeFilter::Bilinear => "bilinear",
            ResizeFilter::Bicubic => "bicubic",
            ResizeFilter::Lanczos3 => "lanczos3",
        }
    }
}

impl fmt::Display for ResizeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResizeFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResizeFilter::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown resize filter `{s}` (expected nearest, bilinear, bicubic or lanczos3)"
                )
            })
    }
}

/// Resizes to `size` x `size` pixels (aspect ratio not kept, as Keras does).
/// An image already of that size is returned unchanged, as Pillow and Keras do.
pub fn resize(img: &RgbImage, size: u32, filter: ResizeFilter) -> RgbImage {
    resize_to(img, size, size, filter)
}

/// Resizes to `width` x `height` pixels.
pub fn resize_to(img: &RgbImage, width: u32, height: u32, filter: ResizeFilter) -> RgbImage {
    assert!(width > 0 && height > 0, "resize to an empty image");
    if img.dimensions() == (width, height) {
        return img.clone();
    }
    match filter {
        ResizeFilter::Nearest => nearest(img, width, height),
        ResizeFilter::Bilinear => resample(img, width, height, &BILINEAR),
        ResizeFilter::Bicubic => resample(img, width, height, &BICUBIC),
        ResizeFilter::Lanczos3 => resample(img, width, height, &LANCZOS),
    }
}

/// Pillow's nearest-neighbour source index for each output index along one axis.
fn nearest_table(input: u32, output: u32) -> Vec<u32> {
    let scale = f64::from(input) / f64::from(output);
    let mut pos = scale * 0.5;
    (0..output)
        .map(|_| {
            // Pillow's COORD(): truncation; positions are never negative here.
            let i = (pos as u32).min(input - 1);
            pos += scale;
            i
        })
        .collect()
}

fn nearest(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let xs = nearest_table(img.width(), width);
    let ys = nearest_table(img.height(), height);
    RgbImage::from_fn(width, height, |x, y| {
        *img.get_pixel(xs[x as usize], ys[y as usize])
    })
}

struct Filter {
    support: f64,
    weight: fn(f64) -> f64,
}

const BILINEAR: Filter = Filter {
    support: 1.0,
    weight: |x| {
        let x = x.abs();
        if x < 1.0 { 1.0 - x } else { 0.0 }
    },
};

const BICUBIC: Filter = Filter {
    support: 2.0,
    weight: |x| {
        const A: f64 = -0.5;
        let x = x.abs();
        if x < 1.0 {
            ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * A
        } else {
            0.0
        }
    },
};

const LANCZOS: Filter = Filter {
    support: 3.0,
    weight: |x| {
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                1.0
            } else {
                let x = x * std::f64::consts::PI;
                x.sin() / x
            }
        }
        if (-3.0..3.0).contains(&x) {
            sinc(x) * sinc(x / 3.0)
        } else {
            0.0
        }
    },
};

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point kernel of one axis: for each output index, the first input index and the
/// weights of the inputs it reads.
struct Kernel {
    starts: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for a whole-image box.
fn kernel(input: u32, output: u32, filter: &Filter) -> Kernel {
    // Pillow keeps the box in single precision; exact for any realistic size.
    let scale = f64::from(input as f32) / f64::from(output);
    let filterscale = scale.max(1.0);
    let support = filter.support * filterscale;
    let mut starts = Vec::with_capacity(output as usize);
    let mut weights = Vec::with_capacity(output as usize);
    for xx in 0..output {
        let center = (f64::from(xx) + 0.5) * scale;
        // C's (int) cast truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(i64::from(input));
        let ss = 1.0 / filterscale;
        let raw: Vec<f64> = (xmin..xmax)
            .map(|x| (filter.weight)((x as f64 - center + 0.5) * ss))
            .collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let scaled = w * f64::from(1u32 << PRECISION_BITS);
                if w < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                }
            })
            .collect();
        starts.push(xmin as usize);
        weights.push(fixed);
    }
    Kernel { starts, weights }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Applies `kernel` along one axis of an interleaved RGB buffer of `w` x `h`.
fn pass(src: &[u8], w: usize, h: usize, kernel: &Kernel, horizontal: bool) -> Vec<u8> {
    let out_len = kernel.starts.len();
    let (ow, oh) = if horizontal {
        (out_len, h)
    } else {
        (w, out_len)
    };
    let mut out = vec![0u8; ow * oh * 3];
    for oy in 0..oh {
        for ox in 0..ow {
            let o = if horizontal { ox } else { oy };
            let (start, ws) = (kernel.starts[o], &kernel.weights[o]);
            let mut acc = [1i64 << (PRECISION_BITS - 1); 3];
            for (i, &wt) in ws.iter().enumerate() {
                let (sx, sy) = if horizontal {
                    (start + i, oy)
                } else {
                    (ox, start + i)
                };
                let p = &src[(sy * w + sx) * 3..][..3];
                for c in 0..3 {
                    acc[c] += i64::from(p[c]) * i64::from(wt);
                }
            }
            let dst = &mut out[(oy * ow + ox) * 3..][..3];
            for c in 0..3 {
                dst[c] = clip8(acc[c]);
            }
        }
    }
    out
}

fn resample(img: &RgbImage, width: u32, height: u32, filter: &Filter) -> RgbImage {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let mut buf = img.as_raw().clone();
    let mut w = iw;
    if width as usize != iw {
        let k = kernel(img.width(), width, filter);
        buf = pass(&buf, w, ih, &k, true);
        w = width as usize;
    }
    if height as usize != ih {
        let k = kernel(img.height(), height, filter);
        buf = pass(&buf, w, ih, &k, false);
    }
    RgbImage::from_raw(width, height, buf).expect("buffer sized for the output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_names_round_trip() {
        for f in ResizeFilter::ALL {
            assert_eq!(f.to_string().parse::<ResizeFilter>(), Ok(f));
        }
        assert!("cubic".parse::<ResizeFilter>().is_err());
        assert_eq!(ResizeFilter::default(), ResizeFilter::Nearest);
    }

    #[test]
    fn nearest_table_stays_in_bounds_and_monotone() {
        // Exactness against Pillow is checked by the golden tests; here the edges.
        for (i, o) in [(28, 150), (500, 150), (375, 150), (1, 7), (7, 1)] {
            let t = nearest_table(i, o);
            assert_eq!(t.len(), o as usize);
            assert!(t.iter().all(|&v| v < i));
            assert!(t.windows(2).all(|w| w[0] <= w[1]));
        }
    }
}
