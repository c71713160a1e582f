//! Which instruction set the CPU kernels run on, chosen at run time.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;

/// Environment variable that caps the instruction set (`amx`, `avx512`, `avx2` or `portable`),
/// e.g. to measure the AVX2 kernels on a CPU that also has AVX-512.
pub const ISA_ENV: &str = "CONVBASE_ISA";

/// The kernels' instruction set. Ordered from the most portable to the widest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, auto-vectorised for the build's baseline target (SSE2 on x86-64).
    Portable,
    /// 256-bit AVX2 + FMA: 6x16 GEMM micro-kernel.
    Avx2,
    /// 512-bit AVX-512F: 12x32 GEMM micro-kernel.
    Avx512,
    /// AVX-512F, and Intel AMX-BF16 tiles for the inference Winograd GEMMs (f32 accuracy
    /// from six bf16 tile products, see `amx.rs`); everything else as `Avx512`.
    Amx,
}

impl Isa {
    /// The widest instruction set this CPU runs, capped by `CONVBASE_ISA` when set.
    ///
    /// # Panics
    /// When `CONVBASE_ISA` holds an unknown name (a typo would otherwise measure the wrong thing).
    pub fn detect() -> Self {
        let best = Self::available()
            .into_iter()
            .max()
            .unwrap_or(Self::Portable);
        match std::env::var(ISA_ENV) {
            Ok(v) => {
                let cap: Isa = v.parse().unwrap_or_else(|e| panic!("{ISA_ENV}: {e}"));
                best.min(cap)
            }
            Err(_) => best,
        }
    }

    /// Every instruction set this CPU runs (always includes `Portable`).
    pub fn available() -> Vec<Self> {
        let mut v = vec![Self::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Self::Avx2);
            }
            if is_x86_feature_detected!("avx512f") {
                v.push(Self::Avx512);
            }
            if super::amx::usable() {
                v.push(Self::Amx);
            }
        }
        v
    }

    /// Rows (tiles or pixels) and columns (output channels) of the GEMM micro-kernel.
    pub(crate) fn mr_nr(self) -> (usize, usize) {
        match self {
            Self::Portable => (4, 16),
            Self::Avx2 => (6, 16),
            Self::Avx512 | Self::Amx => (12, 32),
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Portable => "portable",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
            Self::Amx => "amx",
        })
    }
}

impl FromStr for Isa {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "portable" => Ok(Self::Portable),
            "avx2" => Ok(Self::Avx2),
            "avx512" => Ok(Self::Avx512),
            "amx" => Ok(Self::Amx),
            _ => Err(ParseError {
                what: "instruction set",
                got: s.to_string(),
                expected: "amx, avx512, avx2, portable".into(),
            }),
        }
    }
}
