//! A differentiable 3x3 conv (stride 1, zero padding 1) for fine-tuning on the CPU, as a candle
//! `CustomOp2`: the forward pass and both gradients are each one GEMM over the whole batch
//! (im2col rows times packed weights, the micro-kernels of [`crate::fast`], blocks of rows
//! over the rayon pool). Candle's own `conv2d` runs a small gemm per tile between layout
//! copies, and its input gradient (`conv_transpose2d`) is a direct loop.
//!
//! - forward: Y (NHW x O) = im2col(x) (NHW x 9C) . W^T (9C x O);
//! - input gradient: the same conv of dY with the kernels flipped and transposed
//!   (W'[c][o][kh][kw] = W[o][c][2-kh][2-kw]);
//! - weight gradient: dW^T (9C x O) = im2col(x)^T (9C x NHW) . dY (NHW x O).
//!
//! Taps are ordered (kh, kw, c) so that each im2col row is three contiguous copies from an
//! NHWC copy of the input.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::fast::Isa;
use crate::fast::gemm::{PackedB, par_gemm};

/// `x` (N, C, H, W) convolved with `w` (O, C, 3, 3), stride 1, zero padding 1, no bias:
/// (N, O, H, W). Differentiable in both arguments; on the CPU with f32 it runs the GEMM op of
/// this module, elsewhere candle's `conv2d`.
pub fn conv3x3(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let (_, wc, kh, kw) = w.dims4()?;
    if (wc, kh, kw) != (c, 3, 3) {
        candle_core::bail!(
            "conv3x3: weight {:?} does not fit input {:?}",
            w.dims(),
            x.dims()
        );
    }
    if !x.device().is_cpu() || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return x.conv2d(w, 1, 1, 1, 1);
    }
    x.contiguous()?
        .apply_op2(&w.contiguous()?, Conv3x3 { isa: Isa::detect() })
}

/// The op: forward and backward as above.
#[derive(Debug, Clone, Copy)]
struct Conv3x3 {
    isa: Isa,
}

/// Gradient of the weights: (x, dY) -> dW (O, C, 3, 3).
#[derive(Debug, Clone, Copy)]
struct WeightGrad {
    isa: Isa,
}

/// The f32 data of a contiguous CPU tensor argument.
fn data<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("conv3x3: {what} must be f32");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("conv3x3: {what} must be contiguous"),
    }
}

impl CustomOp2 for Conv3x3 {
    fn name(&self) -> &'static str {
        "conv3x3-gemm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let (o, _, _, _) = l2.shape().dims4()?;
        let x = data(s1, l1, "input")?;
        let wt = data(s2, l2, "weight")?;
        // B[(kh, kw, ci)][oo] = W[oo][ci][kh][kw]
        let nr = self.isa.mr_nr().1;
        let b = PackedB::from_panels(9 * c, o, nr, |j, panel| {
            for (l, oo) in (j * nr..o.min((j + 1) * nr)).enumerate() {
                for (ci, taps) in wt[oo * c * 9..][..c * 9].chunks_exact(9).enumerate() {
                    for (t, &v) in taps.iter().enumerate() {
                        panel[(t * c + ci) * nr + l] = v;
                    }
                }
            }
        });
        let y = conv(self.isa, x, [n, c, h, w], &b, o);
        Ok((CpuStorage::F32(y), Shape::from((n, o, h, w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.apply_op2_no_bwd(w, &InputGrad { isa: self.isa })?;
        let dw = x.apply_op2_no_bwd(&grad, &WeightGrad { isa: self.isa })?;
        Ok((Some(dx), Some(dw)))
    }
}

/// Gradient of the input: (dY, W) -> dX, the conv of dY with flipped, transposed kernels.
#[derive(Debug, Clone, Copy)]
struct InputGrad {
    isa: Isa,
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "conv3x3-gemm-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, o, h, w) = l1.shape().dims4()?;
        let (_, c, _, _) = l2.shape().dims4()?;
        let dy = data(s1, l1, "gradient")?;
        let wt = data(s2, l2, "weight")?;
        // B[(kh, kw, oo)][ci] = W'[ci][oo][kh][kw] = W[oo][ci][2 - kh][2 - kw]
        let nr = self.isa.mr_nr().1;
        let b = PackedB::from_panels(9 * o, c, nr, |j, panel| {
            let cols = j * nr..c.min((j + 1) * nr);
            for oo in 0..o {
                for (l, ci) in cols.clone().enumerate() {
                    let taps = &wt[(oo * c + ci) * 9..][..9];
                    for (t, &v) in taps.iter().rev().enumerate() {
                        panel[(t * o + oo) * nr + l] = v;
                    }
                }
            }
        });
        let dx = conv(self.isa, dy, [n, o, h, w], &b, c);
        Ok((CpuStorage::F32(dx), Shape::from((n, c, h, w))))
    }
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "conv3x3-gemm-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let (_, o, _, _) = l2.shape().dims4()?;
        let x = data(s1, l1, "input")?;
        let dy = data(s2, l2, "gradient")?;
        let (mr, nr) = self.isa.mr_nr();
        let hw = h * w;
        // B[(img, pixel)][oo] = dY[img][oo][pixel]
        let b = PackedB::from_panels(n * hw, o, nr, |j, panel| {
            for (l, oo) in (j * nr..o.min((j + 1) * nr)).enumerate() {
                for img in 0..n {
                    let plane = &dy[(img * o + oo) * hw..][..hw];
                    for (p, &v) in plane.iter().enumerate() {
                        panel[(img * hw + p) * nr + l] = v;
                    }
                }
            }
        });
        // A[(kh, kw, ci)][(img, y, x)] = x[img][ci][y + kh - 1][x + kw - 1], zero outside.
        let (k, m) = (n * hw, (9 * c).next_multiple_of(mr));
        let mut a = vec![0f32; m * k];
        a.par_chunks_mut(k)
            .take(9 * c)
            .enumerate()
            .for_each(|(tap, row)| {
                let (ci, kh, kw) = (tap % c, tap / c / 3, tap / c % 3);
                for (img, dst) in row.chunks_exact_mut(hw).enumerate() {
                    let plane = &x[(img * c + ci) * hw..][..hw];
                    for yy in 0..h {
                        let sy = yy + kh;
                        if sy < 1 || sy > h {
                            continue; // stays zero
                        }
                        let src = &plane[(sy - 1) * w..][..w];
                        let d = &mut dst[yy * w..][..w];
                        // d[xx] = src[xx + kw - 1] where 0 <= xx + kw - 1 < w.
                        let lo = 1usize.saturating_sub(kw);
                        let hi = (w + 1 - kw).min(w);
                        for xx in lo..hi {
                            d[xx] = src[xx + kw - 1];
                        }
                    }
                }
            });
        let op = b.padded_cols();
        let mut dwt = vec![0f32; m * op];
        par_gemm(self.isa, m, &a, k, &b, &mut dwt, op);
        // dW[oo][ci][kh][kw] = dW^T[(kh, kw, ci)][oo]
        let mut dw = vec![0f32; o * c * 9];
        dw.par_chunks_mut(c * 9).enumerate().for_each(|(oo, row)| {
            for (ci, taps) in row.chunks_exact_mut(9).enumerate() {
                for (t, v) in taps.iter_mut().enumerate() {
                    *v = dwt[(t * c + ci) * op + oo];
                }
            }
        });
        Ok((CpuStorage::F32(dw), Shape::from((o, c, 3, 3))))
    }
}

/// (N, C, H, W) conv with `b` (9C x O, taps (kh, kw, c)) -> (N, O, H, W), via NHWC im2col rows.
fn conv(isa: Isa, x: &[f32], [n, c, h, w]: [usize; 4], b: &PackedB, o: usize) -> Vec<f32> {
    let (mr, _) = isa.mr_nr();
    let (hp, wp, hw) = (h + 2, w + 2, h * w);
    // Zero-padded NHWC copy of x.
    let mut xp = vec![0f32; n * hp * wp * c];
    xp.par_chunks_mut(hp * wp * c)
        .zip(x.par_chunks(c * hw))
        .for_each(|(dst, img)| {
            for ci in 0..c {
                for yy in 0..h {
                    for xx in 0..w {
                        dst[((yy + 1) * wp + xx + 1) * c + ci] = img[(ci * h + yy) * w + xx];
                    }
                }
            }
        });
    let k = 9 * c;
    let m = (n * hw).next_multiple_of(mr);
    let mut a = vec![0f32; m * k];
    a.par_chunks_mut(k)
        .take(n * hw)
        .enumerate()
        .for_each(|(r, row)| {
            let (img, yy, xx) = (r / hw, (r / w) % h, r % w);
            for (kh, d) in row.chunks_exact_mut(3 * c).enumerate() {
                let at = ((img * hp + yy + kh) * wp + xx) * c;
                d.copy_from_slice(&xp[at..at + 3 * c]);
            }
        });
    let op = b.padded_cols();
    let mut yt = vec![0f32; m * op];
    par_gemm(isa, m, &a, k, b, &mut yt, op);
    // NHWC (rows x op) -> NCHW
    let mut y = vec![0f32; n * o * hw];
    y.par_chunks_mut(hw).enumerate().for_each(|(plane, dst)| {
        let (img, oo) = (plane / o, plane % o);
        for (p, d) in dst.iter_mut().enumerate() {
            *d = yt[(img * hw + p) * op + oo];
        }
    });
    y
}
