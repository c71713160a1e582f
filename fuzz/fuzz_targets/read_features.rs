//! Any bytes as `features.parquet`, through every reader of it: `Features::read`,
//! `read_features_meta` and `FeaturesFile` (footer, keys and rows of each row group). Each
//! returns consistent rows or an error, never panics.
#![no_main]

use convbase_format::{FeatureBatch, Features, FeaturesFile, Split, read_features_meta};
use libfuzzer_sys::fuzz_target;

fn check(rows: &FeatureBatch, dim: usize, classes: usize) {
    let n = rows.len();
    assert_eq!(rows.values.len(), n * dim);
    assert!(rows.sha256.len() == n && rows.labels.len() == n);
    assert!(rows.splits.len() == n && rows.views.len() == n);
    assert!(
        rows.labels
            .iter()
            .all(|&l| l >= 0 && (l as usize) < classes)
    );
}

fuzz_target!(init: convbase_fuzz::crash_only_on_escaped_panics(), |data: &[u8]| {
    let path = convbase_fuzz::as_file(data);
    if let Ok(f) = Features::read(path) {
        check(&f.rows, f.dim, f.provenance.classes.len());
        assert_eq!(f.dim, f.provenance.dim());
        let _ = f.split(Split::Train);
    }
    let _ = read_features_meta(path);
    if let Ok(file) = FeaturesFile::open(path) {
        for g in 0..file.num_row_groups() {
            if let Ok(keys) = file.keys(g)
                && let Ok(rows) = file.row_group(g)
            {
                assert_eq!(keys.len(), rows.len());
                check(&rows, file.dim, file.provenance.classes.len());
            }
        }
    }
});
