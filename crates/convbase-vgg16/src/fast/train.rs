//! The fine-tuning conv on the CPU: 3x3 conv (stride 1, zero padding 1) + bias + ReLU on plain
//! NHWC maps, forward and backward, with Winograd F(3x3, 3x3) for all three products (see
//! [`super::wino3`]): per layer and step 25 GEMMs each for the output, the input gradient and
//! the weight gradient, 3.2x fewer multiplications than a direct conv (on block5's 9x9 maps,
//! which 3x3 tiles cover exactly).
//!
//! Each pass is a few phases over the global rayon pool (no other threads):
//! - forward: the kernels' transform U (redone every step: the optimiser moves the weights)
//!   beside the input tiles' transform V; the 25 GEMMs V[xi] . U[xi], one task per (position,
//!   block of output channels); the output transform (+ bias, ReLU) over blocks of tiles;
//! - backward: dZ = dY masked by the ReLU (y > 0) and the bias gradient in one pass; the
//!   transforms of x's tiles (recomputed: cheaper than keeping them), of dZ's 3x3 tiles (for
//!   the weight gradient) and of dZ's 5x5 tiles (for the input gradient, which is skipped when
//!   the input needs none, as block5_conv1's cached features); then the weight gradient's
//!   GEMMs beside the transform of the flipped, transposed kernels U', the weight gradient's
//!   output transform beside the input gradient's GEMMs, and the latter's output transform.
//!
//! Splitting the GEMMs by output columns rather than by tiles reads each byte of U once per
//! step, while the tiles (9 MB per block5 layer) are read by every column block. The two large
//! write-once buffers (U and U', 26 MB per layer; the weight gradient's products, 27 MB) are
//! written with non-temporal stores. The buffers come from a pool and are reused across
//! layers and steps.

use std::sync::Mutex;

use rayon::prelude::*;

use super::conv::Shared;
use super::gemm::gemm_cols;
use super::isa::Isa;
use super::wino3::{self, Dom, Packed, Tiles, XI};

/// Shape of one training conv: input maps (N, H, W, C) NHWC, kernels (O, C, 3, 3) OIHW,
/// output (N, H, W, O).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub o: usize,
}

impl ConvShape {
    fn tiles(&self) -> Tiles {
        Tiles {
            n: self.n,
            h: self.h,
            w: self.w,
        }
    }

    fn pixels(&self) -> usize {
        self.n * self.h * self.w
    }

    fn check(&self, x: &[f32], w: &[f32]) {
        assert_eq!(x.len(), self.pixels() * self.c, "x must be (n, h, w, c)");
        assert_eq!(w.len(), self.o * self.c * 9, "w must be (o, c, 3, 3)");
    }
}

/// Gradients of one conv + bias + ReLU.
#[derive(Debug, Clone)]
pub struct ConvGrads {
    /// (N, H, W, C), when asked for.
    pub dx: Option<Vec<f32>>,
    /// (O, C, 3, 3).
    pub dw: Vec<f32>,
    /// (O).
    pub db: Vec<f32>,
}

/// Buffers not in use, for the next pass to take (a step of block5 needs about 100 MB).
static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// A pooled buffer of at least the asked length, contents left over from an earlier use:
/// every reader reads only what its pass wrote (padding rows and columns of the GEMMs included,
/// which only feed output rows and columns that are dropped).
struct Buf(Vec<f32>);

/// Floats a buffer holds past its length, to start at a cache line.
const ALIGN_SLACK: usize = 16;

impl Buf {
    fn take(len: usize) -> Self {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let fit = (0..pool.len())
            .filter(|&i| pool[i].len() >= len + ALIGN_SLACK)
            .min_by_key(|&i| pool[i].len());
        match fit {
            Some(i) => Buf(pool.swap_remove(i)),
            None => {
                drop(pool);
                Buf(vec![0.0; len + ALIGN_SLACK])
            }
        }
    }

    /// The start, aligned to a cache line (the non-temporal stores need vector alignment).
    fn ptr(&mut self) -> *mut f32 {
        let p = self.0.as_mut_ptr();
        p.wrapping_add(((64 - p as usize % 64) % 64) / 4)
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        POOL.lock().unwrap_or_else(|e| e.into_inner()).push(v);
    }
}

/// Tiles per transform task: enough to amortise a task, small enough to balance.
const TRANSFORM_TILES: usize = 8;

/// Runs `task(t0, count)` on every block of `TRANSFORM_TILES` of `tiles` tiles, in parallel.
fn for_tile_blocks(tiles: usize, task: impl Fn(usize, usize) + Send + Sync) {
    (0..tiles.div_ceil(TRANSFORM_TILES))
        .into_par_iter()
        .for_each(|b| {
            let t0 = b * TRANSFORM_TILES;
            task(t0, TRANSFORM_TILES.min(tiles - t0));
        });
}

/// Most GEMM rows (tiles) one task multiplies: its rows of V (tiles x k) stay in L2 while the
/// panels of U pass; block5's 20 x 9 tiles fit in one.
const GEMM_TILES: usize = 192;

/// Most GEMM rows (input channels) one weight-gradient task multiplies.
const GRAD_ROWS: usize = 264;

/// Input channels per task of the weight gradient's output transform.
const GRAD_TRANSFORM_ROWS: usize = 16;

/// Splits `len` items into about `parts` contiguous ranges of a multiple of `unit` items each.
fn split(len: usize, parts: usize, unit: usize) -> Vec<(usize, usize)> {
    let units = len.div_ceil(unit);
    let parts = parts.clamp(1, units.max(1));
    let per = units.div_ceil(parts) * unit;
    (0..len)
        .step_by(per.max(1))
        .map(|a| (a, (a + per).min(len)))
        .collect()
}

/// B^T d B of every tile of the NHWC maps `x` (`c` channels) into `v`, in parallel.
fn input_transform(isa: Isa, x: &[f32], g: Tiles, c: usize, v: Dom) {
    let t = g.count();
    for_tile_blocks(t, |t0, count| {
        let rows = v.rows_from(t0);
        // SAFETY: x holds the maps of g with c channels; v has t rows of c floats per
        // position, this task writes rows t0..t0 + count only; the ISA runs here.
        unsafe { wino3::input_transform(isa, x.as_ptr(), g, c, t0, count, rows) };
    });
}

/// The kernels' transform into `out` (k = c, n = o; or k = o, n = c when `flip`), in parallel
/// over panels.
fn kernels_transform(isa: Isa, w: &[f32], c: usize, o: usize, flip: bool, out: Packed) {
    (0..out.panels).into_par_iter().for_each(|j| {
        // SAFETY: w holds o * c * 9 floats; out holds every panel of (k x n) for the 25
        // positions, this task writes panel j only; the ISA runs here.
        unsafe { wino3::kernels_transform(isa, w.as_ptr(), c, o, flip, (j, j + 1), out) };
        wino3::store_fence();
    });
}

/// A Winograd-domain buffer from the pool and its layout.
struct Products {
    _buf: Buf,
    dom: Dom,
}

/// The 25 GEMMs M[xi] = V[xi] . U[xi] (tiles x k . k x n), one task per (position, block of
/// output channels, block of tiles), into a pooled buffer. Tasks this small (a fraction of a
/// millisecond on block5) keep both threads busy to the end even when one of them shares its
/// core with another process, while each task still reads its share of U once and V[xi] stays
/// in L2 across the panels.
fn winograd_gemms(isa: Isa, v: Dom, u: Packed, t: usize) -> Products {
    let (mr, nr) = isa.mr_nr();
    let rows_total = t.next_multiple_of(mr);
    let mut buf = Buf::take(Dom::len(rows_total, u.panels * nr));
    let m = Dom::new(buf.ptr(), rows_total, u.panels * nr);
    let col_blocks = split(u.panels, rayon::current_num_threads(), 1);
    let tile_blocks = split(t, t.div_ceil(GEMM_TILES), mr);
    let tasks: Vec<_> = (0..XI)
        .flat_map(|xi| {
            let cols = &col_blocks;
            tile_blocks
                .iter()
                .flat_map(move |&tb| cols.iter().map(move |&cb| (xi, tb, cb)))
        })
        .collect();
    tasks.into_par_iter().for_each(|(xi, (t0, t1), (j0, j1))| {
        let rows = (t1 - t0).next_multiple_of(mr);
        // SAFETY: v holds rows t0..t0 + rows (within the tile count rounded up to MR) of k
        // floats per position, u the panels j0..j1; m holds rows_total rows of every panel's
        // columns, this task writes rows t0..t0 + rows of panels j0..j1 of position xi only;
        // the ISA runs here.
        unsafe {
            let a = v.at(xi).wrapping_add(t0 * v.ld);
            let c = m.at(xi).wrapping_add(t0 * m.ld + j0 * nr);
            gemm_cols::<false>(isa, rows, a, v.ld, u.panels(xi), j0..j1, c, m.ld, false);
        }
    });
    Products { _buf: buf, dom: m }
}

/// The output transform of [`winograd_gemms`]' products into the NHWC maps `y` (`n`
/// channels), + bias and ReLU when given, over blocks of tiles.
///
/// `y` must hold the N x H x W x n floats of the maps; every one of them is written.
fn output_pass(isa: Isa, m: &Products, g: Tiles, n: usize, bias: Option<&[f32]>, y: Shared) {
    assert!(bias.is_none_or(|b| b.len() == n));
    let t = g.count();
    let m = m.dom;
    let bias = Shared(bias.map_or(std::ptr::null_mut(), |b| b.as_ptr().cast_mut()));
    for_tile_blocks(t, |t0, count| {
        // SAFETY: m holds rows t0..t0 + count, every channel; this task writes the pixels
        // of tiles t0..t0 + count of y only (bias, when not null, has n values); the ISA
        // runs here.
        unsafe {
            let rows = m.rows_from(t0);
            wino3::output_transform(isa, rows, g, t0, count, n, (0, n), bias.get(), y.get());
        }
    });
}

/// relu(conv3x3(x, w) + b): the forward pass of a fine-tuning conv.
///
/// # Shapes
/// - `x`: (N, H, W, C) NHWC; `w`: (O, C, 3, 3) OIHW; `b`: (O)
/// - returns (N, H, W, O) NHWC
///
/// # Panics
/// When the slices do not match `s`, or `isa` does not run on this CPU.
pub fn forward(isa: Isa, s: ConvShape, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    s.check(x, w);
    assert_eq!(b.len(), s.o, "b must be (o)");
    assert!(Isa::available().contains(&isa), "{isa} does not run here");
    if s.pixels() * s.o == 0 {
        return Vec::new();
    }
    let (mr, nr) = isa.mr_nr();
    let g = s.tiles();
    let rows = g.count().next_multiple_of(mr);
    let mut ub = Buf::take(Packed::len(s.c, s.o, nr));
    let mut vb = Buf::take(Dom::len(rows, s.c));
    let u = Packed::new(ub.ptr(), s.c, s.o, nr);
    let v = Dom::new(vb.ptr(), rows, s.c);
    rayon::join(
        || kernels_transform(isa, w, s.c, s.o, false, u),
        || input_transform(isa, x, g, s.c, v),
    );
    let m = winograd_gemms(isa, v, u, g.count());
    // SAFETY: the output transform writes every channel of every pixel (each pixel lies in
    // exactly one tile).
    unsafe {
        written(s.pixels() * s.o, |y| {
            output_pass(isa, &m, g, s.o, Some(b), y)
        })
    }
}

/// `len` floats written by `fill` through the pointer it is given: saves zeroing outputs that
/// the passes overwrite entirely anyway (a few percent of a step).
///
/// # Safety
/// `fill` writes all `len` floats at the pointer before it returns.
unsafe fn written(len: usize, fill: impl FnOnce(Shared)) -> Vec<f32> {
    let mut v = Vec::<f32>::with_capacity(len);
    fill(Shared(v.spare_capacity_mut().as_mut_ptr().cast()));
    // SAFETY: the caller's contract: all len elements are initialised.
    unsafe { v.set_len(len) };
    v
}

/// The gradients of [`forward`] given y = forward(x, w, b) and dY, the gradient of y; `dx`
/// only when `want_dx`.
///
/// # Shapes
/// - `x`: (N, H, W, C); `w`: (O, C, 3, 3); `y`, `dy`: (N, H, W, O)
///
/// # Panics
/// When the slices do not match `s`, or `isa` does not run on this CPU.
pub fn backward(
    isa: Isa,
    s: ConvShape,
    x: &[f32],
    w: &[f32],
    y: &[f32],
    dy: &[f32],
    want_dx: bool,
) -> ConvGrads {
    s.check(x, w);
    let out_len = s.pixels() * s.o;
    assert!(
        y.len() == out_len && dy.len() == out_len,
        "y and dy must be (n, h, w, o)"
    );
    assert!(Isa::available().contains(&isa), "{isa} does not run here");
    if out_len == 0 || s.c == 0 {
        return ConvGrads {
            dx: want_dx.then(|| vec![0f32; s.pixels() * s.c]),
            dw: vec![0f32; s.o * s.c * 9],
            db: vec![0f32; s.o],
        };
    }
    let (mr, nr) = isa.mr_nr();
    let g = s.tiles();
    let t = g.count();
    let mut dzb = Buf::take(out_len);
    let dz = &mut dzb.0[..out_len];
    let db = relu_grad(dy, y, s.o, s.h * s.w, dz);
    let dz = &*dz;

    let mut vxb = Buf::take(Dom::len(t, s.c));
    let mut gzb = Buf::take(Packed::len(t, s.o, nr));
    let vx = Dom::new(vxb.ptr(), t, s.c);
    let gz = Packed::new(gzb.ptr(), t, s.o, nr);
    // The input gradient's operands: dZ's tiles (rows rounded up to MR) and U'.
    let rows = t.next_multiple_of(mr);
    let mut vzb = want_dx.then(|| Buf::take(Dom::len(rows, s.o)));
    let mut upb = want_dx.then(|| Buf::take(Packed::len(s.o, s.c, nr)));
    let vz = vzb.as_mut().map(|b| Dom::new(b.ptr(), rows, s.o));
    let up = upb.as_mut().map(|b| Packed::new(b.ptr(), s.o, s.c, nr));
    // Memory-bound transforms run beside compute-bound GEMMs where the dependencies allow:
    // U' beside the weight gradient's GEMMs, the weight gradient's output transform beside
    // the input gradient's GEMMs.
    let dx_operands = vz.zip(up);
    rayon::join(
        || {
            rayon::join(
                || input_transform(isa, x, g, s.c, vx),
                || tiles_as_kernels(isa, dz, g, s.o, gz),
            )
        },
        || dx_operands.map(|(vz, _)| input_transform(isa, dz, g, s.o, vz)),
    );
    let (mw, _) = rayon::join(
        || weight_grad_gemms(isa, vx, gz, s.c),
        || dx_operands.map(|(_, up)| kernels_transform(isa, w, s.c, s.o, true, up)),
    );
    // SAFETY: the weight gradient's output transform writes every tap of every kernel.
    let (dw, mx) = rayon::join(
        || unsafe { written(s.o * s.c * 9, |dw| weight_grad_pass(isa, &mw, s.c, s.o, dw)) },
        || dx_operands.map(|(vz, up)| winograd_gemms(isa, vz, up, t)),
    );
    drop(mw);
    // SAFETY: the output transform writes every channel of every pixel.
    let dx = mx.map(|mx| unsafe {
        written(s.pixels() * s.c, |dx| {
            output_pass(isa, &mx, g, s.c, None, dx)
        })
    });
    ConvGrads { dx, dw, db }
}

/// dZ = dY where y > 0 (ReLU's gradient), and the bias gradient: dZ summed over pixels.
fn relu_grad(dy: &[f32], y: &[f32], o: usize, hw: usize, dz: &mut [f32]) -> Vec<f32> {
    let image = hw * o;
    let sums: Vec<Vec<f32>> = dz
        .par_chunks_mut(image)
        .zip(dy.par_chunks(image).zip(y.par_chunks(image)))
        .map(|(dz, (dy, y))| {
            let mut sum = vec![0f32; o];
            for ((dz, dy), y) in dz
                .chunks_exact_mut(o)
                .zip(dy.chunks_exact(o))
                .zip(y.chunks_exact(o))
            {
                for (((d, &g), &v), s) in dz.iter_mut().zip(dy).zip(y).zip(&mut sum) {
                    *d = if v > 0.0 { g } else { 0.0 };
                    *s += *d;
                }
            }
            sum
        })
        .collect();
    (0..o)
        .map(|j| sums.iter().map(|s| f64::from(s[j])).sum::<f64>() as f32)
        .collect()
}

/// G dZ G^T of every 3x3 tile of the NHWC maps `dz` into `out` (k = tiles, n = o).
fn tiles_as_kernels(isa: Isa, dz: &[f32], g: Tiles, o: usize, out: Packed) {
    let t = g.count();
    for_tile_blocks(t, |t0, count| {
        // SAFETY: dz holds the maps of g with o channels; out has t rows per panel, this
        // task writes rows t0..t0 + count only; the ISA runs here.
        unsafe { wino3::tiles_as_kernels(isa, dz.as_ptr(), g, o, t0, count, out) };
    });
}

/// The weight gradient's 25 GEMMs, V_x^T . G dZ G^T per position ((C x tiles) . (tiles x O),
/// V_x read column-major in place), one task per (position, block of input channels), into a
/// pooled buffer (rows: input channels).
fn weight_grad_gemms(isa: Isa, vx: Dom, gz: Packed, c: usize) -> Products {
    let (mr, nr) = isa.mr_nr();
    let rows_total = c.next_multiple_of(mr);
    let cols = gz.panels * nr;
    let mut buf = Buf::take(Dom::len(rows_total, cols));
    let m = Dom::new(buf.ptr(), rows_total, cols);
    let parts = rayon::current_num_threads().max(rows_total.div_ceil(GRAD_ROWS));
    let blocks = split(rows_total, parts, mr);
    let tasks: Vec<_> = (0..XI)
        .flat_map(|xi| blocks.iter().map(move |&b| (xi, b)))
        .collect();
    tasks.into_par_iter().for_each(|(xi, (r0, r1))| {
        // SAFETY: vx holds gz.k rows (tiles) of c floats per position plus a cache line of
        // padding, so columns r0..r1 (< c + MR) are inside each row; gz holds every panel;
        // this task writes rows r0..r1 of position xi of m only; the ISA runs here.
        unsafe {
            let a = vx.at(xi).wrapping_add(r0);
            let out = m.at(xi).wrapping_add(r0 * m.ld);
            let b = gz.panels(xi);
            // Streaming stores: 27 MB per block5 layer, read once by the output pass (the
            // GEMMs took 20 ms instead of 24 on one thread).
            gemm_cols::<true>(isa, r1 - r0, a, vx.ld, b, 0..gz.panels, out, m.ld, true);
        }
        wino3::store_fence();
    });
    Products { _buf: buf, dom: m }
}

/// dW = A^T m A of [`weight_grad_gemms`]' products into the OIHW kernels, over blocks of
/// input channels.
///
/// `dw` must hold the o x c x 9 floats of the kernels; every one of them is written.
fn weight_grad_pass(isa: Isa, m: &Products, c: usize, o: usize, dw: Shared) {
    let m = m.dom;
    (0..c.div_ceil(GRAD_TRANSFORM_ROWS))
        .into_par_iter()
        .for_each(|b| {
            let c0 = b * GRAD_TRANSFORM_ROWS;
            let count = GRAD_TRANSFORM_ROWS.min(c - c0);
            // SAFETY: m holds rows c0..c0 + count with o columns per position; this task
            // writes the kernels of input channels c0..c0 + count of dw only; the ISA runs
            // here.
            unsafe {
                wino3::weight_grad_transform(isa, m.rows_from(c0), c0, count, c, o, dw.get());
            }
        });
}
