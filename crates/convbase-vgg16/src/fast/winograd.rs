//! Winograd F(4x4, 3x3) (Lavin & Gray 2016, interpolation points 0, +-1, +-2, inf): a 6x6 input
//! tile d and a 3x3 kernel g give the 4x4 output tile Y = A^T [(G g G^T) . (B^T d B)] A with 36
//! multiplications per channel pair instead of 144. The 36 element-wise products summed over input
//! channels are 36 independent GEMMs (tiles x C) . (C x O), so the transforms below only move data
//! between the NHWC frames and the "Winograd domain" rows the GEMMs read and write:
//! V[xi][tile][c] and M[xi][tile][o], xi = 6 * row + column of the 6x6 tile.
//!
//! The tile transforms work on L channels at once (plain arrays that LLVM vectorises: compiled
//! once per instruction set) and are fused with what surrounds them: the input transform reads
//! the zero-bordered frame directly, the output transform adds the bias, applies ReLU and, when
//! asked, the 2x2 max-pool before writing into the next layer's frame.

use super::conv::Geometry;
use super::isa::Isa;

/// Positions in the transformed 6x6 tile.
pub(crate) const XI: usize = 36;
/// Output pixels per tile side.
pub(crate) const TILE: usize = 4;

/// G g G^T for one 3x3 kernel (row-major), computed in f64: the kernel side of the product.
pub(crate) fn transform_kernel(g: &[f32; 9]) -> [f32; XI] {
    const G: [[f64; 3]; 6] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];
    // t = G g (6x3), u = t G^T (6x6).
    let mut t = [[0f64; 3]; 6];
    for (i, ti) in t.iter_mut().enumerate() {
        for (j, tij) in ti.iter_mut().enumerate() {
            *tij = (0..3).map(|k| G[i][k] * f64::from(g[k * 3 + j])).sum();
        }
    }
    let mut u = [0f32; XI];
    for i in 0..6 {
        for j in 0..6 {
            u[i * 6 + j] = (0..3).map(|k| t[i][k] * G[j][k]).sum::<f64>() as f32;
        }
    }
    u
}

pub(super) type V<const L: usize> = [f32; L];

#[inline(always)]
pub(super) fn zip<const L: usize>(a: V<L>, b: V<L>, f: impl Fn(f32, f32) -> f32) -> V<L> {
    let mut r = a;
    for i in 0..L {
        r[i] = f(a[i], b[i]);
    }
    r
}

#[inline(always)]
pub(super) fn add<const L: usize>(a: V<L>, b: V<L>) -> V<L> {
    zip(a, b, |x, y| x + y)
}

#[inline(always)]
pub(super) fn sub<const L: usize>(a: V<L>, b: V<L>) -> V<L> {
    zip(a, b, |x, y| x - y)
}

/// a + k * b, fused (one rounding) when `F`: only where the CPU has FMA, as `mul_add` is a
/// library call otherwise.
#[inline(always)]
pub(super) fn add_k<const L: usize, const F: bool>(a: V<L>, k: f32, b: V<L>) -> V<L> {
    if F {
        zip(a, b, |x, y| y.mul_add(k, x))
    } else {
        zip(a, b, |x, y| x + k * y)
    }
}

/// A vector of f32 lanes for the tile transforms below: an AVX-512 or AVX register on x86-64
/// ([`Zmm`], [`Ymm`]), or a plain array (portable, and the last C mod N channels). Registers,
/// not arrays of 16 or 8 floats: LLVM compiled the arrays' element-wise loops into shuffles
/// and stack traffic (the transforms took a third of the conv base's time).
pub(super) trait Lanes: Copy {
    /// Floats per vector.
    const N: usize;

    /// Reads N floats.
    ///
    /// # Safety
    /// `p` points at N readable floats, and the CPU runs this vector type's instructions
    /// (every other method relies on a vector having been loaded).
    unsafe fn load(p: *const f32) -> Self;

    /// Writes N floats.
    ///
    /// # Safety
    /// `p` points at N writable floats.
    unsafe fn store(self, p: *mut f32);

    fn add(self, b: Self) -> Self;

    fn sub(self, b: Self) -> Self;

    /// self + k * b (fused, one rounding, on x86-64).
    fn add_k(self, k: f32, b: Self) -> Self;

    fn max(self, b: Self) -> Self;

    /// max(self, 0).
    fn relu(self) -> Self;
}

impl<const L: usize> Lanes for V<L> {
    const N: usize = L;

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: caller's contract.
        unsafe { std::ptr::read_unaligned(p.cast()) }
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: caller's contract.
        unsafe { std::ptr::write_unaligned(p.cast(), self) }
    }

    #[inline(always)]
    fn add(self, b: Self) -> Self {
        add(self, b)
    }

    #[inline(always)]
    fn sub(self, b: Self) -> Self {
        sub(self, b)
    }

    #[inline(always)]
    fn add_k(self, k: f32, b: Self) -> Self {
        add_k::<L, false>(self, k, b)
    }

    #[inline(always)]
    fn max(self, b: Self) -> Self {
        zip(self, b, f32::max)
    }

    #[inline(always)]
    fn relu(self) -> Self {
        zip(self, self, |x, _| x.max(0.0))
    }
}

/// B^T d for six vectors (one column or row of the tile).
#[inline(always)]
fn bt<T: Lanes>(d: [T; 6]) -> [T; 6] {
    let s = d[4].sub(d[2]); // d4 - d2
    let t = d[3].sub(d[1]); // d3 - d1
    let u = d[4].add(d[3]); // d3 + d4
    let w = d[1].add(d[2]); // d1 + d2
    let x = d[4].sub(d[3]); // d4 - d3
    let y = d[1].sub(d[2]); // d1 - d2
    [
        d[4].add_k(4.0, d[0]).add_k(-5.0, d[2]), // 4 d0 - 5 d2 + d4
        u.add_k(-4.0, w),                        // -4 d1 - 4 d2 + d3 + d4
        x.add_k(4.0, y),                         // 4 d1 - 4 d2 - d3 + d4
        s.add_k(2.0, t),                         // -2 d1 - d2 + 2 d3 + d4
        s.add_k(-2.0, t),                        // 2 d1 - d2 - 2 d3 + d4
        d[5].add_k(4.0, d[1]).add_k(-5.0, d[3]), // 4 d1 - 5 d3 + d5
    ]
}

/// A^T m for six vectors: four outputs.
#[inline(always)]
fn at<T: Lanes>(m: [T; 6]) -> [T; 4] {
    let s12 = m[1].add(m[2]);
    let d12 = m[1].sub(m[2]);
    let s34 = m[3].add(m[4]);
    let d34 = m[3].sub(m[4]);
    [
        m[0].add(s12).add(s34),
        d12.add_k(2.0, d34),
        s12.add_k(4.0, s34),
        d12.add_k(8.0, d34).add(m[5]),
    ]
}

/// Where one block of tiles lives in the Winograd domain of `P` positions per tile (36 for
/// F(4x4, 3x3) here, 25 for fine-tuning's F(3x3, 3x3)): row r of position xi (one tile, its
/// channels contiguous) starts at `ptr + xi * xi_stride + r * ld`.
///
/// Both strides are padded by one cache line past the data: with the natural strides (powers
/// of two times the tile count) the rows one tile transform touches, and the rows the GEMM
/// micro-kernel reads and writes together, would all fall into the same few L1 sets. The
/// padding also leaves room for a column-major read of up to 16 columns past the width.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Positions<const P: usize> {
    pub ptr: *mut f32,
    pub ld: usize,
    pub xi_stride: usize,
}

/// The inference path's blocks.
pub(crate) type Domain = Positions<XI>;

// SAFETY: a `Positions` only describes a buffer; every writer through it writes rows or
// columns no other thread touches (documented at each use).
unsafe impl<const P: usize> Send for Positions<P> {}
// SAFETY: as above.
unsafe impl<const P: usize> Sync for Positions<P> {}

/// Floats in one cache line.
const LINE: usize = 16;

impl<const P: usize> Positions<P> {
    /// Layout of `rows` tiles of `width` floats at `ptr`.
    pub fn new(ptr: *mut f32, rows: usize, width: usize) -> Self {
        let ld = width + LINE;
        Self {
            ptr,
            ld,
            xi_stride: rows * ld + LINE,
        }
    }

    /// Floats a block of `rows` tiles of `width` floats takes.
    pub fn len(rows: usize, width: usize) -> usize {
        P * (rows * (width + LINE) + LINE)
    }

    /// Row 0 of position `xi`.
    pub fn at(&self, xi: usize) -> *mut f32 {
        self.ptr.wrapping_add(xi * self.xi_stride)
    }

    /// The same rows from row `r` on.
    pub fn rows_from(&self, r: usize) -> Self {
        Self {
            ptr: self.ptr.wrapping_add(r * self.ld),
            ..*self
        }
    }
}

/// (image, tile row, tile column) of a global tile index.
#[inline(always)]
fn tile_pos(t: usize, th: usize, tw: usize) -> (usize, usize, usize) {
    (t / (th * tw), (t / tw) % th, t % tw)
}

/// Input transform of tiles `t0..t0+count` of frame `x` into V (row r = tile t0 + r).
///
/// # Safety
/// `x` points at a frame of geometry `g` with the zero border a 4x4-tiled conv needs; `v` holds
/// at least `count` rows of `g.c` floats per position; `isa` runs on this CPU.
pub(crate) unsafe fn input_transform(
    isa: Isa,
    x: *const f32,
    g: &Geometry,
    t0: usize,
    count: usize,
    v: Domain,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Amx => x86::input_avx512(x, g, t0, count, v),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::input_avx2(x, g, t0, count, v),
            _ => input_lanes::<V<4>>(x, g, t0, count, v),
        }
    }
}

/// [`input_transform`] with `T::N` channels per step (and one at a time for the last C mod N).
#[inline(always)]
unsafe fn input_lanes<T: Lanes>(x: *const f32, g: &Geometry, t0: usize, count: usize, v: Domain) {
    let (th, tw) = (g.h.div_ceil(TILE), g.w.div_ceil(TILE));
    let (c, rs) = (g.c, g.wp() * g.c);
    let xi_stride = v.xi_stride;
    for r in 0..count {
        let (i, ty, tx) = tile_pos(t0 + r, th, tw);
        // SAFETY: the tile's 6x6 window (padded rows 4ty..4ty+6, columns 4tx..4tx+6) lies
        // inside image i's frame, and row r of V inside the domain (caller's contract).
        unsafe {
            let src = x.add(g.frame_offset(i, TILE * ty, TILE * tx));
            let dst = v.ptr.add(r * v.ld);
            let mut c0 = 0;
            while c0 + T::N <= c {
                input_tile::<T>(src.add(c0), rs, c, dst.add(c0), xi_stride);
                c0 += T::N;
            }
            while c0 < c {
                input_tile::<V<1>>(src.add(c0), rs, c, dst.add(c0), xi_stride);
                c0 += 1;
            }
        }
    }
}

/// B^T d B of one tile for `T::N` channels; `rs`/`ps` are the row and pixel strides of the frame.
#[inline(always)]
unsafe fn input_tile<T: Lanes>(
    src: *const f32,
    rs: usize,
    ps: usize,
    dst: *mut f32,
    xi_stride: usize,
) {
    // SAFETY: caller's contract: 6 rows of 6 pixels of N floats at src, 36 rows at dst.
    unsafe {
        // cols[q][r]: row r of B^T d for column q of the tile. Array literals of
        // `inline(always)` calls, nothing zero-filled first (a memset per tile and channel
        // group was 4% of the conv base's time), and no `from_fn`, `map` or closures: those
        // are not inlined into the `target_feature` callers and ran without AVX.
        let cols = [
            bt(load6::<T>(src, rs)),
            bt(load6::<T>(src.add(ps), rs)),
            bt(load6::<T>(src.add(2 * ps), rs)),
            bt(load6::<T>(src.add(3 * ps), rs)),
            bt(load6::<T>(src.add(4 * ps), rs)),
            bt(load6::<T>(src.add(5 * ps), rs)),
        ];
        for r in 0..6 {
            let u = bt(nth6(&cols, r));
            for (q, uq) in u.into_iter().enumerate() {
                uq.store(dst.add((r * 6 + q) * xi_stride));
            }
        }
    }
}

/// Six vectors `stride` floats apart.
///
/// # Safety
/// As [`Lanes::load`], for each.
#[inline(always)]
unsafe fn load6<T: Lanes>(p: *const f32, stride: usize) -> [T; 6] {
    // SAFETY: caller's contract.
    unsafe {
        [
            T::load(p),
            T::load(p.add(stride)),
            T::load(p.add(2 * stride)),
            T::load(p.add(3 * stride)),
            T::load(p.add(4 * stride)),
            T::load(p.add(5 * stride)),
        ]
    }
}

/// Element `k` of each of six arrays (a column of a 6 x N table kept by rows).
#[inline(always)]
fn nth6<T: Copy, const N: usize>(t: &[[T; N]; 6], k: usize) -> [T; 6] {
    [t[0][k], t[1][k], t[2][k], t[3][k], t[4][k], t[5][k]]
}

/// Output transform of tiles `t0..t0+count` from M (row r = tile t0 + r), plus bias and ReLU,
/// and the 2x2 max-pool when `pool`, written into frame `y`.
///
/// `g` is the geometry of the conv's input (it defines the tiles) and `yg` that of `y`: same
/// n and spatial size (halved, floor, when pooled), `yg.c` output channels.
///
/// # Safety
/// `m` holds at least `count` rows of `yg.c` floats per position; `y` points at
/// a frame of geometry `yg` that no other thread writes at these tiles' pixels; `bias` has
/// `yg.c` values; `isa` runs on this CPU.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn output_transform(
    isa: Isa,
    m: Domain,
    g: &Geometry,
    t0: usize,
    count: usize,
    bias: &[f32],
    pool: bool,
    y: *mut f32,
    yg: &Geometry,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Amx => x86::output_avx512(m, g, t0, count, bias, pool, y, yg),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::output_avx2(m, g, t0, count, bias, pool, y, yg),
            _ => output_lanes::<V<4>>(m, g, t0, count, bias, pool, y, yg),
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn output_lanes<T: Lanes>(
    m: Domain,
    g: &Geometry,
    t0: usize,
    count: usize,
    bias: &[f32],
    pool: bool,
    y: *mut f32,
    yg: &Geometry,
) {
    let (th, tw) = (g.h.div_ceil(TILE), g.w.div_ceil(TILE));
    let o = yg.c;
    let xi_stride = m.xi_stride;
    for r in 0..count {
        let (i, ty, tx) = tile_pos(t0 + r, th, tw);
        // Output pixels of this tile inside the frame: full 4x4 (or 2x2 pooled) except at the
        // bottom and right edges.
        let side = if pool { TILE / 2 } else { TILE };
        let (oy, ox) = (side * ty, side * tx);
        let rows = side.min(yg.h.saturating_sub(oy));
        let cols = side.min(yg.w.saturating_sub(ox));
        if rows == 0 || cols == 0 {
            continue;
        }
        // SAFETY: row r of M is inside the domain; the written pixels are inside image i's
        // frame interior (rows/cols clipped above); caller's contract for the rest.
        unsafe {
            let src = m.ptr.add(r * m.ld);
            let dst = y.add(yg.frame_offset(i, oy + 1, ox + 1));
            let rs = yg.wp() * o;
            let mut c0 = 0;
            while c0 + T::N <= o {
                let b = T::load(bias.as_ptr().add(c0));
                output_tile::<T>(
                    src.add(c0),
                    xi_stride,
                    b,
                    pool,
                    dst.add(c0),
                    rs,
                    o,
                    rows,
                    cols,
                );
                c0 += T::N;
            }
            while c0 < o {
                let b = [bias[c0]];
                output_tile::<V<1>>(
                    src.add(c0),
                    xi_stride,
                    b,
                    pool,
                    dst.add(c0),
                    rs,
                    o,
                    rows,
                    cols,
                );
                c0 += 1;
            }
        }
    }
}

/// A^T m A of one tile for `T::N` channels, + bias, ReLU (after the max when pooling: both
/// commute with the max, so the result is the same as pooling the activated outputs).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn output_tile<T: Lanes>(
    src: *const f32,
    xi_stride: usize,
    bias: T,
    pool: bool,
    dst: *mut f32,
    rs: usize,
    ps: usize,
    rows: usize,
    cols: usize,
) {
    // SAFETY: caller's contract: 36 rows at src, `rows` x `cols` pixels of N floats at dst.
    unsafe {
        // half[q][k]: row k of A^T m for column q of the tile (written as in `input_tile`).
        let st = 6 * xi_stride;
        let half = [
            at(load6::<T>(src, st)),
            at(load6::<T>(src.add(xi_stride), st)),
            at(load6::<T>(src.add(2 * xi_stride), st)),
            at(load6::<T>(src.add(3 * xi_stride), st)),
            at(load6::<T>(src.add(4 * xi_stride), st)),
            at(load6::<T>(src.add(5 * xi_stride), st)),
        ];
        let yt = [
            at(nth6(&half, 0)),
            at(nth6(&half, 1)),
            at(nth6(&half, 2)),
            at(nth6(&half, 3)),
        ];
        let store =
            |yy: usize, xx: usize, v: T| v.add(bias).relu().store(dst.add(yy * rs + xx * ps));
        if pool {
            for py in 0..rows {
                for px in 0..cols {
                    let (a, b) = (yt[2 * py], yt[2 * py + 1]);
                    let m = a[2 * px]
                        .max(a[2 * px + 1])
                        .max(b[2 * px].max(b[2 * px + 1]));
                    store(py, px, m);
                }
            }
        } else {
            for (yy, row) in yt.iter().enumerate().take(rows) {
                for (xx, v) in row.iter().enumerate().take(cols) {
                    store(yy, xx, *v);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Domain, Geometry, Lanes, input_lanes, output_lanes};

    /// 16 lanes in an AVX-512 register. Only [`Lanes::load`] (unsafe, on a CPU with AVX-512F)
    /// makes one, so every other operation runs where the instructions exist.
    #[derive(Clone, Copy)]
    pub(super) struct Zmm(__m512);

    /// 8 lanes in an AVX register (AVX2 + FMA), as [`Zmm`].
    #[derive(Clone, Copy)]
    pub(super) struct Ymm(__m256);

    /// `Lanes` for a register type: each method one intrinsic (SAFETY for all: a value of the
    /// type exists only on a CPU with its instructions, see `Zmm`).
    macro_rules! lanes {
        ($t:ident, $n:expr, $load:ident, $store:ident, $add:ident, $sub:ident, $fma:ident,
         $set1:ident, $max:ident, $zero:ident) => {
            impl Lanes for $t {
                const N: usize = $n;

                #[inline(always)]
                unsafe fn load(p: *const f32) -> Self {
                    // SAFETY: caller's contract.
                    Self(unsafe { $load(p) })
                }

                #[inline(always)]
                unsafe fn store(self, p: *mut f32) {
                    // SAFETY: caller's contract.
                    unsafe { $store(p, self.0) }
                }

                #[inline(always)]
                fn add(self, b: Self) -> Self {
                    // SAFETY: see the macro's doc.
                    Self(unsafe { $add(self.0, b.0) })
                }

                #[inline(always)]
                fn sub(self, b: Self) -> Self {
                    // SAFETY: see the macro's doc.
                    Self(unsafe { $sub(self.0, b.0) })
                }

                #[inline(always)]
                fn add_k(self, k: f32, b: Self) -> Self {
                    // SAFETY: see the macro's doc.
                    Self(unsafe { $fma($set1(k), b.0, self.0) })
                }

                #[inline(always)]
                fn max(self, b: Self) -> Self {
                    // SAFETY: see the macro's doc.
                    Self(unsafe { $max(self.0, b.0) })
                }

                #[inline(always)]
                fn relu(self) -> Self {
                    // SAFETY: see the macro's doc.
                    Self(unsafe { $max(self.0, $zero()) })
                }
            }
        };
    }

    lanes!(
        Zmm,
        16,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_add_ps,
        _mm512_sub_ps,
        _mm512_fmadd_ps,
        _mm512_set1_ps,
        _mm512_max_ps,
        _mm512_setzero_ps
    );
    lanes!(
        Ymm,
        8,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_add_ps,
        _mm256_sub_ps,
        _mm256_fmadd_ps,
        _mm256_set1_ps,
        _mm256_max_ps,
        _mm256_setzero_ps
    );

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn input_avx2(
        x: *const f32,
        g: &Geometry,
        t0: usize,
        count: usize,
        v: Domain,
    ) {
        // SAFETY: forwarded contract; this CPU has AVX2 and FMA.
        unsafe { input_lanes::<Ymm>(x, g, t0, count, v) }
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn input_avx512(
        x: *const f32,
        g: &Geometry,
        t0: usize,
        count: usize,
        v: Domain,
    ) {
        // SAFETY: forwarded contract; this CPU has AVX-512F.
        unsafe { input_lanes::<Zmm>(x, g, t0, count, v) }
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn output_avx2(
        m: Domain,
        g: &Geometry,
        t0: usize,
        count: usize,
        bias: &[f32],
        pool: bool,
        y: *mut f32,
        yg: &Geometry,
    ) {
        // SAFETY: forwarded contract; this CPU has AVX2 and FMA.
        unsafe { output_lanes::<Ymm>(m, g, t0, count, bias, pool, y, yg) }
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn output_avx512(
        m: Domain,
        g: &Geometry,
        t0: usize,
        count: usize,
        bias: &[f32],
        pool: bool,
        y: *mut f32,
        yg: &Geometry,
    ) {
        // SAFETY: forwarded contract; this CPU has AVX-512F.
        unsafe { output_lanes::<Zmm>(m, g, t0, count, bias, pool, y, yg) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three matrices must satisfy the 1-D identity y_i = sum_k g_k d_(i+k) exactly (in
    /// f64): checks B^T, G and A^T against a plain correlation.
    #[test]
    fn one_dimensional_identity_holds() {
        let d: [f64; 6] = [0.3, -1.7, 2.2, 0.9, -0.4, 1.3];
        let gk: [f64; 3] = [0.7, -0.2, 1.1];
        // G g for a "kernel" with one column: use transform_kernel on g (x) e0 and read column 0.
        let mut g9 = [0f32; 9];
        for k in 0..3 {
            g9[k * 3] = gk[k] as f32;
        }
        let u = transform_kernel(&g9);
        // Row xi = 6 * i + 0 of G g G^T with G^T's first row being (1/4, 0, 0)... instead build
        // G g directly: column 0 of (G g G^T) = (G g) * G[0][0] = (G g) / 4.
        let gg: Vec<f64> = (0..6).map(|i| f64::from(u[i * 6]) * 4.0).collect();
        let bd = bt(d.map(|x| [x as f32]));
        let m: [[f32; 1]; 6] = std::array::from_fn(|i| [(gg[i] * f64::from(bd[i][0])) as f32]);
        let y = at(m);
        for i in 0..4 {
            let want: f64 = (0..3).map(|k| gk[k] * d[i + k]).sum();
            assert!(
                (f64::from(y[i][0]) - want).abs() < 1e-5,
                "y{i}: {} vs {want}",
                y[i][0]
            );
        }
    }
}
