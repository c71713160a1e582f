//! Files found by `scripts/fuzz.sh` that made a reader panic inside parquet 60 (a negative
//! column chunk offset; a dictionary-encoded page without its dictionary) or run for
//! minutes (a page header whose unknown field parquet skips past the end of the file). Each
//! must be refused with an error that names the file, as input rejected (exit code 3).

use std::path::{Path, PathBuf};

use convbase_format::{
    Features, FeaturesFile, FormatError, Manifest, Predictions, read_features_meta,
};

fn input(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(name)
}

fn refused<T: std::fmt::Debug>(path: &Path, result: Result<T, FormatError>) {
    let err = result.expect_err("a malformed file was accepted");
    assert!(err.is_input_rejected(), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("malformed Parquet file"), "{err}");
}

#[test]
fn negative_column_chunk_offsets_are_refused() {
    let features = input("features-negative-column-offset.parquet");
    refused(&features, Features::read(&features));
    refused(&features, read_features_meta(&features));
    refused(&features, FeaturesFile::open(&features));
    let predictions = input("predictions-negative-column-offset.parquet");
    refused(&predictions, Predictions::read(&predictions));
}

#[test]
fn a_dictionary_page_that_is_missing_is_refused() {
    let manifest = input("manifest-dictionary-page-missing.parquet");
    refused(&manifest, Manifest::read(&manifest));
    // Reached one row group at a time, as the extraction cache reads features.
    let features = input("features-dictionary-page-missing.parquet");
    let file = FeaturesFile::open(&features).unwrap();
    let groups: Vec<_> = (0..file.num_row_groups())
        .map(|g| (file.keys(g), file.row_group(g)))
        .collect();
    assert!(
        groups.iter().any(|(k, r)| k.is_err() || r.is_err()),
        "every row group read"
    );
    for (keys, rows) in groups {
        for err in [keys.err(), rows.err()].into_iter().flatten() {
            assert!(
                err.is_input_rejected()
                    && err.to_string().contains(&features.display().to_string()),
                "{err}"
            );
        }
    }
}

/// A page header with an unknown field declaring a list of some 2^31 strings: parquet 60
/// skips them one by one, and each skip ended quietly at the end of the file (a 4.6 kB file
/// kept the reader of a row group's keys busy for minutes; found by the `read_features`
/// target as a timeout). Reading past the end of the file is now an error, so the file is
/// refused at once, whichever way it is read.
#[test]
fn a_page_header_skipping_past_the_end_of_the_file_is_refused_at_once() {
    let features = input("features-page-header-skips-past-the-end.parquet");
    let start = std::time::Instant::now();
    refused_as(&features, Features::read(&features), "");
    let file = FeaturesFile::open(&features).unwrap();
    let mut past_end = 0;
    for g in 0..file.num_row_groups() {
        for err in [file.keys(g).err(), file.row_group(g).err()]
            .into_iter()
            .flatten()
        {
            eprintln!("row group {g}: {err}");
            refused_as(&features, Err::<(), _>(err), "");
        }
        if let Err(e) = file.keys(g)
            && e.to_string().contains("past the end of the file")
        {
            past_end += 1;
        }
    }
    let took = start.elapsed();
    assert!(past_end > 0, "the keys of some row group read past the end");
    assert!(took.as_secs() < 10, "took {took:?}");
}

fn refused_as<T: std::fmt::Debug>(path: &Path, result: Result<T, FormatError>, words: &str) {
    let err = result.expect_err("a malformed file was accepted");
    assert!(err.is_input_rejected(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains(words),
        "{err}"
    );
}
