//! The fast conv kernels (Winograd F(4x4, 3x3) and im2col, every instruction set this CPU runs)
//! against a plain direct convolution in f64 written here, on odd sizes: 1x1, 3x3, 7x7, 150x150
//! and non-square inputs, batch 1 and 20, channel counts that are not multiples of 8, with and
//! without the fused 2x2 max-pool.

mod common;

use common::Rng;
use convbase_vgg16::fast::{Activations, Algorithm, Conv3x3, Isa};

/// Direct 3x3 conv, zero padding 1, + bias, ReLU, optional 2x2/2 floor max-pool, in f64.
/// Returns the NHWC output and, per output value, sum |w x| + |b| over its window(s): the
/// scale that rounding errors of any summation order are proportional to.
fn reference(
    x: &[f32],
    [n, h, w, c]: [usize; 4],
    weight: &[f32],
    bias: &[f32],
    pool: bool,
) -> (Vec<f64>, Vec<f64>, [usize; 4]) {
    let o = bias.len();
    let mut y = vec![0f64; n * h * w * o];
    let mut s = vec![0f64; n * h * w * o];
    for i in 0..n {
        for yy in 0..h {
            for xx in 0..w {
                for oo in 0..o {
                    let (mut acc, mut mag) = (f64::from(bias[oo]), f64::from(bias[oo]).abs());
                    for kh in 0..3 {
                        for kw in 0..3 {
                            let (sy, sx) = (yy + kh, xx + kw);
                            if sy < 1 || sx < 1 || sy > h || sx > w {
                                continue;
                            }
                            let px = &x[((i * h + sy - 1) * w + sx - 1) * c..][..c];
                            for (cc, &v) in px.iter().enumerate() {
                                let p = f64::from(weight[((oo * c + cc) * 3 + kh) * 3 + kw])
                                    * f64::from(v);
                                acc += p;
                                mag += p.abs();
                            }
                        }
                    }
                    let at = ((i * h + yy) * w + xx) * o + oo;
                    (y[at], s[at]) = (acc.max(0.0), mag);
                }
            }
        }
    }
    if !pool {
        return (y, s, [n, h, w, o]);
    }
    let (h2, w2) = (h / 2, w / 2);
    let mut p = vec![0f64; n * h2 * w2 * o];
    let mut ps = vec![0f64; n * h2 * w2 * o];
    for i in 0..n {
        for py in 0..h2 {
            for px in 0..w2 {
                for oo in 0..o {
                    let at =
                        |dy: usize, dx: usize| ((i * h + 2 * py + dy) * w + 2 * px + dx) * o + oo;
                    let q = ((i * h2 + py) * w2 + px) * o + oo;
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        p[q] = p[q].max(y[at(dy, dx)]);
                        ps[q] = ps[q].max(s[at(dy, dx)]);
                    }
                }
            }
        }
    }
    (p, ps, [n, h2, w2, o])
}

/// Largest |got - want| / (sum |w x| + |b|) over the output.
fn worst(got: &[f32], want: &[f64], scale: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .zip(scale)
        .map(|((&g, &w), &s)| (f64::from(g) - w).abs() / s.max(1e-30))
        .fold(0.0, f64::max)
}

/// Error bounds relative to sum |w x| + |b|: f32 products summed over 9 C terms (im2col), and
/// the Winograd transforms' extra rounding (their constants reach 8 x 5 in magnitude). Measured:
/// im2col below 2e-7, Winograd below 2e-6.
const TOL_IM2COL: f64 = 2e-6;
const TOL_WINOGRAD: f64 = 2e-5;

/// Runs one shape through every algorithm and instruction set, with and without pooling.
fn check(dims: [usize; 4], o: usize, seed: u64) {
    let [n, h, w, c] = dims;
    let mut rng = Rng(seed);
    let x = rng.vec(n * h * w * c, 3.0);
    let weight = rng.vec(o * c * 9, 0.5);
    let bias = rng.vec(o, 0.5);
    let input = Activations::from_nhwc(&x, dims);
    assert_eq!(input.to_nhwc(), x, "frame round trip");
    for pool in [false, true] {
        let (want, scale, want_dims) = reference(&x, dims, &weight, &bias, pool);
        for algorithm in [Algorithm::Winograd, Algorithm::Im2col] {
            for isa in Isa::available() {
                let conv = Conv3x3::new(&weight, &bias, [o, c], algorithm, isa);
                let mut y = Activations::default();
                conv.forward(&input, pool, &mut y);
                assert_eq!(y.dims(), want_dims, "{algorithm:?} {isa} pool={pool}");
                let err = worst(&y.to_nhwc(), &want, &scale);
                let tol = match algorithm {
                    Algorithm::Winograd => TOL_WINOGRAD,
                    Algorithm::Im2col => TOL_IM2COL,
                };
                eprintln!("{dims:?} -> {o} {algorithm:?} {isa} pool={pool}: {err:.2e}");
                assert!(
                    err <= tol,
                    "{dims:?} -> {o} {algorithm:?} {isa} pool={pool}: error {err:.3e} > {tol:e}"
                );
            }
        }
    }
}

#[test]
fn one_pixel() {
    check([1, 1, 1, 5], 7, 1);
}

#[test]
fn three_by_three() {
    check([1, 3, 3, 13], 19, 2);
}

#[test]
fn seven_by_seven_batch_20() {
    check([20, 7, 7, 21], 35, 3);
}

#[test]
fn non_square_odd_sizes() {
    check([2, 9, 14, 67], 70, 4);
    check([3, 13, 6, 3], 66, 5);
}

#[test]
fn one_fifty_pixels() {
    check([1, 150, 150, 11], 13, 6);
}

#[test]
fn wide_channels_cross_the_depth_blocking() {
    // More than 256 input channels: the GEMM accumulates over two passes of K.
    check([1, 5, 6, 300], 33, 7);
}

#[test]
fn channels_for_the_amx_tiles() {
    // From 128 input channels the Winograd GEMMs run on AMX tiles where the CPU has them: depth
    // and width padded to 32, rows to 32 (tiles), for a batch of 1 and of 20.
    check([1, 1, 1, 130], 7, 10);
    check([20, 7, 7, 133], 35, 11);
    check([2, 9, 14, 259], 70, 12);
}

#[test]
fn frames_reused_across_shapes_keep_zero_borders() {
    // A frame that held a larger, non-zero batch must give the same result as a fresh one.
    let mut rng = Rng(8);
    let (c, o) = (17, 24);
    let weight = rng.vec(o * c * 9, 0.5);
    let bias = rng.vec(o, 0.5);
    let big = Activations::from_nhwc(&rng.vec(2 * 11 * 13 * c, 3.0), [2, 11, 13, c]);
    let dims = [1, 6, 5, c];
    let x = rng.vec(6 * 5 * c, 3.0);
    let small = Activations::from_nhwc(&x, dims);
    for isa in Isa::available() {
        let conv = Conv3x3::new(&weight, &bias, [o, c], Algorithm::Winograd, isa);
        let wide = Conv3x3::new(
            &rng.vec(c * c * 9, 1.0),
            &vec![1.0; c],
            [c, c],
            Algorithm::Winograd,
            isa,
        );
        // Fill `reused` with large positive values over a larger frame, then reuse it.
        let mut reused = Activations::default();
        wide.forward(&big, false, &mut reused);
        assert!(reused.to_nhwc().iter().any(|&v| v > 0.0));
        wide.forward(&small, false, &mut reused);
        let mut fresh = Activations::default();
        wide.forward(&small, false, &mut fresh);
        assert_eq!(reused.to_nhwc(), fresh.to_nhwc(), "{isa}");
        // And as the input of the next conv (its border is read by the 3x3 windows).
        let (mut a, mut b) = (Activations::default(), Activations::default());
        conv.forward(&reused, true, &mut a);
        conv.forward(&fresh, true, &mut b);
        assert_eq!(a.to_nhwc(), b.to_nhwc(), "{isa}");
    }
    let (want, scale, _) = reference(&x, dims, &weight, &bias, false);
    let conv = Conv3x3::new(&weight, &bias, [o, c], Algorithm::Winograd, Isa::detect());
    let mut y = Activations::from_nhwc(&rng.vec(3 * 9 * 9 * o, 5.0), [3, 9, 9, o]);
    conv.forward(&small, false, &mut y);
    assert!(worst(&y.to_nhwc(), &want, &scale) <= TOL_WINOGRAD);
}

#[test]
fn a_planted_wrong_tap_is_caught() {
    // The comparison must see a kernel flipped left-right (the mistake of a convolution vs
    // the cross-correlation that deep-learning "conv" means).
    let dims = [1, 7, 7, 9];
    let (c, o) = (9, 10);
    let mut rng = Rng(9);
    let x = rng.vec(7 * 7 * c, 3.0);
    let weight = rng.vec(o * c * 9, 0.5);
    let bias = rng.vec(o, 0.5);
    let flipped: Vec<f32> = (0..weight.len())
        .map(|i| weight[i - i % 3 + 2 - i % 3])
        .collect();
    let (want, scale, _) = reference(&x, dims, &weight, &bias, false);
    let conv = Conv3x3::new(&flipped, &bias, [o, c], Algorithm::Winograd, Isa::detect());
    let mut y = Activations::default();
    conv.forward(&Activations::from_nhwc(&x, dims), false, &mut y);
    let err = worst(&y.to_nhwc(), &want, &scale);
    assert!(err > 100.0 * TOL_WINOGRAD, "flipped kernels gave {err:.2e}");
}
