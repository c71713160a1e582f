//! `manifest.parquet`: every file `convbase-prepare` found, usable or not.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, UInt32Type, UInt64Type};

use crate::error::{FormatError, Result};
use crate::meta::{self, Columns, FileKind, Footer};
use crate::split::Split;

/// The `status` of a usable image. Anything else is the reason a file cannot be used.
pub const STATUS_OK: &str = "ok";

const KEY_CLASSES: &str = "convbase.classes";
const KEY_ROOT: &str = "convbase.root";
const KEY_LAYOUT: &str = "convbase.layout";

/// One file found under the data set root.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRow {
    /// Path relative to the data set root, `/`-separated (lossy for non-UTF-8 names).
    pub path: String,
    /// Class name (the folder the file is in).
    pub class: String,
    /// Class id: the index of `class` in the sorted class list.
    pub label: i32,
    pub split: Split,
    /// Hex SHA-256 of the file's bytes; `None` when the file could not be read.
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
    /// Pixel size as decoded (after EXIF orientation); `None` when not decodable.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// The decoder's colour type (e.g. `L8`, `Rgb8`, `Rgba16`); `None` when not decodable.
    pub color: Option<String>,
    /// [`STATUS_OK`] or the reason the file cannot be used.
    pub status: String,
}

impl ManifestRow {
    pub fn is_ok(&self) -> bool {
        self.status == STATUS_OK
    }
}

/// What the manifest's footer records besides its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestMeta {
    /// Class names sorted by name; a label is an index into this list.
    pub classes: Vec<String>,
    /// The data set root the paths are relative to (absolute, as given at prepare time).
    pub root: String,
    /// How splits were assigned: `presplit`, or the `--split` spec and seed.
    pub layout: String,
}

/// A manifest file: footer metadata and one row per file.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub meta: ManifestMeta,
    pub rows: Vec<ManifestRow>,
}

fn fields() -> Vec<Field> {
    vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("class", DataType::Utf8, false),
        Field::new("label", DataType::Int32, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("sha256", DataType::Utf8, true),
        Field::new("bytes", DataType::UInt64, true),
        Field::new("width", DataType::UInt32, true),
        Field::new("height", DataType::UInt32, true),
        Field::new("color", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
    ]
}

impl Manifest {
    /// Writes the manifest atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let rows = &self.rows;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.path))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.class))),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.label))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.split.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.sha256.as_deref()),
            )),
            Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.bytes))),
            Arc::new(UInt32Array::from_iter(rows.iter().map(|r| r.width))),
            Arc::new(UInt32Array::from_iter(rows.iter().map(|r| r.height))),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.color.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| &r.status),
            )),
        ];
        let batch =
            RecordBatch::try_new(Arc::new(Schema::new(fields())), columns).map_err(|source| {
                FormatError::Arrow {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        let mut footer = Footer::new(FileKind::Manifest);
        footer.set_json(KEY_CLASSES, &self.meta.classes);
        footer.set(KEY_ROOT, &self.meta.root);
        footer.set(KEY_LAYOUT, &self.meta.layout);
        meta::write_file(path, &footer, &batch)
    }

    /// Reads and validates a manifest: kind, version, columns, labels consistent with classes.
    pub fn read(path: &Path) -> Result<Manifest> {
        let (footer, builder) = meta::open(path, FileKind::Manifest)?;
        meta::check_schema(path, builder.schema(), &fields())?;
        let meta = ManifestMeta {
            classes: footer.get_json(path, KEY_CLASSES)?,
            root: footer.get(path, KEY_ROOT)?.to_string(),
            layout: footer.get(path, KEY_LAYOUT)?.to_string(),
        };
        let mut rows = Vec::new();
        for batch in meta::read_batches(path, builder)? {
            let c = Columns {
                path,
                batch: &batch,
            };
            let paths = c.required_strings("path")?;
            let classes = c.required_strings("class")?;
            let labels = c.required::<Int32Type>("label")?;
            let splits = c.required_strings("split")?;
            let sha = c.optional_strings("sha256")?;
            let bytes = c.optional::<UInt64Type>("bytes")?;
            let width = c.optional::<UInt32Type>("width")?;
            let height = c.optional::<UInt32Type>("height")?;
            let color = c.optional_strings("color")?;
            let status = c.required_strings("status")?;
            for i in 0..batch.num_rows() {
                let split = splits[i].parse().map_err(|problem| FormatError::Column {
                    path: path.to_path_buf(),
                    column: "split".into(),
                    problem,
                })?;
                let label = labels[i];
                if meta.classes.get(label as usize) != Some(&classes[i]) {
                    return Err(FormatError::Column {
                        path: path.to_path_buf(),
                        column: "label".into(),
                        problem: format!(
                            "row {} ({}): label {label} does not name class `{}` in the footer's class list",
                            rows.len(),
                            paths[i],
                            classes[i]
                        ),
                    });
                }
                rows.push(ManifestRow {
                    path: paths[i].clone(),
                    class: classes[i].clone(),
                    label,
                    split,
                    sha256: sha[i].clone(),
                    bytes: bytes[i],
                    width: width[i],
                    height: height[i],
                    color: color[i].clone(),
                    status: status[i].clone(),
                });
            }
        }
        Ok(Manifest { meta, rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            meta: ManifestMeta {
                classes: vec!["cats".into(), "dogs".into()],
                root: "/data/demo".into(),
                layout: "presplit".into(),
            },
            rows: vec![
                ManifestRow {
                    path: "train/cats/cat.0.jpg".into(),
                    class: "cats".into(),
                    label: 0,
                    split: Split::Train,
                    sha256: Some("ab".repeat(32)),
                    bytes: Some(1234),
                    width: Some(499),
                    height: Some(375),
                    color: Some("Rgb8".into()),
                    status: STATUS_OK.into(),
                },
                ManifestRow {
                    path: "validation/dogs/broken.jpg".into(),
                    class: "dogs".into(),
                    label: 1,
                    split: Split::Validation,
                    sha256: None,
                    bytes: Some(0),
                    width: None,
                    height: None,
                    color: None,
                    status: "empty file".into(),
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.parquet");
        let m = sample();
        m.write(&p).unwrap();
        assert_eq!(Manifest::read(&p).unwrap(), m);
    }

    #[test]
    fn label_must_match_class_list() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.parquet");
        let mut m = sample();
        m.rows[1].label = 0;
        m.write(&p).unwrap();
        let err = Manifest::read(&p).unwrap_err().to_string();
        assert!(err.contains("column `label`"), "{err}");
    }
}
