//! One 3x3 conv layer (stride 1, zero padding 1) + bias + ReLU (+ 2x2 max-pool) on NHWC
//! activations kept in zero-bordered frames, with its weights transformed and packed once.

use std::cell::RefCell;
use std::fmt;

use rayon::prelude::*;

use super::amx;
use super::gemm::{PackedB, gemm};
use super::isa::Isa;
use super::winograd::{self, Domain, TILE, XI};

/// How a layer computes its convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Winograd F(4x4, 3x3): 4x fewer multiplications; for layers with many input channels.
    Winograd,
    /// im2col rows (9 x C taps per pixel) times the (9C x O) weights: for the first layer,
    /// whose 3 input channels would leave the Winograd GEMMs nearly empty.
    Im2col,
}

/// Shape of a batch of NHWC activations and of the zero-bordered frame that holds them.
///
/// Each image sits in a frame of `hp() x wp()` pixels: one zero row/column above and left, and
/// zeros below and right up to a multiple of 4 plus 1, so that every 6x6 Winograd input tile
/// and every 3x3 window reads inside the frame without bounds checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Geometry {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Geometry {
    pub fn hp(&self) -> usize {
        TILE * self.h.div_ceil(TILE) + 2
    }

    pub fn wp(&self) -> usize {
        TILE * self.w.div_ceil(TILE) + 2
    }

    pub fn frame_len(&self) -> usize {
        self.hp() * self.wp() * self.c
    }

    /// Offset of frame pixel (py, px) of image i: the activation (y, x) is at (y + 1, x + 1).
    #[inline(always)]
    pub fn frame_offset(&self, i: usize, py: usize, px: usize) -> usize {
        ((i * self.hp() + py) * self.wp() + px) * self.c
    }
}

/// A batch of NHWC activations in zero-bordered frames, the input and output of [`Conv3x3`].
/// Reused across batches: reshaping keeps the allocation and only clears the borders.
#[derive(Default, Clone)]
pub struct Activations {
    data: Vec<f32>,
    geo: Geometry,
}

impl fmt::Debug for Activations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Activations")
            .field("nhwc", &self.dims())
            .finish()
    }
}

impl Activations {
    /// Copies a plain NHWC batch (N, H, W, C) into a frame.
    ///
    /// # Panics
    /// When `x.len() != n * h * w * c`.
    pub fn from_nhwc(x: &[f32], [n, h, w, c]: [usize; 4]) -> Self {
        assert_eq!(x.len(), n * h * w * c, "NHWC data does not match its shape");
        let mut a = Self::default();
        a.reshape(Geometry { n, h, w, c });
        if !x.is_empty() {
            for (r, row) in x.chunks_exact(w * c).enumerate() {
                let at = a.geo.frame_offset(r / h, r % h + 1, 1);
                a.data[at..at + w * c].copy_from_slice(row);
            }
        }
        a
    }

    /// Copies an NCHW batch (N, C, H, W) into this frame, reusing its allocation.
    pub(crate) fn fill_from_nchw(&mut self, x: &[f32], [n, c, h, w]: [usize; 4]) {
        assert_eq!(x.len(), n * c * h * w, "NCHW data does not match its shape");
        self.reshape(Geometry { n, h, w, c });
        if x.is_empty() {
            return;
        }
        let g = self.geo;
        let frame = g.frame_len();
        self.data[..n * frame]
            .par_chunks_mut(frame)
            .zip(x.par_chunks(c * h * w))
            .for_each(|(dst, img)| {
                for y in 0..h {
                    let row = &mut dst[g.frame_offset(0, y + 1, 1)..][..w * c];
                    for (xx, px) in row.chunks_exact_mut(c).enumerate() {
                        for (ch, v) in px.iter_mut().enumerate() {
                            *v = img[(ch * h + y) * w + xx];
                        }
                    }
                }
            });
    }

    /// (N, H, W, C).
    pub fn dims(&self) -> [usize; 4] {
        let g = self.geo;
        [g.n, g.h, g.w, g.c]
    }

    /// The activations as a plain NHWC vector (N, H, W, C).
    pub fn to_nhwc(&self) -> Vec<f32> {
        let g = self.geo;
        let mut out = Vec::with_capacity(g.n * g.h * g.w * g.c);
        for i in 0..g.n {
            for y in 0..g.h {
                let at = g.frame_offset(i, y + 1, 1);
                out.extend_from_slice(&self.data[at..at + g.w * g.c]);
            }
        }
        out
    }

    /// Makes this the frame of `g`: keeps the allocation when large enough and zeroes every
    /// border pixel (the interior is left for the writer, which covers all of it).
    pub(crate) fn reshape(&mut self, g: Geometry) {
        self.geo = g;
        let frame = g.frame_len();
        if self.data.len() < g.n * frame {
            self.data.resize(g.n * frame, 0.0);
        }
        let (wp, c) = (g.wp(), g.c);
        self.data[..g.n * frame]
            .par_chunks_mut(frame)
            .for_each(|img| {
                for (py, row) in img.chunks_exact_mut(wp * c).enumerate() {
                    if py == 0 || py > g.h {
                        row.fill(0.0);
                    } else {
                        row[..c].fill(0.0);
                        row[(g.w + 1) * c..].fill(0.0);
                    }
                }
            });
    }
}

/// A 3x3 conv (stride 1, padding 1) + bias + ReLU whose weights are transformed and packed for
/// one instruction set when built, so that every batch only streams them.
#[derive(Clone)]
pub struct Conv3x3 {
    algorithm: Algorithm,
    isa: Isa,
    c: usize,
    o: usize,
    bias: Vec<f32>,
    /// Winograd: 36 packed (C x O) matrices G g G^T, one per tile position; im2col: one
    /// (9C x O) matrix, rows (kh, kw, c).
    packed: Packed,
}

/// A conv's weights packed for its GEMMs.
#[derive(Clone)]
enum Packed {
    /// For the f32 micro-kernels.
    F32(Vec<PackedB>),
    /// In bf16 parts for the AMX tiles (Winograd with [`Isa::Amx`]).
    Tiles(Vec<amx::PackedB>),
}

impl Packed {
    /// Columns of C including the zero padding.
    fn padded_cols(&self) -> usize {
        match self {
            Self::F32(p) => p[0].padded_cols(),
            Self::Tiles(p) => p[0].padded_cols(),
        }
    }
}

impl fmt::Debug for Conv3x3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conv3x3")
            .field("in", &self.c)
            .field("out", &self.o)
            .field("algorithm", &self.algorithm)
            .field("isa", &self.isa)
            .finish()
    }
}

thread_local! {
    /// Per-thread work space (Winograd-domain blocks, im2col rows): grows to the largest layer's
    /// need and is reused by every later layer and batch on this thread.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0.0);
        }
        f(&mut s[..len])
    })
}

/// A pointer written from several threads at disjoint places.
#[derive(Clone, Copy)]
pub(super) struct Shared(pub(super) *mut f32);
// SAFETY: every user writes disjoint elements (documented at each use).
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not the field).
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Tiles per block, about: each B panel the GEMM loads into L1 then feeds 8 (AVX-512) or 16
/// (AVX2) micro-kernel calls, each pass over a wide layer's weights (36 x C x O floats, from
/// L3 or memory) feeds 96 tiles' products, and for 64 channels the block's Winograd-domain data
/// (V and M, 2 x 36 x 96 x 64 floats) stays in L2. Measured: 48 to 192 differ by under 10%.
const BLOCK_TILES: usize = 96;

/// Splits `tiles` into blocks of about [`BLOCK_TILES`] so that every thread gets the same
/// number of blocks and the rows the GEMMs compute (tiles rounded up to a multiple of `mr`)
/// waste least: returns (tiles per block, GEMM rows per block).
fn plan_blocks(tiles: usize, mr: usize, threads: usize) -> (usize, usize) {
    let threads = threads.max(1);
    // Rounds of `threads` blocks: from the fewest that keep blocks within BLOCK_TILES to
    // twice as many (smaller blocks would reuse each weight panel less).
    let fewest = tiles.div_ceil(threads * BLOCK_TILES).max(1);
    let mut best = (usize::MAX, 0, 0);
    for rounds in fewest..=2 * fewest {
        let per_block = tiles.div_ceil(rounds * threads).max(1);
        let rows = per_block.next_multiple_of(mr);
        // Rows the busiest thread computes.
        let cost = tiles.div_ceil(per_block).div_ceil(threads) * rows;
        if cost < best.0 {
            best = (cost, per_block, rows);
        }
    }
    (best.1, best.2)
}

impl Conv3x3 {
    /// Prepares a conv from torchvision's OIHW weight `(o, c, 3, 3)` and bias `(o)`.
    ///
    /// # Panics
    /// When the slices do not match `o` and `c`, or `isa` does not run on this CPU.
    pub fn new(
        weight: &[f32],
        bias: &[f32],
        [o, c]: [usize; 2],
        algorithm: Algorithm,
        isa: Isa,
    ) -> Self {
        assert_eq!(weight.len(), o * c * 9, "weight must be (o, c, 3, 3)");
        assert_eq!(bias.len(), o, "bias must have o values");
        assert!(
            Isa::available().contains(&isa),
            "{isa} kernels do not run on this CPU"
        );
        let nr = isa.mr_nr().1;
        let w =
            |oo: usize, cc: usize, kh: usize, kw: usize| weight[((oo * c + cc) * 3 + kh) * 3 + kw];
        let packed = match algorithm {
            Algorithm::Winograd => {
                // U[xi] (c x o) = (G g G^T)[xi] for every (o, c) kernel.
                let mut u = vec![[0f32; XI]; o * c];
                u.par_chunks_mut(c.max(1))
                    .enumerate()
                    .for_each(|(oo, row)| {
                        for (cc, uk) in row.iter_mut().enumerate() {
                            let g: [f32; 9] = std::array::from_fn(|t| w(oo, cc, t / 3, t % 3));
                            *uk = winograd::transform_kernel(&g);
                        }
                    });
                let u = &u;
                let at = |xi: usize| move |cc: usize, oo: usize| u[oo * c + cc][xi];
                let positions = (0..XI).into_par_iter();
                if isa == Isa::Amx && c >= amx::MIN_DEPTH {
                    Packed::Tiles(
                        positions
                            .map(|xi| amx::PackedB::new(c, o, at(xi)))
                            .collect(),
                    )
                } else {
                    Packed::F32(positions.map(|xi| PackedB::new(c, o, nr, at(xi))).collect())
                }
            }
            Algorithm::Im2col => Packed::F32(vec![PackedB::new(9 * c, o, nr, |k, oo| {
                w(oo, k % c, k / (3 * c), (k / c) % 3)
            })]),
        };
        Self {
            algorithm,
            isa,
            c,
            o,
            bias: bias.to_vec(),
            packed,
        }
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.c
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.o
    }

    /// The algorithm this conv runs.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The instruction set its kernels use.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Runs the conv + bias + ReLU, then a 2x2 stride-2 max-pool (floor) when `pool`, on the
    /// global rayon pool; `y` is reshaped (its allocation reused) to the output.
    ///
    /// # Shapes
    /// - `x`: (N, H, W, C) with C = `in_channels()`
    /// - `y`: (N, H, W, O), or (N, H/2, W/2, O) when pooled
    ///
    /// # Panics
    /// When `x` has the wrong number of channels.
    pub fn forward(&self, x: &Activations, pool: bool, y: &mut Activations) {
        y.reshape(self.output_geometry(x.geo, pool));
        self.forward_into(x, pool, y, 0);
    }

    /// Shape of the output for input `g`.
    pub(crate) fn output_geometry(&self, g: Geometry, pool: bool) -> Geometry {
        let (h, w) = if pool { (g.h / 2, g.w / 2) } else { (g.h, g.w) };
        Geometry {
            h,
            w,
            c: self.o,
            ..g
        }
    }

    /// As [`Conv3x3::forward`], writing images `first..first + N` of `y`, which must already
    /// have the output's shape with at least that many images (its borders zeroed).
    pub(crate) fn forward_into(
        &self,
        x: &Activations,
        pool: bool,
        y: &mut Activations,
        first: usize,
    ) {
        let g = x.geo;
        assert_eq!(g.c, self.c, "conv takes {} channels, got {}", self.c, g.c);
        let yg = Geometry {
            n: g.n,
            ..self.output_geometry(g, pool)
        };
        assert!(
            y.geo == Geometry { n: y.geo.n, ..yg } && first + g.n <= y.geo.n,
            "output frame does not match"
        );
        if g.n * g.h * g.w == 0 || yg.h * yg.w == 0 {
            return;
        }
        // Images first.. of y form a frame of geometry yg.
        let out = Shared(y.data[first * yg.frame_len()..].as_mut_ptr());
        match self.algorithm {
            Algorithm::Winograd => self.winograd(&x.data, &g, pool, out, &yg),
            Algorithm::Im2col => self.im2col(&x.data, &g, pool, out, &yg),
        }
    }

    fn winograd(&self, x: &[f32], g: &Geometry, pool: bool, out: Shared, yg: &Geometry) {
        let mr = match self.packed {
            Packed::F32(_) => self.isa.mr_nr().0,
            Packed::Tiles(_) => amx::BLOCK,
        };
        let op = self.packed.padded_cols();
        let c = self.c;
        let tiles = g.n * g.h.div_ceil(TILE) * g.w.div_ceil(TILE);
        let (per_block, rows) = plan_blocks(tiles, mr, rayon::current_num_threads());
        let blocks = tiles.div_ceil(per_block);
        let (v_len, m_len) = (Domain::len(rows, c), Domain::len(rows, op));
        (0..blocks).into_par_iter().for_each(|b| {
            let t0 = b * per_block;
            let count = per_block.min(tiles - t0);
            with_scratch(v_len + m_len, |s| {
                let (v, m) = s.split_at_mut(v_len);
                let vd = Domain::new(v.as_mut_ptr(), rows, c);
                let md = Domain::new(m.as_mut_ptr(), rows, op);
                // SAFETY: x is a frame of geometry g (a zero-bordered Activations); v and m
                // hold 36 blocks of `rows` rows of c and op floats (Domain::len); rows is a
                // multiple of the GEMM's rows (MR, or amx::BLOCK on tiles); the output tiles
                // of this block are written by this task only; the ISA (AMX included) was
                // checked to run on this CPU when the conv was built.
                unsafe {
                    winograd::input_transform(self.isa, x.as_ptr(), g, t0, count, vd);
                    match &self.packed {
                        Packed::F32(packed) => {
                            for (xi, u) in packed.iter().enumerate() {
                                let then = packed.get(xi + 1);
                                gemm(self.isa, rows, vd.at(xi), vd.ld, u, md.at(xi), md.ld, then);
                            }
                        }
                        Packed::Tiles(packed) => {
                            for (xi, u) in packed.iter().enumerate() {
                                let then = packed.get(xi + 1);
                                amx::gemm(rows, vd.at(xi), vd.ld, u, then, md.at(xi), md.ld);
                            }
                        }
                    }
                    winograd::output_transform(
                        self.isa,
                        md,
                        g,
                        t0,
                        count,
                        &self.bias,
                        pool,
                        out.get(),
                        yg,
                    );
                }
            });
        });
    }

    fn im2col(&self, x: &[f32], g: &Geometry, pool: bool, out: Shared, yg: &Geometry) {
        let (mr, _) = self.isa.mr_nr();
        let Packed::F32(packed) = &self.packed else {
            unreachable!("im2col weights are packed for the f32 kernels")
        };
        let w = &packed[0];
        let op = w.padded_cols();
        let (c, k) = (self.c, 9 * self.c);
        // Tasks of two output rows (one pooled row), pixels padded to a multiple of MR.
        let pairs = g.h.div_ceil(2);
        let rows = (2 * g.w).next_multiple_of(mr);
        let (a_len, c_len) = (rows * k, rows * op);
        (0..g.n * pairs).into_par_iter().for_each(|task| {
            let (i, y0) = (task / pairs, 2 * (task % pairs));
            if pool && y0 / 2 >= yg.h {
                return; // the odd last row that floor pooling drops
            }
            let conv_rows = 2.min(g.h - y0);
            with_scratch(a_len + c_len, |s| {
                let (a, cm) = s.split_at_mut(a_len);
                for r in 0..conv_rows {
                    for xx in 0..g.w {
                        let dst = &mut a[(r * g.w + xx) * k..][..k];
                        for (kh, d) in dst.chunks_exact_mut(3 * c).enumerate() {
                            let src = &x[g.frame_offset(i, y0 + r + kh, xx)..][..3 * c];
                            for (dv, sv) in d.iter_mut().zip(src) {
                                *dv = *sv;
                            }
                        }
                    }
                }
                // SAFETY: a holds `rows` rows of k floats, cm `rows` rows of op floats, rows
                // is a multiple of MR; the ISA runs on this CPU (checked at build).
                unsafe { gemm(self.isa, rows, a.as_ptr(), k, w, cm.as_mut_ptr(), op, None) };
                let o = self.o;
                let pixel = |r: usize, xx: usize| &cm[(r * g.w + xx) * op..][..o];
                // Output rows: one pooled row, or the conv rows.
                let (first, out_rows) = if pool { (y0 / 2, 1) } else { (y0, conv_rows) };
                for r in 0..out_rows {
                    // SAFETY: output row `first + r` of image i is this task's alone; the
                    // frame interior row holds yg.w pixels of o floats.
                    let dst = unsafe {
                        let at = yg.frame_offset(i, first + r + 1, 1);
                        std::slice::from_raw_parts_mut(out.get().add(at), yg.w * o)
                    };
                    for (xx, d) in dst.chunks_exact_mut(o).enumerate() {
                        if pool {
                            let (p, q) = (pixel(0, 2 * xx), pixel(0, 2 * xx + 1));
                            let (u, v) = (pixel(1, 2 * xx), pixel(1, 2 * xx + 1));
                            for j in 0..o {
                                let m = p[j].max(q[j]).max(u[j]).max(v[j]);
                                d[j] = (m + self.bias[j]).max(0.0);
                            }
                        } else {
                            for ((dv, &v), &b) in d.iter_mut().zip(pixel(r, xx)).zip(&self.bias) {
                                *dv = (v + b).max(0.0);
                            }
                        }
                    }
                }
            });
        });
    }
}
