//! Files found by `scripts/fuzz.sh` that made a reader panic inside parquet 60 (a negative
//! column chunk offset; a dictionary-encoded page without its dictionary) or run for
//! minutes (a page header whose unknown field parquet skips past the end of the file; a
//! footer whose unknown field is a list of 2^31 booleans) or reserve gigabytes (a schema
//! element declaring 2^30 children). Each must be refused with an error that names the
//! file, as input rejected (exit code 3).

use std::path::{Path, PathBuf};

use convbase_format::{
    FeatureBatch, FeatureProvenance, Features, FeaturesFile, FeaturesWriter, FormatError, Manifest,
    Predictions, Split, read_features_meta,
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

/// A small valid features file.
fn features_file(path: &Path) {
    let provenance = FeatureProvenance {
        weights_sha256: "00".repeat(32),
        weights_source: "test".into(),
        layer: "block5_pool".into(),
        input_size: 32,
        resize_filter: "nearest".into(),
        preprocess: "rescale".into(),
        pool: "avg".into(),
        feature_shape: vec![1, 1, 2],
        flatten_order: "hwc".into(),
        augment: "none".into(),
        views: 0,
        manifest_sha256: "11".repeat(32),
        classes: vec!["a".into(), "b".into()],
        dataset_root: "/data".into(),
    };
    let mut w = FeaturesWriter::create(path, &provenance).unwrap();
    w.write(&FeatureBatch {
        paths: vec!["a/x.png".into()],
        sha256: vec!["aa".repeat(32)],
        labels: vec![0],
        splits: vec![Split::Train],
        views: vec![0],
        values: vec![1.0, 2.0],
    })
    .unwrap();
    w.finish().unwrap();
}

/// The footer's `FileMetaData` with one more field, unknown to parquet (id 100): a list of
/// 2^31 - 1 booleans in 9 bytes. parquet 60 skips a boolean element without reading a
/// byte, so it looped 2^31 times (the `read_features` target's timeout, rebuilt here from
/// a valid file); the footer is now refused before parquet parses it.
#[test]
fn a_footer_with_a_list_of_2_to_the_31_booleans_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("features.parquet");
    features_file(&path);
    Features::read(&path).unwrap();
    edit_footer(&path, |meta| {
        let stop = meta.len() - 1;
        assert_eq!(meta[stop], 0, "FileMetaData ends with its stop byte");
        let field = [0x09, 0xC8, 0x01, 0xF1, 0xFF, 0xFF, 0xFF, 0xFF, 0x07];
        meta.splice(stop..stop, field);
    });

    let start = std::time::Instant::now();
    for err in [
        Features::read(&path).map(|_| ()).unwrap_err(),
        FeaturesFile::open(&path).map(|_| ()).unwrap_err(),
        read_features_meta(&path).map(|_| ()).unwrap_err(),
    ] {
        refused_as(&path, Err::<(), _>(err), "a list of 2147483647 booleans");
    }
    let took = start.elapsed();
    assert!(took.as_secs() < 10, "took {took:?}");
}

/// Rewrites the footer's `FileMetaData` of `path`: `edit` changes its bytes.
fn edit_footer(path: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    let meta_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
    let mut meta = bytes[n - 8 - meta_len..n - 8].to_vec();
    edit(&mut meta);
    let mut out = bytes[..n - 8 - meta_len].to_vec();
    out.extend_from_slice(&meta);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(b"PAR1");
    std::fs::write(path, out).unwrap();
}

/// The schema's root (`arrow_schema`, 6 columns) declaring 2^30 children: parquet 60
/// reserved room for them (8 GiB) before reading any (the `read_features` target's
/// out-of-memory input, rebuilt here from a valid file). Refused before parquet parses it.
#[test]
fn a_schema_root_declaring_2_to_the_30_children_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("features.parquet");
    features_file(&path);
    edit_footer(&path, |meta| {
        // name (field 4): "arrow_schema", then num_children (field 5, zigzag varint): 6.
        let root = b"\x48\x0carrow_schema\x15\x0c";
        let at = meta
            .windows(root.len())
            .position(|w| w == root)
            .expect("the root schema element");
        let children = 1u64 << 31; // zigzag of 2^30
        let mut varint = Vec::new();
        let mut v = children;
        while v >= 0x80 {
            varint.push(v as u8 | 0x80);
            v >>= 7;
        }
        varint.push(v as u8);
        let end = at + root.len();
        meta.splice(end - 1..end, varint);
    });
    for err in [
        Features::read(&path).map(|_| ()).unwrap_err(),
        read_features_meta(&path).map(|_| ()).unwrap_err(),
    ] {
        refused_as(
            &path,
            Err::<(), _>(err),
            "1073741824 children in a schema of",
        );
    }
    // The fuzz input itself: a leaf declaring -16106127360 children, which parquet reads
    // as the i32 2^30.
    let found = input("features-schema-element-2-to-the-30-children.parquet");
    refused_as(
        &found,
        Features::read(&found),
        "1073741824 children in a schema of 9 elements",
    );
}
