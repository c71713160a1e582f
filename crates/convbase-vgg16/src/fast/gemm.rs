//! The one matrix product every fast conv runs: C (m x n) = A (m x k) . B (k x n), with A read in
//! place (row-major, any row stride: Winograd-domain tiles or im2col rows, channels fastest),
//! B packed once at model load into column panels of NR (zero-padded), and a register-blocked
//! MR x NR micro-kernel per instruction set. Single-threaded: callers parallelise over blocks.

use rayon::prelude::*;

use super::isa::Isa;

/// Depth of one pass over a B panel: KC x NR floats stay in L1 while the rows of A stream.
const KC: usize = 256;

/// B (k x n) packed into ceil(n / NR) panels of k x NR floats, columns past n zero.
#[derive(Debug, Clone)]
pub(crate) struct PackedB {
    data: Vec<f32>,
    k: usize,
    panels: usize,
    nr: usize,
}

impl PackedB {
    /// Packs B given element-wise by `get(row, col)` for the micro-kernel width `nr` (panels
    /// in parallel).
    pub fn new(k: usize, n: usize, nr: usize, get: impl Fn(usize, usize) -> f32 + Sync) -> Self {
        let panels = n.div_ceil(nr);
        let mut data = vec![0f32; panels * k * nr];
        data.par_chunks_mut((k * nr).max(1))
            .enumerate()
            .for_each(|(j, panel)| {
                for (p, row) in panel.chunks_exact_mut(nr).enumerate() {
                    for (l, v) in row.iter_mut().enumerate() {
                        let col = j * nr + l;
                        if col < n {
                            *v = get(p, col);
                        }
                    }
                }
            });
        Self {
            data,
            k,
            panels,
            nr,
        }
    }

    /// Packs B panel by panel: `fill(j, panel)` writes columns j*nr.. of every row into the
    /// zeroed k x nr `panel` (row p at `panel[p * nr..]`), panels in parallel. For callers
    /// that can walk their source in its own order.
    pub fn from_panels(
        k: usize,
        n: usize,
        nr: usize,
        fill: impl Fn(usize, &mut [f32]) + Sync,
    ) -> Self {
        let panels = n.div_ceil(nr);
        let mut data = vec![0f32; panels * k * nr];
        data.par_chunks_mut((k * nr).max(1))
            .enumerate()
            .for_each(|(j, panel)| fill(j, panel));
        Self {
            data,
            k,
            panels,
            nr,
        }
    }

    /// Columns including the zero padding: the row stride C needs.
    pub fn padded_cols(&self) -> usize {
        self.panels * self.nr
    }
}

/// C (m x padded_cols, row stride `ldc`) = A (m x k, row stride `lda`) . B; `then` is the B
/// of the caller's next product, whose first sub-panel is prefetched during the last one.
///
/// # Safety
/// `m` is a multiple of the ISA's MR; `a` points at m rows of `b.k` floats spaced `lda` apart,
/// `c` at m rows of `b.padded_cols()` floats spaced `ldc` apart, not overlapping `a`; `isa` runs
/// on this CPU and `b` was packed with its NR.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm(
    isa: Isa,
    m: usize,
    a: *const f32,
    lda: usize,
    b: &PackedB,
    c: *mut f32,
    ldc: usize,
    then: Option<&PackedB>,
) {
    let (mr, nr) = isa.mr_nr();
    debug_assert!(m.is_multiple_of(mr) && b.nr == nr);
    let k = b.k;
    let blocks = m / mr;
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        for j in 0..b.panels {
            let sub = |j: usize, k0: usize| &b.data[j * k * nr + k0 * nr..][..KC.min(k - k0) * nr];
            let bp = sub(j, k0).as_ptr();
            // The sub-panel after this one, fetched into L2 a slice per micro-kernel call:
            // a wide layer's weights come from L3 or memory, and the first row block of each
            // sub-panel would otherwise wait for them.
            let next = if j + 1 < b.panels {
                Some(sub(j + 1, k0))
            } else if k0 + KC < k {
                Some(sub(0, k0 + KC))
            } else {
                then.map(|t| &t.data[..KC.min(t.k) * nr])
            };
            let per_call = next.map_or(0, |n| n.len().div_ceil(blocks));
            for (bi, i) in (0..m).step_by(mr).enumerate() {
                if let Some(n) = next {
                    prefetch_l2(
                        &n[(bi * per_call).min(n.len())..((bi + 1) * per_call).min(n.len())],
                    );
                }
                // SAFETY: the caller's contract bounds rows i..i+mr of A and C, columns
                // k0..k0+kc of A and the panel's rows k0..k0+kc (inside b.data).
                unsafe {
                    let (ap, cp) = (a.add(i * lda + k0), c.add(i * ldc + j * nr));
                    kernel::<false>(isa, kc, ap, lda, bp, cp, ldc, k0 > 0, false);
                }
            }
        }
    }
}

/// Column panels of a packed B (k x panels*nr) in a caller's buffer: panel j holds k rows of
/// `nr` floats at `ptr + j * k * nr`, the layout of [`PackedB`] (the training convs keep 25 such
/// matrices in one reused buffer rather than 25 allocations per step).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Panels {
    pub ptr: *const f32,
    pub k: usize,
    pub nr: usize,
}

impl Panels {
    /// Sub-panel of panel `j` from row `k0` on.
    fn at(&self, j: usize, k0: usize) -> *const f32 {
        self.ptr.wrapping_add(j * self.k * self.nr + k0 * self.nr)
    }
}

/// C (m x panels `js` of B) = A (m x k) . B[:, js]: column block `j` of C starts at
/// `c + (j - js.start) * nr`. A is row-major (element (i, p) at `a[i * lda + p]`), or
/// column-major when `COL` (at `a[p * lda + i]`: the transpose of a row-major matrix, e.g. the
/// tiles x channels rows of the Winograd domain read as channels x tiles). With `stream`, C
/// is written with non-temporal stores where k fits one pass and C's rows are aligned (the
/// caller then runs `sfence` before other threads read C): for a large C read only later,
/// which a plain store would first fetch.
///
/// # Safety
/// `m` is a multiple of the ISA's MR; `a` points at an m x `b.k` matrix laid out as above, `c`
/// at m rows of `js.len() * nr` floats spaced `ldc` apart, not overlapping `a`; `b` holds the
/// panels `js` packed for `isa`'s NR; `isa` runs on this CPU.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_cols<const COL: bool>(
    isa: Isa,
    m: usize,
    a: *const f32,
    lda: usize,
    b: Panels,
    js: std::ops::Range<usize>,
    c: *mut f32,
    ldc: usize,
    stream: bool,
) {
    let (mr, nr) = isa.mr_nr();
    debug_assert!(m.is_multiple_of(mr) && b.nr == nr);
    let k = b.k;
    let blocks = m / mr;
    let stream = stream && k <= KC;
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        for j in js.clone() {
            let bp = b.at(j, k0);
            // The next sub-panel, fetched into L2 a slice per micro-kernel call (see `gemm`).
            let next = if j + 1 < js.end {
                Some((b.at(j + 1, k0), kc))
            } else if k0 + KC < k {
                Some((b.at(js.start, k0 + KC), KC.min(k - k0 - KC)))
            } else {
                None
            };
            let per_call = next.map_or(0, |(_, rows)| (rows * nr).div_ceil(blocks));
            for (bi, i) in (0..m).step_by(mr).enumerate() {
                if let Some((p, rows)) = next {
                    let (lo, hi) = (
                        (bi * per_call).min(rows * nr),
                        ((bi + 1) * per_call).min(rows * nr),
                    );
                    // SAFETY: lo..hi lies inside the next sub-panel (rows x nr floats of b).
                    prefetch_l2(unsafe { std::slice::from_raw_parts(p.add(lo), hi - lo) });
                }
                // SAFETY: the caller's contract bounds rows i..i+mr of A and C, columns
                // k0..k0+kc of A and the panel's rows k0..k0+kc.
                unsafe {
                    let ap = if COL {
                        a.add(k0 * lda + i)
                    } else {
                        a.add(i * lda + k0)
                    };
                    let cp = c.add(i * ldc + (j - js.start) * nr);
                    kernel::<COL>(isa, kc, ap, lda, bp, cp, ldc, k0 > 0, stream);
                }
            }
        }
    }
}

/// Rows of A one task of [`par_gemm`] multiplies: its A block stays in L2 while every panel
/// of B passes.
const PAR_ROWS: usize = 96;

/// [`gemm`] for large m on the global rayon pool: blocks of [`PAR_ROWS`] rows in parallel.
///
/// `a` holds m rows of `b`'s k floats spaced `lda` apart and `c` m rows of
/// `b.padded_cols()` floats spaced `ldc` apart; m must be a multiple of the ISA's MR.
///
/// # Panics
/// When the slices are too short, m is not a multiple of MR or `isa` does not run here.
pub(crate) fn par_gemm(
    isa: Isa,
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    c: &mut [f32],
    ldc: usize,
) {
    let (mr, _) = isa.mr_nr();
    assert!(m.is_multiple_of(mr), "rows must be a multiple of {mr}");
    assert!(Isa::available().contains(&isa), "{isa} does not run here");
    if m == 0 {
        return;
    }
    assert!(lda >= b.k && ldc >= b.padded_cols());
    assert!(a.len() >= (m - 1) * lda + b.k && c.len() >= m * ldc);
    c[..m * ldc]
        .par_chunks_mut(PAR_ROWS * ldc)
        .enumerate()
        .for_each(|(i, cb)| {
            let rows = PAR_ROWS.min(m - i * PAR_ROWS);
            // SAFETY: rows i*PAR_ROWS.. of A and C are inside the slices (asserted above);
            // rows is a multiple of MR since m and PAR_ROWS are; the ISA runs here
            // (asserted above).
            unsafe {
                let ap = a[i * PAR_ROWS * lda..].as_ptr();
                gemm(isa, rows, ap, lda, b, cb.as_mut_ptr(), ldc, None);
            }
        });
}

/// Asks for the cache lines of `data` to be brought into L2 (a hint; no-op off x86-64).
#[inline]
pub(super) fn prefetch_l2(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        // SAFETY: prefetching is a hint that never faults; the pointer is in bounds anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                line.as_ptr().cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// One MR x NR block: C (=, or += when `acc`) A (MR x k) . B panel (k x NR). A's element
/// (i, p) is at `a[i * lda + p]` (row-major), or at `a[p * lda + i]` when `COL` (column-major:
/// the transpose of a row-major matrix, read in place). With `stream` and not `acc`, C's
/// rows that are vector-aligned are written with non-temporal stores.
///
/// # Safety
/// As [`gemm`], for one block.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn kernel<const COL: bool>(
    isa: Isa,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    acc: bool,
    stream: bool,
) {
    // SAFETY: forwarded contract; an x86 ISA is only chosen where the CPU has it.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Amx => x86::kernel_avx512::<COL>(k, a, lda, b, c, ldc, acc, stream),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::kernel_avx2::<COL>(k, a, lda, b, c, ldc, acc, stream),
            _ => kernel_portable::<COL>(k, a, lda, b, c, ldc, acc),
        }
    }
}

/// 4 x 16 in plain Rust (auto-vectorised for the baseline target).
///
/// # Safety
/// As [`kernel`] with MR = 4, NR = 16.
unsafe fn kernel_portable<const COL: bool>(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    acc: bool,
) {
    const MR: usize = 4;
    const NR: usize = 16;
    let mut s = [[0f32; NR]; MR];
    // SAFETY: the caller's contract (MR rows of k floats in A, k x NR in B, MR x NR in C).
    unsafe {
        for p in 0..k {
            let bp = std::slice::from_raw_parts(b.add(p * NR), NR);
            for (i, si) in s.iter_mut().enumerate() {
                let x = if COL {
                    *a.add(p * lda + i)
                } else {
                    *a.add(i * lda + p)
                };
                for (sv, bv) in si.iter_mut().zip(bp) {
                    *sv += x * bv;
                }
            }
        }
        for (i, si) in s.iter().enumerate() {
            let cr = std::slice::from_raw_parts_mut(c.add(i * ldc), NR);
            for (cv, sv) in cr.iter_mut().zip(si) {
                *cv = if acc { *cv + sv } else { *sv };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 6 x 16: twelve ymm accumulators, two B loads and six broadcasts per step of k.
    ///
    /// # Safety
    /// As `gemm::kernel` with MR = 6, NR = 16, on a CPU with AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn kernel_avx2<const COL: bool>(
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        acc: bool,
        stream: bool,
    ) {
        const MR: usize = 6;
        let mut s = [[_mm256_setzero_ps(); 2]; MR];
        // SAFETY: the caller's contract bounds every pointer below.
        unsafe {
            if COL {
                for p in 0..k {
                    let b0 = _mm256_loadu_ps(b.add(p * 16));
                    let b1 = _mm256_loadu_ps(b.add(p * 16 + 8));
                    let ap = a.add(p * lda);
                    for (i, si) in s.iter_mut().enumerate() {
                        let x = _mm256_broadcast_ss(&*ap.add(i));
                        si[0] = _mm256_fmadd_ps(x, b0, si[0]);
                        si[1] = _mm256_fmadd_ps(x, b1, si[1]);
                    }
                }
            } else {
                let rows: [*const f32; MR] = std::array::from_fn(|i| a.add(i * lda));
                for p in 0..k {
                    let b0 = _mm256_loadu_ps(b.add(p * 16));
                    let b1 = _mm256_loadu_ps(b.add(p * 16 + 8));
                    for (si, row) in s.iter_mut().zip(rows) {
                        let x = _mm256_broadcast_ss(&*row.add(p));
                        si[0] = _mm256_fmadd_ps(x, b0, si[0]);
                        si[1] = _mm256_fmadd_ps(x, b1, si[1]);
                    }
                }
            }
            for (i, si) in s.iter().enumerate() {
                let cp = c.add(i * ldc);
                for (h, &v) in si.iter().enumerate() {
                    let p = cp.add(8 * h);
                    if acc {
                        _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), v));
                    } else if stream && (p as usize).is_multiple_of(32) {
                        _mm256_stream_ps(p, v);
                    } else {
                        _mm256_storeu_ps(p, v);
                    }
                }
            }
        }
    }

    /// 12 x 32: twenty-four zmm accumulators, two B loads and twelve broadcasts per step of k.
    ///
    /// # Safety
    /// As `gemm::kernel` with MR = 12, NR = 32, on a CPU with AVX-512F.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn kernel_avx512<const COL: bool>(
        k: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        acc: bool,
        stream: bool,
    ) {
        const MR: usize = 12;
        let mut s = [[_mm512_setzero_ps(); 2]; MR];
        // SAFETY: the caller's contract bounds every pointer below.
        unsafe {
            for p in 0..k {
                let b0 = _mm512_loadu_ps(b.add(p * 32));
                let b1 = _mm512_loadu_ps(b.add(p * 32 + 16));
                let ap = if COL { a.add(p * lda) } else { a.add(p) };
                for (i, si) in s.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(if COL { *ap.add(i) } else { *ap.add(i * lda) });
                    si[0] = _mm512_fmadd_ps(x, b0, si[0]);
                    si[1] = _mm512_fmadd_ps(x, b1, si[1]);
                }
            }
            for (i, si) in s.iter().enumerate() {
                let cp = c.add(i * ldc);
                for (h, &v) in si.iter().enumerate() {
                    let p = cp.add(16 * h);
                    if acc {
                        _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), v));
                    } else if stream && (p as usize).is_multiple_of(64) {
                        _mm512_stream_ps(p, v);
                    } else {
                        _mm512_storeu_ps(p, v);
                    }
                }
            }
        }
    }
}
