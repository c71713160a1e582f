//! The fine-tuning conv kernels (`fast::train`: Winograd F(3x3, 3x3) forward, input gradient
//! and weight gradient, every instruction set this CPU runs) against a direct convolution and
//! its gradients in f64 written here, on odd sizes: 1x1, 3x3, 7x7, 9x9, 13x13 and non-square
//! maps, batch 1 and 20, channel counts that are not multiples of 8 or 16, more than 256
//! channels (the GEMMs' depth blocking) and more tiles than one GEMM task takes.

mod common;

use common::Rng;
use convbase_vgg16::fast::Isa;
use convbase_vgg16::fast::train::{ConvShape, backward, forward};

/// Values with their rounding scale: the sum of the magnitudes of the terms each one sums.
struct Ref {
    v: Vec<f64>,
    scale: Vec<f64>,
}

/// Input pixel (y + kh - 1, x + kw - 1) of image i, when inside the maps.
fn tap(s: &ConvShape, i: usize, y: usize, x: usize, kh: usize, kw: usize) -> Option<usize> {
    let (sy, sx) = ((y + kh).checked_sub(1)?, (x + kw).checked_sub(1)?);
    (sy < s.h && sx < s.w).then(|| (i * s.h + sy) * s.w + sx)
}

/// relu(conv(x, w) + b) in f64, NHWC.
fn reference_forward(s: &ConvShape, x: &[f32], w: &[f32], b: &[f32]) -> Ref {
    let (c, o) = (s.c, s.o);
    let mut v = vec![0f64; s.n * s.h * s.w * o];
    let mut scale = v.clone();
    for i in 0..s.n {
        for y in 0..s.h {
            for xx in 0..s.w {
                let p = (i * s.h + y) * s.w + xx;
                for oo in 0..o {
                    let (mut acc, mut mag) = (f64::from(b[oo]), f64::from(b[oo]).abs());
                    for (kh, kw) in (0..9).map(|t| (t / 3, t % 3)) {
                        let Some(q) = tap(s, i, y, xx, kh, kw) else {
                            continue;
                        };
                        for cc in 0..c {
                            let t = f64::from(w[((oo * c + cc) * 3 + kh) * 3 + kw])
                                * f64::from(x[q * c + cc]);
                            acc += t;
                            mag += t.abs();
                        }
                    }
                    (v[p * o + oo], scale[p * o + oo]) = (acc.max(0.0), mag);
                }
            }
        }
    }
    Ref { v, scale }
}

/// (dx, dw, db) of relu(conv(x, w) + b) for the output y and its gradient dy, in f64: the mask
/// is y > 0, as the kernels see it.
fn reference_backward(
    s: &ConvShape,
    x: &[f32],
    w: &[f32],
    y: &[f32],
    dy: &[f32],
) -> (Ref, Ref, Ref) {
    let (c, o) = (s.c, s.o);
    let dz: Vec<f64> = dy
        .iter()
        .zip(y)
        .map(|(&g, &v)| if v > 0.0 { f64::from(g) } else { 0.0 })
        .collect();
    let zeros = |len| Ref {
        v: vec![0.0; len],
        scale: vec![0.0; len],
    };
    let (mut dx, mut dw, mut db) = (zeros(x.len()), zeros(w.len()), zeros(o));
    for i in 0..s.n {
        for yy in 0..s.h {
            for xx in 0..s.w {
                let p = (i * s.h + yy) * s.w + xx;
                for oo in 0..o {
                    let g = dz[p * o + oo];
                    db.v[oo] += g;
                    db.scale[oo] += g.abs();
                    for (kh, kw) in (0..9).map(|t| (t / 3, t % 3)) {
                        let Some(q) = tap(s, i, yy, xx, kh, kw) else {
                            continue;
                        };
                        for cc in 0..c {
                            let k = ((oo * c + cc) * 3 + kh) * 3 + kw;
                            let t = g * f64::from(w[k]);
                            dx.v[q * c + cc] += t;
                            dx.scale[q * c + cc] += t.abs();
                            let t = g * f64::from(x[q * c + cc]);
                            dw.v[k] += t;
                            dw.scale[k] += t.abs();
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

/// Largest |got - want| / scale (zero where the value sums nothing).
fn worst(got: &[f32], want: &Ref) -> f64 {
    assert_eq!(got.len(), want.v.len());
    got.iter()
        .zip(&want.v)
        .zip(&want.scale)
        .map(|((&g, &w), &s)| {
            let d = (f64::from(g) - w).abs();
            if s == 0.0 { d } else { d / s }
        })
        .fold(0.0, f64::max)
}

/// The weight gradient's scale per kernel: Winograd computes a kernel's 9 taps together from
/// every tile's 5x5 window, so each tap's rounding follows the whole kernel's terms (a tap that
/// sums few terms, at a small map's edge, still gets the others' rounding).
fn per_kernel(mut r: Ref) -> Ref {
    for k in r.scale.chunks_exact_mut(9) {
        let sum: f64 = k.iter().sum();
        k.fill(sum);
    }
    r
}

/// Error bound relative to the sum of the magnitudes of the summed terms (per kernel for the
/// weight gradient): f32 products summed over 9C (or N H W) terms, and the Winograd
/// transforms' extra rounding (their constants reach 4 in A, 3 in B, 1/6 in G), which follows
/// the whole 5x5 window's terms, so that an edge pixel summing few terms of its own errs most.
/// Measured: below 1.4e-6 at every size here but the 2x5 map with one output channel, 3.4e-6
/// (input gradient).
const TOL: f64 = 1e-5;

fn check(s: ConvShape, seed: u64) {
    let mut rng = Rng(seed);
    let x = rng.vec(s.n * s.h * s.w * s.c, 3.0);
    let w = rng.vec(s.o * s.c * 9, 0.5);
    let b = rng.vec(s.o, 0.5);
    let dy = rng.vec(s.n * s.h * s.w * s.o, 1.0);
    let want_y = reference_forward(&s, &x, &w, &b);
    for isa in Isa::available() {
        let y = forward(isa, s, &x, &w, &b);
        let ey = worst(&y, &want_y);
        let g = backward(isa, s, &x, &w, &y, &dy, true);
        let (want_dx, want_dw, want_db) = reference_backward(&s, &x, &w, &y, &dy);
        let errs = [
            ("output", ey),
            ("input gradient", worst(g.dx.as_ref().unwrap(), &want_dx)),
            ("weight gradient", worst(&g.dw, &per_kernel(want_dw))),
            ("bias gradient", worst(&g.db, &want_db)),
        ];
        for (what, e) in errs {
            eprintln!("{s:?} {isa} {what}: {e:.2e}");
            assert!(e <= TOL, "{s:?} {isa} {what}: error {e:.3e} > {TOL:e}");
        }
        // Without the input gradient, the same weight and bias gradients.
        let g2 = backward(isa, s, &x, &w, &y, &dy, false);
        assert!(g2.dx.is_none());
        assert_eq!((g2.dw, g2.db), (g.dw, g.db), "{s:?} {isa}");
    }
}

fn shape(n: usize, h: usize, w: usize, c: usize, o: usize) -> ConvShape {
    ConvShape { n, h, w, c, o }
}

#[test]
fn one_pixel() {
    check(shape(1, 1, 1, 5, 7), 1);
}

#[test]
fn three_by_three() {
    check(shape(1, 3, 3, 13, 19), 2);
}

#[test]
fn seven_by_seven_batch_20() {
    check(shape(20, 7, 7, 21, 35), 3);
}

#[test]
fn nine_by_nine_batch_20() {
    // block5's maps at 150 px, with fewer channels.
    check(shape(20, 9, 9, 17, 45), 4);
}

#[test]
fn non_square_odd_sizes() {
    check(shape(2, 9, 14, 67, 70), 5);
    check(shape(3, 13, 6, 3, 66), 6);
    check(shape(1, 2, 5, 33, 1), 7);
}

#[test]
fn wide_channels_cross_the_depth_blocking() {
    // More than 256 channels in and out: the GEMMs accumulate over two passes of K, and the
    // weight gradient splits its 300 rows over tasks.
    check(shape(1, 5, 4, 300, 270), 8);
}

#[test]
fn many_tiles_split_over_tasks() {
    // 20 x 5 x 5 tiles: more than one GEMM task's rows.
    check(shape(20, 13, 13, 11, 9), 9);
}

#[test]
fn a_planted_wrong_tap_is_caught() {
    // Kernels flipped left-right (a convolution instead of deep learning's cross-correlation)
    // must fail every comparison by far.
    let s = shape(2, 7, 7, 9, 10);
    let mut rng = Rng(10);
    let x = rng.vec(2 * 7 * 7 * 9, 3.0);
    let w = rng.vec(10 * 9 * 9, 0.5);
    let b = rng.vec(10, 0.5);
    let dy = rng.vec(2 * 7 * 7 * 10, 1.0);
    let flipped: Vec<f32> = (0..w.len()).map(|i| w[i - i % 3 + 2 - i % 3]).collect();
    let y = forward(Isa::detect(), s, &x, &flipped, &b);
    assert!(worst(&y, &reference_forward(&s, &x, &w, &b)) > 100.0 * TOL);
    let g = backward(Isa::detect(), s, &x, &flipped, &y, &dy, true);
    let (dx, _, _) = reference_backward(&s, &x, &w, &y, &dy);
    assert!(worst(g.dx.as_ref().unwrap(), &dx) > 100.0 * TOL);
    // The weight gradient of the flipped kernels is the true one flipped.
    let g = backward(Isa::detect(), s, &x, &w, &y, &dy, false);
    let (_, dw, _) = reference_backward(&s, &x, &w, &y, &dy);
    let dw = per_kernel(dw);
    let dw_flipped: Vec<f32> = (0..g.dw.len())
        .map(|i| g.dw[i - i % 3 + 2 - i % 3])
        .collect();
    assert!(worst(&dw_flipped, &dw) > 100.0 * TOL);
}
