//! Deterministic, stable split assignment for flat data sets (`ROOT/CLASS/*`).
//!
//! Each file goes to a split by a hash of `(seed, relative path)` mapped to `[0, 1)` and
//! compared against the cumulative fractions (train, then validation, then test). So:
//! - the same files, spec and seed always give the same splits (deterministic);
//! - adding or removing other files never moves an existing file (stable): its split
//!   depends on nothing but its own path, the fractions and the seed;
//! - each class is split with the given fractions in expectation (stratified), but not
//!   exactly: counts follow a binomial law (for 1000 files and 0.15, 150 +- 11).
//!
//! A scheme exact per class must rank the files of a class, and then an added file shifts
//! the ranks and moves others across a boundary; stability was preferred.

use std::fmt;
use std::str::FromStr;

use convbase_format::Split;
use sha2::{Digest, Sha256};

/// Fractions of each split, e.g. `train=0.7,validation=0.15,test=0.15`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitSpec {
    pub train: f64,
    pub validation: f64,
    pub test: f64,
}

impl SplitSpec {
    /// Fraction of a split.
    pub fn fraction(&self, split: Split) -> f64 {
        match split {
            Split::Train => self.train,
            Split::Validation => self.validation,
            Split::Test => self.test,
        }
    }

    /// Splits that receive files (fraction above zero).
    pub fn active(&self) -> Vec<Split> {
        Split::ALL
            .into_iter()
            .filter(|&s| self.fraction(s) > 0.0)
            .collect()
    }

    /// The split of the file at `rel_path` (relative to the data set root, `/`-separated).
    pub fn assign(&self, seed: u64, rel_path: &[u8]) -> Split {
        let u = unit_hash(seed, rel_path);
        if u < self.train {
            Split::Train
        } else if u < self.train + self.validation || self.test == 0.0 {
            Split::Validation
        } else {
            Split::Test
        }
    }
}

/// A uniform value in `[0, 1)` from SHA-256 of the seed (8 bytes little-endian) and path.
fn unit_hash(seed: u64, rel_path: &[u8]) -> f64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(rel_path);
    let digest = h.finalize();
    let top = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    // 53 bits: every value exactly representable, strictly below 1.
    (top >> 11) as f64 / (1u64 << 53) as f64
}

impl fmt::Display for SplitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "train={},validation={},test={}",
            self.train, self.validation, self.test
        )
    }
}

impl FromStr for SplitSpec {
    type Err = String;
    /// `NAME=FRACTION` pairs separated by commas; names as [`Split`] accepts (`val` too);
    /// a missing split gets 0; fractions must sum to 1 and train must be above 0.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut spec = SplitSpec {
            train: 0.0,
            validation: 0.0,
            test: 0.0,
        };
        let mut seen = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected NAME=FRACTION"))?;
            let split: Split = name.trim().parse()?;
            if seen.contains(&split) {
                return Err(format!("split `{split}` given twice"));
            }
            seen.push(split);
            let v: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: fraction is not a number"))?;
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("`{part}`: fraction must be between 0 and 1"));
            }
            match split {
                Split::Train => spec.train = v,
                Split::Validation => spec.validation = v,
                Split::Test => spec.test = v,
            }
        }
        let sum = spec.train + spec.validation + spec.test;
        if (sum - 1.0).abs() > 1e-6 {
            return Err(format!("fractions sum to {sum}, expected 1"));
        }
        if spec.train <= 0.0 {
            return Err("train needs a fraction above 0".into());
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let s: SplitSpec = "train=0.7,val=0.15,test=0.15".parse().unwrap();
        assert_eq!(s.active(), Split::ALL.to_vec());
        let s: SplitSpec = "train=0.8,validation=0.2".parse().unwrap();
        assert_eq!(s.active(), vec![Split::Train, Split::Validation]);
        for bad in [
            "train=0.7,validation=0.2",
            "train=0.5,train=0.5",
            "train=x,validation=1",
            "train=0,validation=1",
            "train=1.5,validation=-0.5",
            "training=1",
            "train",
        ] {
            assert!(bad.parse::<SplitSpec>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn fractions_hold_in_expectation_and_seed_matters() {
        let s: SplitSpec = "train=0.7,validation=0.15,test=0.15".parse().unwrap();
        let n = 20_000;
        let count = |seed: u64, want: Split| {
            (0..n)
                .filter(|i| s.assign(seed, format!("c/{i}.png").as_bytes()) == want)
                .count() as f64
                / n as f64
        };
        assert!((count(1, Split::Train) - 0.7).abs() < 0.015);
        assert!((count(1, Split::Validation) - 0.15).abs() < 0.015);
        assert!((count(1, Split::Test) - 0.15).abs() < 0.015);
        let differ = (0..200)
            .filter(|i| {
                let p = format!("c/{i}.png");
                s.assign(1, p.as_bytes()) != s.assign(2, p.as_bytes())
            })
            .count();
        assert!(differ > 50, "seed barely changes the split ({differ}/200)");
    }
}
