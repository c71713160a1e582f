//! Any bytes as `predictions.parquet`: `Predictions::read` returns rows with one
//! probability per class, or an error, never panics.
#![no_main]

use convbase_format::Predictions;
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: convbase_fuzz::crash_only_on_escaped_panics(), |data: &[u8]| {
    if let Ok(p) = Predictions::read(convbase_fuzz::as_file(data)) {
        assert!(
            p.rows
                .iter()
                .all(|r| r.probabilities.len() == p.classes.len())
        );
    }
});
