//! Winograd F(3x3, 3x3) (interpolation points 0, 1, -1, 2, inf) for the training convs: a 5x5
//! input tile d and a 3x3 kernel g give the 3x3 output tile Y = A^T [(G g G^T) . (B^T d B)] A
//! with 25 multiplications per channel pair instead of 81.
//!
//! Why 3x3 tiles rather than the inference path's 4x4: fine-tuning runs block5 on 9x9 maps
//! (block4_pool of a 150 px image), which 3x3 tiles cover exactly, while 4x4 tiles would
//! compute 12x12 (1.8x the work, 36 products per tile); F(3x3) also rounds less (measured on
//! block5 with the real weights: 4.6e-7 of the largest block5_pool value, against 1.0e-7 for
//! a direct f32 conv).
//!
//! The same three matrices serve all three products of training, each a sum over tiles of 25
//! element-wise products, i.e. 25 GEMMs in the "Winograd domain" (position xi = 5 * row +
//! column of the 5x5 tile):
//! - forward: V = B^T d B of each input tile, U = G g G^T of each kernel, Y = A^T (V U) A;
//! - input gradient: the same with d the tiles of dZ (the gradient after the ReLU mask) and
//!   g the kernels flipped and transposed;
//! - weight gradient: dW (3x3) = sum over tiles of the correlation of the input tile (5x5) with
//!   the tile of dZ (3x3), which is F(3x3, 3x3) again with dZ's tile in the kernel's place:
//!   dW = A^T (sum_t V_t (G dZ_t G^T)) A.
//!
//! The transforms work on L channels (or kernels) at once, in plain arrays that LLVM
//! vectorises, compiled once per instruction set (see `isa_fns!`).

use super::gemm::{Panels, prefetch_l2};
use super::isa::Isa;
use super::winograd::{Positions, V, add, add_k, sub, zip};

/// Positions in the transformed 5x5 tile.
pub(crate) const XI: usize = 25;
/// Output pixels per tile side.
pub(crate) const TILE: usize = 3;

/// The tiles of a batch of (N, H, W) maps: ceil(H/3) x ceil(W/3) per image, image-major.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tiles {
    pub n: usize,
    pub h: usize,
    pub w: usize,
}

impl Tiles {
    pub fn count(&self) -> usize {
        self.n * self.h.div_ceil(TILE) * self.w.div_ceil(TILE)
    }

    /// (image, tile row, tile column) of tile `t`.
    #[inline(always)]
    fn pos(&self, t: usize) -> (usize, usize, usize) {
        let (th, tw) = (self.h.div_ceil(TILE), self.w.div_ceil(TILE));
        (t / (th * tw), (t / tw) % th, t % tw)
    }
}

/// Winograd-domain rows of a block of tiles: the inference path's layout, with 25 positions.
pub(crate) type Dom = Positions<XI>;

/// 25 matrices (k x n) packed as GEMM B operands: for each position, ceil(n / nr) column panels
/// of k rows of `nr` floats, columns past n zero (the layout of `gemm::PackedB`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Packed {
    pub ptr: *mut f32,
    pub k: usize,
    pub nr: usize,
    pub panels: usize,
}

// SAFETY: as for `Positions`: writers through it write disjoint rows or panels.
unsafe impl Send for Packed {}
// SAFETY: as above.
unsafe impl Sync for Packed {}

impl Packed {
    pub fn new(ptr: *mut f32, k: usize, n: usize, nr: usize) -> Self {
        Self {
            ptr,
            k,
            nr,
            panels: n.div_ceil(nr),
        }
    }

    /// Floats the 25 packed (k x n) matrices take.
    pub fn len(k: usize, n: usize, nr: usize) -> usize {
        XI * n.div_ceil(nr) * k * nr
    }

    /// Row `row` of panel `j` of position `xi`.
    #[inline(always)]
    fn at(&self, xi: usize, j: usize, row: usize) -> *mut f32 {
        let xi_len = self.panels * self.k * self.nr;
        self.ptr
            .wrapping_add(xi * xi_len + (j * self.k + row) * self.nr)
    }

    /// Position `xi` as a GEMM operand.
    pub fn panels(&self, xi: usize) -> Panels {
        Panels {
            ptr: self.at(xi, 0, 0),
            k: self.k,
            nr: self.nr,
        }
    }
}

#[inline(always)]
fn scale<const L: usize>(a: V<L>, k: f32) -> V<L> {
    zip(a, a, |x, _| x * k)
}

/// B^T d for five vectors (one column or row of the tile).
#[inline(always)]
fn bt<const L: usize, const F: bool>(d: [V<L>; 5]) -> [V<L>; 5] {
    let t = sub(d[3], d[1]); // d3 - d1
    [
        add_k::<L, F>(t, 2.0, sub(d[0], d[2])), // 2 d0 - d1 - 2 d2 + d3
        sub(t, add(d[1], d[2])),                // -2 d1 - d2 + d3
        add_k::<L, F>(sub(d[3], d[2]), 2.0, sub(d[1], d[2])), // 2 d1 - 3 d2 + d3
        t,                                      // -d1 + d3
        add_k::<L, F>(sub(d[4], d[2]), -2.0, t), // 2 d1 - d2 - 2 d3 + d4
    ]
}

/// A^T m for five vectors: three outputs.
#[inline(always)]
fn at<const L: usize, const F: bool>(m: [V<L>; 5]) -> [V<L>; 3] {
    let s = add(m[1], m[2]);
    let d = sub(m[1], m[2]);
    [
        add(add(m[0], s), m[3]),                // m0 + m1 + m2 + m3
        add_k::<L, F>(d, 2.0, m[3]),            // m1 - m2 + 2 m3
        add(add_k::<L, F>(s, 4.0, m[3]), m[4]), // m1 + m2 + 4 m3 + m4
    ]
}

/// G g for three vectors: five outputs.
#[inline(always)]
fn gt<const L: usize, const F: bool>(g: [V<L>; 3]) -> [V<L>; 5] {
    let s = add(g[0], g[2]);
    [
        scale(g[0], 0.5),                // g0 / 2
        scale(add(s, g[1]), -0.5),       // -(g0 + g1 + g2) / 2
        scale(sub(s, g[1]), -1.0 / 6.0), // -(g0 - g1 + g2) / 6
        scale(
            add_k::<L, F>(add_k::<L, F>(g[0], 2.0, g[1]), 4.0, g[2]),
            1.0 / 6.0,
        ), // (g0 + 2 g1 + 4 g2) / 6
        g[2],                            // g2
    ]
}

/// B^T d B of one tile: `load(row, col)` gives the 5x5 input, `store(xi, v)` takes the result.
#[inline(always)]
fn input_tile<const L: usize, const F: bool>(
    load: impl Fn(usize, usize) -> V<L>,
    mut store: impl FnMut(usize, V<L>),
) {
    let mut t = [[[0f32; L]; 5]; 5];
    for q in 0..5 {
        let col = bt::<L, F>(std::array::from_fn(|r| load(r, q)));
        for (tr, v) in t.iter_mut().zip(col) {
            tr[q] = v;
        }
    }
    for (r, tr) in t.iter().enumerate() {
        for (q, v) in bt::<L, F>(*tr).into_iter().enumerate() {
            store(r * 5 + q, v);
        }
    }
}

/// G g G^T of one 3x3 tile or kernel: `load(row, col)` gives it, `store(xi, v)` takes the result.
#[inline(always)]
fn kernel_tile<const L: usize, const F: bool>(
    load: impl Fn(usize, usize) -> V<L>,
    mut store: impl FnMut(usize, V<L>),
) {
    let mut t = [[[0f32; L]; 3]; 5];
    for q in 0..3 {
        let col = gt::<L, F>(std::array::from_fn(|r| load(r, q)));
        for (tr, v) in t.iter_mut().zip(col) {
            tr[q] = v;
        }
    }
    for (r, tr) in t.iter().enumerate() {
        for (q, v) in gt::<L, F>(*tr).into_iter().enumerate() {
            store(r * 5 + q, v);
        }
    }
}

/// A^T m A of one tile: `load(xi)` gives the 25 positions; returns the 3x3 outputs.
#[inline(always)]
fn output_tile<const L: usize, const F: bool>(load: impl Fn(usize) -> V<L>) -> [[V<L>; 3]; 3] {
    let mut s = [[[0f32; L]; 5]; 3];
    for q in 0..5 {
        let col = at::<L, F>(std::array::from_fn(|r| load(r * 5 + q)));
        for (sr, v) in s.iter_mut().zip(col) {
            sr[q] = v;
        }
    }
    let mut y = [[[0f32; L]; 3]; 3];
    for (yr, sr) in y.iter_mut().zip(s) {
        *yr = at::<L, F>(sr);
    }
    y
}

#[inline(always)]
unsafe fn load<const L: usize>(p: *const f32) -> V<L> {
    // SAFETY: the caller's pointer covers L floats.
    unsafe { std::ptr::read_unaligned(p.cast()) }
}

/// A store of L floats that bypasses the caches (non-temporal) when `L` is a vector width of
/// x86-64 (4, 8, 16: SSE, AVX, AVX-512, each instantiated only inside functions compiled for
/// it, see `isa_fns!`) and `p` is aligned to it; else a plain store.
///
/// Why: the kernels' transform writes 26 MB per block5 layer and step, more than the caches
/// keep; a plain store first reads each line it writes. Measured on block5: the transform
/// takes 2.9 ms instead of 4.8 (one thread), the GEMMs that read it back as long as before.
///
/// # Safety
/// `p` covers L floats; the writing thread runs `sfence` ([`store_fence`]) before other
/// threads read them.
#[inline(always)]
unsafe fn store_nt<const L: usize>(p: *mut f32, v: V<L>) {
    #[cfg(target_arch = "x86_64")]
    if (p as usize).is_multiple_of(L * 4) {
        use std::arch::x86_64::*;
        // SAFETY: the caller's contract, alignment checked; the intrinsics' features are
        // enabled where these lane counts are compiled.
        unsafe {
            match L {
                16 => return _mm512_stream_ps(p, _mm512_loadu_ps(v.as_ptr())),
                8 => return _mm256_stream_ps(p, _mm256_loadu_ps(v.as_ptr())),
                4 => return _mm_stream_ps(p, _mm_loadu_ps(v.as_ptr())),
                _ => {}
            }
        }
    }
    // SAFETY: the caller's contract.
    unsafe { store(p, v) }
}

/// Orders this thread's non-temporal stores before its later stores (and so before the end
/// of its rayon task is seen by other threads).
pub(crate) fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sfence has no operands and no preconditions (SSE, part of x86-64).
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

#[inline(always)]
unsafe fn store<const L: usize>(p: *mut f32, v: V<L>) {
    // SAFETY: the caller's pointer covers L floats.
    unsafe { std::ptr::write_unaligned(p.cast(), v) }
}

/// Input transform of tiles `t0..t0 + count` of the plain NHWC maps `x` (`c` channels, zero
/// outside the maps: the conv's padding) into rows `0..count` of `v`.
#[inline(always)]
unsafe fn input_lanes<const L: usize, const F: bool>(
    x: *const f32,
    g: Tiles,
    c: usize,
    t0: usize,
    count: usize,
    v: Dom,
) {
    for r in 0..count {
        let (i, ty, tx) = g.pos(t0 + r);
        // Frame rows and columns of the 5x5 window, and which of them lie inside the map.
        let ys: [Option<usize>; 5] =
            std::array::from_fn(|k| (TILE * ty + k).checked_sub(1).filter(|&y| y < g.h));
        let xs: [Option<usize>; 5] =
            std::array::from_fn(|k| (TILE * tx + k).checked_sub(1).filter(|&x| x < g.w));
        let offset = |k: usize, q: usize| match (ys[k], xs[q]) {
            (Some(y), Some(xx)) => Some(((i * g.h + y) * g.w + xx) * c),
            _ => None,
        };
        let offs: [[Option<usize>; 5]; 5] =
            std::array::from_fn(|k| std::array::from_fn(|q| offset(k, q)));
        let dst = v.ptr.wrapping_add(r * v.ld);
        let mut c0 = 0;
        // SAFETY (both loops): the offsets are pixels of image i inside the maps, whose c
        // channels x holds (caller's contract); row r of every position of v has c floats.
        while c0 + L <= c {
            input_tile::<L, F>(
                |k, q| offs[k][q].map_or([0.0; L], |o| unsafe { load(x.add(o + c0)) }),
                |xi, val| unsafe { store(dst.add(xi * v.xi_stride + c0), val) },
            );
            c0 += L;
        }
        while c0 < c {
            input_tile::<1, F>(
                |k, q| offs[k][q].map_or([0.0; 1], |o| unsafe { load(x.add(o + c0)) }),
                |xi, val| unsafe { store(dst.add(xi * v.xi_stride + c0), val) },
            );
            c0 += 1;
        }
    }
}

/// Output transform of rows `0..count` of `m` (tiles `t0..`, whose column 0 is channel
/// `cols.0`) into channels `cols.0..cols.1` of the plain NHWC maps `y` (`o` channels per
/// pixel), pixels past the maps' edges dropped; + bias then ReLU when `bias` is not null.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn output_lanes<const L: usize, const F: bool>(
    m: Dom,
    g: Tiles,
    t0: usize,
    count: usize,
    o: usize,
    cols: (usize, usize),
    bias: *const f32,
    y: *mut f32,
) {
    for r in 0..count {
        let (i, ty, tx) = g.pos(t0 + r);
        let rows = TILE.min(g.h - TILE * ty);
        let px = TILE.min(g.w - TILE * tx);
        let src = m.ptr.wrapping_add(r * m.ld);
        let dst = y.wrapping_add(((i * g.h + TILE * ty) * g.w + TILE * tx) * o);
        let rs = g.w * o;
        let mut oc = cols.0;
        // SAFETY (both loops): row r of every position of m holds the columns of cols; the
        // written pixels lie inside image i (rows and px clipped above), channels oc.. of o;
        // bias, when given, has o values (caller's contract).
        while oc + L <= cols.1 {
            let col = oc - cols.0;
            let yt = output_tile::<L, F>(|xi| unsafe { load(src.add(xi * m.xi_stride + col)) });
            let b: Option<V<L>> = (!bias.is_null()).then(|| unsafe { load(bias.add(oc)) });
            for (yy, row) in yt.iter().enumerate().take(rows) {
                for (xx, &v) in row.iter().enumerate().take(px) {
                    let v = b.map_or(v, |b| zip(v, b, |a, b| (a + b).max(0.0)));
                    unsafe { store(dst.add(yy * rs + xx * o + oc), v) };
                }
            }
            oc += L;
        }
        while oc < cols.1 {
            let col = oc - cols.0;
            let yt = output_tile::<1, F>(|xi| unsafe { load(src.add(xi * m.xi_stride + col)) });
            let b: Option<V<1>> = (!bias.is_null()).then(|| unsafe { load(bias.add(oc)) });
            for (yy, row) in yt.iter().enumerate().take(rows) {
                for (xx, &v) in row.iter().enumerate().take(px) {
                    let v = b.map_or(v, |b| zip(v, b, |a, b| (a + b).max(0.0)));
                    unsafe { store(dst.add(yy * rs + xx * o + oc), v) };
                }
            }
            oc += 1;
        }
    }
}

/// G dZ G^T of the 3x3 tiles `t0..t0 + count` of the plain NHWC maps `dz` (`o` channels; zero
/// past the maps' edges), written as row t of `out` (k = all tiles, n = o), padding lanes zero.
#[inline(always)]
unsafe fn tiles_as_kernels_lanes<const L: usize, const F: bool>(
    dz: *const f32,
    g: Tiles,
    o: usize,
    t0: usize,
    count: usize,
    out: Packed,
) {
    let nr = out.nr;
    for t in t0..t0 + count {
        let (i, ty, tx) = g.pos(t);
        let offset = |k: usize, q: usize| {
            let (y, xx) = (TILE * ty + k, TILE * tx + q);
            (y < g.h && xx < g.w).then(|| ((i * g.h + y) * g.w + xx) * o)
        };
        let offs: [[Option<usize>; 3]; 3] =
            std::array::from_fn(|k| std::array::from_fn(|q| offset(k, q)));
        let mut oc = 0;
        // SAFETY (all loops): the offsets are pixels inside image i of dz, o channels each;
        // row t of every panel of out is inside the buffer (caller's contract); lanes oc..oc+L
        // do not cross a panel since L divides nr and oc is a multiple of L in the first loop.
        while oc + L <= o {
            let (j, lane) = (oc / nr, oc % nr);
            kernel_tile::<L, F>(
                |k, q| offs[k][q].map_or([0.0; L], |p| unsafe { load(dz.add(p + oc)) }),
                |xi, v| unsafe { store(out.at(xi, j, t).add(lane), v) },
            );
            oc += L;
        }
        while oc < o {
            let (j, lane) = (oc / nr, oc % nr);
            kernel_tile::<1, F>(
                |k, q| offs[k][q].map_or([0.0; 1], |p| unsafe { load(dz.add(p + oc)) }),
                |xi, v| unsafe { store(out.at(xi, j, t).add(lane), v) },
            );
            oc += 1;
        }
        while oc < out.panels * nr {
            let (j, lane) = (oc / nr, oc % nr);
            for xi in 0..XI {
                unsafe { *out.at(xi, j, t).add(lane) = 0.0 };
            }
            oc += 1;
        }
    }
}

/// U = G g G^T of the OIHW kernels `w` (o, c, 3, 3) as the forward GEMMs' B (k = c, n = o):
/// panels `js` of every position, each lane an output channel (zero past o). With `flip`,
/// instead the input gradient's U' (k = o, n = c): the kernels flipped and transposed,
/// W'[c][o][kh][kw] = W[o][c][2 - kh][2 - kw], each lane an input channel.
///
/// The lanes' kernels are first copied tap-major into a small buffer (a transpose of the 9
/// taps and L lanes), so that the transform runs on whole vectors.
#[inline(always)]
unsafe fn kernels_lanes<const L: usize, const F: bool>(
    w: *const f32,
    c: usize,
    o: usize,
    flip: bool,
    js: (usize, usize),
    out: Packed,
) {
    let nr = out.nr;
    // Lanes run over n (o, or c when flipped), rows over k.
    let (n, k) = if flip { (c, o) } else { (o, c) };
    // Offset of kernel (lane column `col`, row `row`) in w.
    let kernel = |col: usize, row: usize| if flip { row * c + col } else { col * c + row } * 9;
    for j in js.0..js.1 {
        for l0 in (0..nr).step_by(L) {
            let first = j * nr + l0;
            let lanes = L.min(n.saturating_sub(first));
            for row in 0..k {
                let mut g = [[0f32; L]; 9];
                // SAFETY: kernels (first + lane, row) for lane < lanes are inside w's
                // o * c * 9 floats (first + lane < n).
                for lane in 0..lanes {
                    let src =
                        unsafe { std::slice::from_raw_parts(w.add(kernel(first + lane, row)), 9) };
                    for (t, gt) in g.iter_mut().enumerate() {
                        gt[lane] = src[if flip { 8 - t } else { t }];
                    }
                }
                // SAFETY: row `row` of panel j is inside out (caller's contract), lanes
                // l0..l0 + L < nr.
                let dst = out.at(0, j, row).wrapping_add(l0);
                let xi_len = out.panels * out.k * nr;
                kernel_tile::<L, F>(
                    |kh, kw| g[kh * 3 + kw],
                    |xi, v| unsafe { store_nt(dst.add(xi * xi_len), v) },
                );
            }
        }
    }
}

/// The weight gradient's output transform: rows `0..count` of `m` are input channels
/// `c0..c0 + count`, columns output channels; writes dW[o][c][kh][kw] = (A^T m A)[kh][kw] into
/// the OIHW `dw` (o, c_total, 3, 3).
#[inline(always)]
unsafe fn weight_grad_lanes<const L: usize, const F: bool>(
    m: Dom,
    c0: usize,
    count: usize,
    c_total: usize,
    o: usize,
    dw: *mut f32,
) {
    for r in 0..count {
        let cc = c0 + r;
        let src = m.ptr.wrapping_add(r * m.ld);
        if r + 1 < count {
            // The next row's 25 positions: 25 streams at once are more than the hardware
            // prefetchers follow, and this pass is bound by reading them.
            for xi in 0..XI {
                // SAFETY: row r + 1 of position xi holds o floats (caller's contract).
                prefetch_l2(unsafe {
                    std::slice::from_raw_parts(src.add(m.ld + xi * m.xi_stride), o)
                });
            }
        }
        let mut oc = 0;
        // SAFETY (both loops): row r of every position of m holds o columns; every write is
        // kernel (oc + lane, cc) of dw, inside its o * c_total * 9 floats (caller's contract).
        while oc + L <= o {
            let taps = output_tile::<L, F>(|xi| unsafe { load(src.add(xi * m.xi_stride + oc)) });
            for lane in 0..L {
                let kernel = unsafe { dw.add(((oc + lane) * c_total + cc) * 9) };
                for (kh, row) in taps.iter().enumerate() {
                    for (kw, v) in row.iter().enumerate() {
                        unsafe { *kernel.add(kh * 3 + kw) = v[lane] };
                    }
                }
            }
            oc += L;
        }
        while oc < o {
            let taps = output_tile::<1, F>(|xi| unsafe { load(src.add(xi * m.xi_stride + oc)) });
            let kernel = unsafe { dw.add((oc * c_total + cc) * 9) };
            for (kh, row) in taps.iter().enumerate() {
                for (kw, v) in row.iter().enumerate() {
                    unsafe { *kernel.add(kh * 3 + kw) = v[0] };
                }
            }
            oc += 1;
        }
    }
}

/// For each `fn name(args) => lanes;`, an `unsafe fn name(isa, args)` that runs `lanes` compiled
/// for `isa`: 16 lanes with FMA for AVX-512, 8 with FMA for AVX2, 4 without for portable.
macro_rules! isa_fns {
    ($($(#[$doc:meta])* fn $name:ident($($a:ident: $t:ty),*) => $lanes:ident;)*) => {$(
        $(#[$doc])*
        ///
        /// # Safety
        /// As the lanes function's contract (see its comments); `isa` runs on this CPU.
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn $name(isa: Isa, $($a: $t),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($a: $t),*) {
                    // SAFETY: forwarded contract.
                    unsafe { $lanes::<16, true>($($a),*) }
                }
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($a: $t),*) {
                    // SAFETY: forwarded contract.
                    unsafe { $lanes::<8, true>($($a),*) }
                }
                match isa {
                    // SAFETY: forwarded contract; the ISA runs on this CPU.
                    Isa::Avx512 | Isa::Amx => return unsafe { avx512($($a),*) },
                    // SAFETY: as above.
                    Isa::Avx2 => return unsafe { avx2($($a),*) },
                    Isa::Portable => {}
                }
            }
            let _ = isa;
            // SAFETY: forwarded contract.
            unsafe { $lanes::<4, false>($($a),*) }
        }
    )*};
}

isa_fns! {
    /// B^T d B of tiles `t0..t0 + count` of NHWC maps into rows `0..count` of `v`.
    fn input_transform(x: *const f32, g: Tiles, c: usize, t0: usize, count: usize, v: Dom)
        => input_lanes;
    /// A^T m A of rows `0..count` of `m` (tiles `t0..`) into channels `cols` of NHWC maps,
    /// with bias and ReLU unless `bias` is null.
    fn output_transform(m: Dom, g: Tiles, t0: usize, count: usize, o: usize,
        cols: (usize, usize), bias: *const f32, y: *mut f32) => output_lanes;
    /// G dZ G^T of the 3x3 tiles `t0..t0 + count` of NHWC maps into rows t of `out`.
    fn tiles_as_kernels(dz: *const f32, g: Tiles, o: usize, t0: usize, count: usize,
        out: Packed) => tiles_as_kernels_lanes;
    /// G g G^T of OIHW kernels (flipped and transposed when `flip`) into panels `js`.
    fn kernels_transform(w: *const f32, c: usize, o: usize, flip: bool, js: (usize, usize),
        out: Packed) => kernels_lanes;
    /// A^T m A of the weight gradient's rows into OIHW kernels.
    fn weight_grad_transform(m: Dom, c0: usize, count: usize, c_total: usize, o: usize,
        dw: *mut f32) => weight_grad_lanes;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matrices must satisfy the 1-D identity y_i = sum_k g_k d_(i+k) (checked in f32 on
    /// values whose products and sums are exact enough): B^T, G and A^T against a plain
    /// correlation.
    #[test]
    fn one_dimensional_identity_holds() {
        let d: [f32; 5] = [0.3, -1.7, 2.2, 0.9, -0.4];
        let g: [f32; 3] = [0.7, -0.2, 1.1];
        let bd = bt::<1, false>(d.map(|x| [x]));
        let gg = gt::<1, false>(g.map(|x| [x]));
        let m: [V<1>; 5] = std::array::from_fn(|i| [gg[i][0] * bd[i][0]]);
        let y = at::<1, false>(m);
        for i in 0..3 {
            let want: f64 = (0..3).map(|k| f64::from(g[k]) * f64::from(d[i + k])).sum();
            assert!(
                (f64::from(y[i][0]) - want).abs() < 1e-5,
                "y{i}: {} vs {want}",
                y[i][0]
            );
        }
    }

    /// The 2-D tile functions compose into a 3x3 correlation of a 5x5 tile.
    #[test]
    fn two_dimensional_tile_is_a_correlation() {
        let d: [[f32; 5]; 5] =
            std::array::from_fn(|r| std::array::from_fn(|q| ((r * 7 + q * 3) % 11) as f32 - 5.0));
        let g: [[f32; 3]; 3] =
            std::array::from_fn(|r| std::array::from_fn(|q| ((r * 5 + q) % 7) as f32 * 0.25 - 0.5));
        let mut v = [[0f32; 1]; XI];
        input_tile::<1, true>(|r, q| [d[r][q]], |xi, x| v[xi] = x);
        let mut u = [[0f32; 1]; XI];
        kernel_tile::<1, true>(|r, q| [g[r][q]], |xi, x| u[xi] = x);
        let y = output_tile::<1, true>(|xi| [v[xi][0] * u[xi][0]]);
        for i in 0..3 {
            for j in 0..3 {
                let want: f32 = (0..9)
                    .map(|t| g[t / 3][t % 3] * d[i + t / 3][j + t % 3])
                    .sum();
                assert!(
                    (y[i][j][0] - want).abs() < 1e-4,
                    "({i},{j}): {} vs {want}",
                    y[i][j][0]
                );
            }
        }
    }
}
