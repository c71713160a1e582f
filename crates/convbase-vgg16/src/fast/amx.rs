//! The Winograd-domain GEMMs on Intel AMX tiles, at f32 accuracy from bf16 products.
//!
//! An AMX-BF16 tile multiply (`tdpbf16ps`) does 16 x 16 x 32 multiply-adds of bf16 pairs into
//! f32 in the time AVX-512 does about 1/16 as many in f32. bf16 keeps 8 significant bits, far
//! too few alone (the goldens allow 1e-4 of the output's scale; one bf16 rounding is up to
//! 2e-3). So each f32 value is split into three bf16 parts, x = x0 + x1 + x2 (each the rounded
//! residual of the ones before: 24 significant bits in all, what an f32 holds), and the product
//! keeps the six terms larger than 2^-24 of the whole: a0 b0 + a0 b1 + a1 b0 + a0 b2 + a1 b1 +
//! a2 b0. The bf16 products are exact in f32 and `tdpbf16ps` accumulates in f32, so the result
//! rounds like an f32 GEMM over six times the depth ("bf16x6"; bf16x3, the first three terms
//! only, is about 2^-16 accurate: 1.1e-5 of sum |a b| in the unit test below, which bounds
//! bf16x6 at 1e-6 and measures 1e-7).
//!
//! Six tile products per f32 product leave the tiles well short of the raw bf16 rate's 16x:
//! the loads of each step of depth wait for A and B from L2 and L3, and each 32 x 32 block
//! drains the pipeline to store C. Per layer (`benches/layers.rs`, see [`MIN_DEPTH`]) the
//! 256-512 channel convs run 1.3-1.5x faster than with the AVX-512 kernel.
//!
//! Layout: tiles of 16 rows x 64 bytes. A (m x k) is packed per call into row tiles of 16 rows
//! x 32 depths; B (k x n, the transformed weights) once at model load into column tiles of 16
//! columns, whose rows hold depth pairs (`tdpbf16ps`' "VNNI" order: row p holds depths 2p and
//! 2p+1 of each column side by side). Depth is zero-padded to a multiple of 32 and columns to
//! a multiple of 32 (the kernel computes 32 x 32 blocks of C in four tile accumulators).

use std::cell::RefCell;
use std::sync::OnceLock;

/// bf16 parts per f32 value.
const PARTS: usize = 3;
/// Depths per tile (32 bf16 in a 64-byte tile row).
const KT: usize = 32;
/// Rows (of A and C) and columns (of B and C) per tile.
const T: usize = 16;
/// Rows and columns of the C block one kernel call computes (2 x 2 tiles).
pub(crate) const BLOCK: usize = 32;
/// Input channels from which the Winograd GEMMs run on tiles. Below, the AVX-512 kernel is
/// faster: with 64 channels A's split costs a quarter of the product (each value feeds only 64
/// columns), and two depth chunks per C block leave the tile pipeline filling and draining.
/// `benches/layers.rs` on a Xeon (2 cores): 64 channels 710-760 "GFLOP/s" on tiles against
/// 950-1040 with AVX-512, 128 about even (1090 against 1100), 256-512 1300-1500 against 960-1140.
pub(crate) const MIN_DEPTH: usize = 128;

/// u16 values in one tile (16 x 64 bytes).
const TILE_U16: usize = T * KT;

/// Where tile (row or column tile t, depth chunk q, part s) of a packed matrix starts, in
/// tiles: the two tiles of a pair (rows or columns 32p.. of C's block) side by side, then parts,
/// then chunks, so that one step of the kernel reads 6 KB in one piece.
const fn tile_index(t: usize, chunks: usize, q: usize, s: usize) -> usize {
    ((t / 2 * chunks + q) * PARTS + s) * 2 + t % 2
}

/// One 64-byte tile row; a `Vec` of them is cache-line aligned.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([u16; KT]);

/// Whether this CPU and OS run AMX-BF16 tiles (with AVX-512F for the packing): the CPU flags,
/// and Linux's permission to use the tile state, asked for once per process.
pub(crate) fn usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            is_x86_feature_detected!("avx512f")
                && x86::cpu_has_amx_bf16()
                && x86::request_tile_permission()
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        false
    })
}

/// x rounded to the nearest bf16 (ties to even), as its 16 bits.
fn bf16(x: f32) -> u16 {
    let b = x.to_bits();
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The three bf16 parts of x: each the rounding of what the ones before left.
fn split(x: f32) -> [u16; PARTS] {
    let mut rest = x;
    std::array::from_fn(|_| {
        let p = bf16(rest);
        rest -= f32::from_bits(u32::from(p) << 16);
        p
    })
}

/// B (k x n) in bf16 parts, packed for the tile kernel: tile (column tile j, depth chunk q,
/// part s) is 16 lines at `tile_index(j, chunks, q, s) * 16`.
#[derive(Clone)]
pub(crate) struct PackedB {
    lines: Vec<Line>,
    k: usize,
    chunks: usize,
    col_tiles: usize,
}

impl PackedB {
    /// Packs B given element-wise by `get(row, col)`.
    pub fn new(k: usize, n: usize, get: impl Fn(usize, usize) -> f32) -> Self {
        let chunks = k.div_ceil(KT);
        let col_tiles = n.div_ceil(BLOCK) * (BLOCK / T);
        let mut lines = vec![Line::default(); col_tiles * chunks * PARTS * T];
        for col in 0..n {
            let (j, l) = (col / T, col % T);
            for row in 0..k {
                let (q, d) = (row / KT, row % KT);
                for (s, part) in split(get(row, col)).into_iter().enumerate() {
                    let tile = tile_index(j, chunks, q, s) * T;
                    lines[tile + d / 2].0[2 * l + d % 2] = part;
                }
            }
        }
        Self {
            lines,
            k,
            chunks,
            col_tiles,
        }
    }

    /// Columns including the zero padding: the row width C needs.
    pub fn padded_cols(&self) -> usize {
        self.col_tiles * T
    }
}

thread_local! {
    /// Per-thread packed A, reused by every call on this thread.
    static PACKED_A: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

/// C (m x `b.padded_cols()`, row stride `ldc`) = A (m x k, row stride `lda`) . B, with A's f32
/// rows split into bf16 parts on the way; `then` is the B of the caller's next product, whose
/// first column pair is prefetched during the last one.
///
/// # Safety
/// `m` is a multiple of [`BLOCK`]; `a` points at m rows of `b`'s k floats spaced `lda` apart,
/// `c` at m rows of `b.padded_cols()` floats spaced `ldc` apart; [`usable`] returned true.
pub(crate) unsafe fn gemm(
    m: usize,
    a: *const f32,
    lda: usize,
    b: &PackedB,
    then: Option<&PackedB>,
    c: *mut f32,
    ldc: usize,
) {
    debug_assert!(m.is_multiple_of(BLOCK));
    let (k, chunks) = (b.k, b.chunks);
    let row_tiles = m / T;
    PACKED_A.with(|p| {
        let mut p = p.borrow_mut();
        let need = row_tiles * chunks * PARTS * T;
        if p.len() < need {
            p.resize(need, Line::default());
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller's contract bounds A and C; `p` holds the packed A's tiles; AMX
        // and AVX-512F run here.
        unsafe {
            x86::pack_a(m, k, a, lda, chunks, p.as_mut_ptr().cast());
            x86::multiply(row_tiles, chunks, p.as_ptr().cast(), b, then, c, ldc);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (k, a, lda, then, c, ldc);
    });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;
    use std::arch::x86_64::*;

    use super::{BLOCK, KT, PARTS, PackedB, T, TILE_U16, tile_index};

    /// AMX-TILE and AMX-BF16 in CPUID leaf 7 (`is_x86_feature_detected!` names them only on
    /// nightly Rust).
    pub(super) fn cpu_has_amx_bf16() -> bool {
        // Leaf 7 is valid when the maximum leaf (leaf 0's EAX) reaches it.
        let edx = (__cpuid(0).eax >= 7).then(|| __cpuid_count(7, 0).edx);
        edx.is_some_and(|d| d & (1 << 22) != 0 && d & (1 << 24) != 0)
    }

    /// Asks Linux for the AMX tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`):
    /// without it the first tile instruction faults.
    #[cfg(target_os = "linux")]
    pub(super) fn request_tile_permission() -> bool {
        const SYS_ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: a system call that only changes this process's permissions; the registers
        // the syscall instruction clobbers are declared.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret == 0
    }

    /// The four tile products of one part pair: C tiles 0-3 += A tiles 4-5 x B tiles 6-7.
    macro_rules! products {
        () => {
            concat!(
                "tdpbf16ps tmm0, tmm4, tmm6\n",
                "tdpbf16ps tmm1, tmm4, tmm7\n",
                "tdpbf16ps tmm2, tmm5, tmm6\n",
                "tdpbf16ps tmm3, tmm5, tmm7",
            )
        };
    }

    /// Palette 1, eight tiles of 16 rows x 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    const CONFIG: TileConfig = TileConfig {
        palette: 1,
        start_row: 0,
        reserved: [0; 14],
        colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
        rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
    };

    /// Splits A's rows into bf16 parts in tile order: tile (row tile r, chunk q, part s) at
    /// `out + tile_index(r, chunks, q, s) * TILE_U16`, depths past k zero.
    ///
    /// # Safety
    /// `a` holds m rows of k floats spaced `lda` apart, `out` room for m / 16 x chunks x PARTS
    /// tiles; AVX-512F runs here.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pack_a(
        m: usize,
        k: usize,
        a: *const f32,
        lda: usize,
        chunks: usize,
        out: *mut u16,
    ) {
        let round = |x: __m512| {
            // Round to nearest even bf16, kept as the f32 it stands for.
            let b = _mm512_castps_si512(x);
            let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
            let r = _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
            _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32(-65536)))
        };
        let to_u16 =
            |x: __m512| _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(_mm512_castps_si512(x)));
        for i in 0..m {
            let (rt, line) = (i / T, i % T);
            for q in 0..chunks {
                let k0 = q * KT;
                let mask = |from: usize| -> __mmask16 {
                    let n = k.saturating_sub(from).min(16);
                    ((1u32 << n) - 1) as u16
                };
                // SAFETY: masked loads read only depths below k of row i.
                let mut x = unsafe {
                    let row = a.add(i * lda + k0);
                    [
                        _mm512_maskz_loadu_ps(mask(k0), row),
                        _mm512_maskz_loadu_ps(mask(k0 + 16), row.add(16)),
                    ]
                };
                for s in 0..PARTS {
                    let p = [round(x[0]), round(x[1])];
                    // SAFETY: line `line` of tile (rt, q, s) is inside `out`.
                    unsafe {
                        let dst = out.add(tile_index(rt, chunks, q, s) * TILE_U16 + line * KT);
                        _mm256_storeu_si256(dst.cast(), to_u16(p[0]));
                        _mm256_storeu_si256(dst.add(16).cast(), to_u16(p[1]));
                    }
                    x = [_mm512_sub_ps(x[0], p[0]), _mm512_sub_ps(x[1], p[1])];
                }
            }
        }
    }

    /// C = packed A . B, 32 x 32 blocks of C in tiles 0-3, A's tiles in 4-5, B's in 6-7.
    ///
    /// # Safety
    /// `a` holds `row_tiles` (even) x `b.chunks` x PARTS tiles from [`pack_a`]; `c` m rows of
    /// `b.padded_cols()` floats spaced `ldc` apart; AMX-BF16 runs here and this process may use
    /// the tile state.
    pub(super) unsafe fn multiply(
        row_tiles: usize,
        chunks: usize,
        a: *const u16,
        b: &PackedB,
        then: Option<&PackedB>,
        c: *mut f32,
        ldc: usize,
    ) {
        const STRIDE: usize = 64;
        let bp = b.lines.as_ptr().cast::<u16>();
        let pair_len = 2 * chunks * PARTS * TILE_U16; // u16 of one row or column pair
        // SAFETY (whole body): every tile address below is inside the packed A or B (row
        // tiles r, r+1 < row_tiles, column tiles j, j+1 < b.col_tiles, chunk q < chunks),
        // and every C tile inside C's m x padded_cols rows; the tile registers are ours
        // between the config load and the release.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
            let steps = row_tiles / 2 * chunks;
            let prefetch_per_step = pair_len.div_ceil(steps).next_multiple_of(32);
            for j in (0..b.col_tiles).step_by(BLOCK / T) {
                let (next, next_len) = if j + 2 < b.col_tiles {
                    (bp.add((j + 2) / 2 * pair_len), pair_len)
                } else if let Some(t) = then {
                    let tp = t.lines.as_ptr().cast::<u16>();
                    (
                        tp,
                        (2 * t.chunks * PARTS * TILE_U16).min(t.lines.len() * KT),
                    )
                } else {
                    (bp, 0)
                };
                for r in (0..row_tiles).step_by(BLOCK / T) {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nostack, nomem)
                    );
                    for q in 0..chunks {
                        let a0 = a.add(tile_index(r, chunks, q, 0) * TILE_U16);
                        let b0 = bp.add(tile_index(j, chunks, q, 0) * TILE_U16);
                        // The next column pair's B (or the caller's next B), a slice per step
                        // into L2: B streams from L3 and tile loads wait for it otherwise.
                        let step = (r / 2) * chunks + q;
                        let from = step * prefetch_per_step;
                        if from < next_len {
                            let line = next.add(from);
                            for l in (0..prefetch_per_step.min(next_len - from)).step_by(32) {
                                _mm_prefetch::<_MM_HINT_T1>(line.add(l).cast());
                            }
                        }
                        // Six products of parts (a_s, b_t), s + t <= 2, smallest first, in an
                        // order that reloads two tiles between products where it can.
                        asm!(
                            // a1 b1
                            "tileloadd tmm4, [{a0} + {s} + 2048]",
                            "tileloadd tmm5, [{a0} + {s} + 3072]",
                            "tileloadd tmm6, [{b0} + {s} + 2048]",
                            "tileloadd tmm7, [{b0} + {s} + 3072]",
                            products!(),
                            // a1 b0
                            "tileloadd tmm6, [{b0} + {s}]",
                            "tileloadd tmm7, [{b0} + {s} + 1024]",
                            products!(),
                            // a2 b0
                            "tileloadd tmm4, [{a0} + {s} + 4096]",
                            "tileloadd tmm5, [{a0} + {s} + 5120]",
                            products!(),
                            // a0 b0
                            "tileloadd tmm4, [{a0} + {s}]",
                            "tileloadd tmm5, [{a0} + {s} + 1024]",
                            products!(),
                            // a0 b1
                            "tileloadd tmm6, [{b0} + {s} + 2048]",
                            "tileloadd tmm7, [{b0} + {s} + 3072]",
                            products!(),
                            // a0 b2
                            "tileloadd tmm6, [{b0} + {s} + 4096]",
                            "tileloadd tmm7, [{b0} + {s} + 5120]",
                            products!(),
                            a0 = in(reg) a0,
                            b0 = in(reg) b0,
                            s = in(reg) STRIDE,
                            options(nostack, readonly),
                        );
                    }
                    let c0 = c.add(r * T * ldc + j * T);
                    asm!(
                        "tilestored [{c0} + {s}], tmm0",
                        "tilestored [{c0} + {s} + 64], tmm1",
                        "tilestored [{c1} + {s}], tmm2",
                        "tilestored [{c1} + {s} + 64], tmm3",
                        c0 = in(reg) c0,
                        c1 = in(reg) c0.add(T * ldc),
                        s = in(reg) ldc * 4,
                        options(nostack),
                    );
                }
            }
            asm!("tilerelease", options(nostack, nomem));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_parts_hold_an_f32() {
        for x in [1.0f32, -3.7, 1e-20, 123_456.79, 0.1, -0.333_333_34, 7.0e30] {
            let s: f64 = split(x)
                .iter()
                .map(|&p| f64::from(f32::from_bits(u32::from(p) << 16)))
                .sum();
            assert_eq!(s, f64::from(x), "{x}");
        }
    }

    /// The product against f64 on shapes that pad every dimension (depth and width to 32, with
    /// rows spaced wider than the depth), as an f32 GEMM would: within a few f32 roundings of
    /// sum |a b| per element. Dropping the three smallest terms (bf16x3) fails it.
    #[test]
    fn tile_product_matches_f64() {
        if !usable() {
            eprintln!("no AMX-BF16 here: the tile product is not tested");
            return;
        }
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        for (m, k, n) in [
            (32usize, 1usize, 1usize),
            (64, 45, 40),
            (32, 130, 70),
            (96, 300, 33),
        ] {
            let (lda, ldc) = (k + 5, n.next_multiple_of(BLOCK) + 16);
            let a: Vec<f32> = (0..m * lda).map(|_| next() * 3.0).collect();
            let bm: Vec<f32> = (0..k * n).map(|_| next()).collect();
            let b = PackedB::new(k, n, |r, c| bm[r * n + c]);
            let mut c = vec![f32::NAN; m * ldc];
            // SAFETY: m is a multiple of 32, A holds m rows of lda >= k floats, C m rows of
            // ldc >= padded_cols floats; AMX runs here (checked above).
            unsafe { gemm(m, a.as_ptr(), lda, &b, None, c.as_mut_ptr(), ldc) };
            let mut worst = 0f64;
            for i in 0..m {
                for j in 0..n {
                    let (mut want, mut mag) = (0f64, 0f64);
                    for p in 0..k {
                        let t = f64::from(a[i * lda + p]) * f64::from(bm[p * n + j]);
                        want += t;
                        mag += t.abs();
                    }
                    let err = (f64::from(c[i * ldc + j]) - want).abs() / mag.max(1e-30);
                    worst = worst.max(err);
                }
            }
            eprintln!("{m}x{k}x{n}: {worst:.2e}");
            assert!(worst < 1e-6, "{m}x{k}x{n}: error {worst:.3e} of sum |a b|");
        }
    }
}
