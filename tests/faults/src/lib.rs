//! The fault suite of convbase: proof that nothing is lost or silently wrong when a stage is
//! killed, fed bad images, bad contract or weights files, or run twice at once.
//!
//! The tests in `tests/` spawn the real release binaries (`convbase-prepare`,
//! `convbase-extract`, `convbase-head-dense`) on the demo data, the real weights and inputs
//! made in temporary directories; this library holds what they share: finding fresh
//! binaries ([`bins`]), running and killing processes ([`proc`]), the kill harness
//! ([`kill`]), fixtures ([`fixtures`], [`png`]) and exact comparisons of outputs
//! ([`compare`]).
//!
//! By default the short variant runs (bounded for CI); `CONVBASE_FAULTS_LONG=1` runs the
//! long one (more images, more kills). `CONVBASE_FAULTS_SEED=N` repeats a kill sequence.

pub mod bins;
pub mod compare;
pub mod fixtures;
pub mod kill;
pub mod png;
pub mod proc;

/// True when the long variant is asked for (`CONVBASE_FAULTS_LONG=1`).
pub fn long() -> bool {
    std::env::var("CONVBASE_FAULTS_LONG").is_ok_and(|v| !v.is_empty() && v != "0")
}
