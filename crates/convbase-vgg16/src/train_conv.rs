//! Differentiable ops for fine-tuning on the CPU.
//!
//! [`conv3x3_bias_relu_nhwc`] and [`max_pool_2x2_nhwc`], on NHWC maps, are fine-tuning's
//! path: a candle `CustomOp3` over [`crate::fast::train`]'s Winograd kernels (output and every
//! gradient), and a pool whose gradient goes whole to the maximum.
//!
//! [`conv3x3`], on NCHW maps, is a 3x3 conv (stride 1, zero padding 1) as a candle
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

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Storage, Tensor,
};
use rayon::prelude::*;

use crate::fast::Isa;
use crate::fast::gemm::{PackedB, par_gemm};
use crate::fast::train::{self, ConvShape};

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

/// relu(conv3x3(x, w) + b) on NHWC maps (stride 1, zero padding 1), differentiable in all three
/// arguments: fine-tuning's conv layer. On the CPU with f32 it runs the Winograd F(3x3, 3x3)
/// kernels of [`crate::fast::train`] for the output and every gradient (the input's only when
/// `x` needs one: not for cached features), NHWC end to end; elsewhere
/// [`conv3x3_bias_relu_nhwc_candle`].
///
/// # Shapes
/// - `x`: (N, H, W, C); `w`: (O, C, 3, 3) OIHW; `b`: (O)
/// - returns (N, H, W, O)
pub fn conv3x3_bias_relu_nhwc(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let (_, _, _, c) = x.dims4()?;
    let (o, wc, kh, kw) = w.dims4()?;
    if (wc, kh, kw) != (c, 3, 3) || b.dims() != [o] {
        candle_core::bail!(
            "conv3x3_bias_relu_nhwc: weight {:?} and bias {:?} do not fit input {:?}",
            w.dims(),
            b.dims(),
            x.dims()
        );
    }
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if !(f32_cpu(x) && f32_cpu(w) && f32_cpu(b)) {
        return conv3x3_bias_relu_nhwc_candle(x, w, b);
    }
    x.contiguous()?.apply_op3(
        &w.contiguous()?,
        &b.contiguous()?,
        ConvBiasRelu { isa: Isa::detect() },
    )
}

/// [`conv3x3_bias_relu_nhwc`] from candle's own ops (NCHW `conv2d` between permutes): the path
/// off the CPU, and the reference the fast one is tested against.
pub fn conv3x3_bias_relu_nhwc_candle(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
) -> candle_core::Result<Tensor> {
    x.permute((0, 3, 1, 2))?
        .conv2d(w, 1, 1, 1, 1)?
        .broadcast_add(&b.reshape((1, (), 1, 1))?)?
        .relu()?
        .permute((0, 2, 3, 1))?
        .contiguous()
}

/// 2x2 max-pool with stride 2 (floor, Keras' `valid`) on NHWC maps, whose gradient goes
/// whole to each window's maximum (the first one in row-major order on an exact tie, as
/// PyTorch's). On the CPU with f32 a custom op; elsewhere [`max_pool_2x2_nhwc_candle`].
///
/// # Shapes
/// `x`: (N, H, W, C) -> (N, H/2, W/2, C)
pub fn max_pool_2x2_nhwc(x: &Tensor) -> candle_core::Result<Tensor> {
    x.dims4()?;
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return max_pool_2x2_nhwc_candle(x);
    }
    x.contiguous()?.apply_op1(MaxPool2x2)
}

/// [`max_pool_2x2_nhwc`] from candle's `max` reductions, whose backward passes the whole
/// gradient to the maximum (to every maximum on an exact tie). candle 0.11's own `max_pool2d`
/// backward would give a unique maximum a quarter of its gradient.
pub fn max_pool_2x2_nhwc_candle(x: &Tensor) -> candle_core::Result<Tensor> {
    let (n, h, w, c) = x.dims4()?;
    let (ho, wo) = (h / 2, w / 2);
    x.narrow(1, 0, 2 * ho)?
        .narrow(2, 0, 2 * wo)?
        .reshape((n, ho, 2, wo, 2, c))?
        .max(4)?
        .max(2)
}

/// Runs `f` on the data of a contiguous f32 CPU tensor (in a backward pass, where only tensors
/// are at hand).
fn with_data<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("{what} must be on the CPU");
    };
    Ok(f(data(cpu, layout, what)?))
}

/// The op of [`conv3x3_bias_relu_nhwc`].
#[derive(Debug, Clone, Copy)]
struct ConvBiasRelu {
    isa: Isa,
}

fn conv_shape(x: &Layout, w: &Layout) -> candle_core::Result<ConvShape> {
    let (n, h, wd, c) = x.shape().dims4()?;
    let (o, _, _, _) = w.shape().dims4()?;
    Ok(ConvShape { n, h, w: wd, c, o })
}

impl CustomOp3 for ConvBiasRelu {
    fn name(&self) -> &'static str {
        "conv3x3-bias-relu-nhwc-winograd"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let s = conv_shape(l1, l2)?;
        let (x, w, b) = (
            data(s1, l1, "input")?,
            data(s2, l2, "weight")?,
            data(s3, l3, "bias")?,
        );
        let y = train::forward(self.isa, s, x, w, b);
        Ok((CpuStorage::F32(y), Shape::from((s.n, s.h, s.w, s.o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let s = conv_shape(x.layout(), w.layout())?;
        // The input's gradient only when something upstream needs it.
        let want_dx = x.track_op();
        let g = with_data(x, "input", |xv| {
            with_data(w, "weight", |wv| {
                with_data(res, "output", |yv| {
                    with_data(&grad, "gradient", |gv| {
                        train::backward(self.isa, s, xv, wv, yv, gv, want_dx)
                    })
                })
            })
        })????;
        let dev = x.device();
        let dx =
            g.dx.map(|dx| Tensor::from_vec(dx, x.shape(), dev))
                .transpose()?;
        let dw = Tensor::from_vec(g.dw, w.shape(), dev)?;
        let db = Tensor::from_vec(g.db, b.shape(), dev)?;
        Ok((dx, Some(dw), Some(db)))
    }
}

/// The op of [`max_pool_2x2_nhwc`].
#[derive(Debug, Clone, Copy)]
struct MaxPool2x2;

/// Index in the (N, H, W, C) input of the maximum of window (i, py, px), channel ch.
#[inline]
fn window_max(
    x: &[f32],
    [h, w, c]: [usize; 3],
    i: usize,
    py: usize,
    px: usize,
    ch: usize,
) -> usize {
    let at = |dy: usize, dx: usize| ((i * h + 2 * py + dy) * w + 2 * px + dx) * c + ch;
    let mut best = at(0, 0);
    for q in [at(0, 1), at(1, 0), at(1, 1)] {
        if x[q] > x[best] {
            best = q;
        }
    }
    best
}

impl CustomOp1 for MaxPool2x2 {
    fn name(&self) -> &'static str {
        "max-pool-2x2-nhwc"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, h, w, c) = l.shape().dims4()?;
        let x = data(s, l, "input")?;
        let (ho, wo) = (h / 2, w / 2);
        let mut y = vec![0f32; n * ho * wo * c];
        if !y.is_empty() {
            y.par_chunks_mut(wo * c).enumerate().for_each(|(row, out)| {
                let (i, py) = (row / ho, row % ho);
                for (px, pixel) in out.chunks_exact_mut(c).enumerate() {
                    for (ch, v) in pixel.iter_mut().enumerate() {
                        *v = x[window_max(x, [h, w, c], i, py, px, ch)];
                    }
                }
            });
        }
        Ok((CpuStorage::F32(y), Shape::from((n, ho, wo, c))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (n, h, w, c) = x.dims4()?;
        let (ho, wo) = (h / 2, w / 2);
        let grad = grad.contiguous()?;
        let mut dx = vec![0f32; n * h * w * c];
        with_data(x, "input", |xv| {
            with_data(&grad, "gradient", |g| {
                // Each task owns a pair of input rows, the windows of one output row.
                let pair = 2 * w * c;
                dx.par_chunks_mut(h * w * c)
                    .enumerate()
                    .for_each(|(i, img)| {
                        for (py, rows) in img.chunks_exact_mut(pair).take(ho).enumerate() {
                            let base = (i * h + 2 * py) * w * c;
                            for px in 0..wo {
                                for ch in 0..c {
                                    let q = window_max(xv, [h, w, c], i, py, px, ch);
                                    rows[q - base] = g[((i * ho + py) * wo + px) * c + ch];
                                }
                            }
                        }
                    });
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}
