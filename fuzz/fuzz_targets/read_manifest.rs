//! Any bytes as `manifest.parquet`: `Manifest::read` returns a consistent manifest or an
//! error, never panics.
#![no_main]

use convbase_format::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: convbase_fuzz::crash_only_on_escaped_panics(), |data: &[u8]| {
    if let Ok(m) = Manifest::read(convbase_fuzz::as_file(data)) {
        for r in &m.rows {
            assert_eq!(m.meta.classes.get(r.label as usize), Some(&r.class));
        }
    }
});
