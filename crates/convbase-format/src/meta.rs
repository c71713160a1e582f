//! Footer key/value metadata and the validated opening of contract files.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::atomic::AtomicFile;
pub(crate) use crate::chunk::ParquetFile;
use crate::error::{FormatError, Result};
use parquet::file::reader::Length;

/// Version of the schemas in this crate. A reader refuses files from a newer version.
pub const SCHEMA_VERSION: u32 = 1;
/// Version of the convbase tools, recorded in every footer.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

pub(crate) const KEY_SCHEMA: &str = "convbase.schema";
pub(crate) const KEY_VERSION: &str = "convbase.schema_version";
pub(crate) const KEY_TOOL: &str = "convbase.tool_version";

/// Which contract file a Parquet file is, as recorded in its footer (`convbase.schema`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Manifest,
    Features,
    Predictions,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Manifest => "manifest",
            FileKind::Features => "features",
            FileKind::Predictions => "predictions",
        }
    }
}

/// The footer of a contract file as ordered key/value pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Footer(pub BTreeMap<String, String>);

impl Footer {
    pub fn new(kind: FileKind) -> Self {
        let mut f = Footer::default();
        f.set(KEY_SCHEMA, kind.as_str());
        f.set(KEY_VERSION, SCHEMA_VERSION.to_string());
        f.set(KEY_TOOL, TOOL_VERSION);
        f
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_string(), value.into());
    }

    pub fn set_json<T: Serialize>(&mut self, key: &str, value: &T) {
        self.set(
            key,
            serde_json::to_string(value).expect("serialisable metadata"),
        );
    }

    pub fn get(&self, path: &Path, key: &str) -> Result<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| FormatError::Footer {
                path: path.to_path_buf(),
                key: key.to_string(),
                problem: "missing".into(),
            })
    }

    pub fn get_parsed<T: std::str::FromStr>(&self, path: &Path, key: &str) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self.get(path, key)?;
        raw.parse().map_err(|e: T::Err| FormatError::Footer {
            path: path.to_path_buf(),
            key: key.to_string(),
            problem: format!("cannot parse `{raw}`: {e}"),
        })
    }

    pub fn get_json<T: DeserializeOwned>(&self, path: &Path, key: &str) -> Result<T> {
        let raw = self.get(path, key)?;
        serde_json::from_str(raw).map_err(|e| FormatError::Footer {
            path: path.to_path_buf(),
            key: key.to_string(),
            problem: format!("invalid JSON `{raw}`: {e}"),
        })
    }

    fn to_kv(&self) -> Vec<KeyValue> {
        self.0
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
            .collect()
    }
}

/// Writer properties shared by every contract file.
fn writer_props(footer: &Footer, row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid level"),
        ))
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_key_value_metadata(Some(footer.to_kv()))
        .build()
}

/// Streams record batches into a contract file at a temporary path; `finish` renames it.
pub(crate) struct ParquetOut {
    writer: ArrowWriter<File>,
    target: AtomicFile,
}

impl ParquetOut {
    pub fn create(
        dest: &Path,
        schema: Arc<Schema>,
        footer: &Footer,
        row_group_rows: usize,
    ) -> Result<Self> {
        let target = AtomicFile::create(dest)?;
        let file = target.try_clone()?;
        let writer = ArrowWriter::try_new(file, schema, Some(writer_props(footer, row_group_rows)))
            .map_err(|source| FormatError::Parquet {
                path: dest.to_path_buf(),
                source,
            })?;
        Ok(ParquetOut { writer, target })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .map_err(|source| FormatError::Parquet {
                path: self.target.dest().to_path_buf(),
                source,
            })?;
        // Close the row group now so memory stays bounded by one batch.
        self.writer.flush().map_err(|source| FormatError::Parquet {
            path: self.target.dest().to_path_buf(),
            source,
        })
    }

    pub fn finish(self) -> Result<()> {
        let ParquetOut { writer, target } = self;
        writer.close().map_err(|source| FormatError::Parquet {
            path: target.dest().to_path_buf(),
            source,
        })?;
        target.commit()
    }
}

/// Writes a single record batch as a whole contract file, atomically.
pub(crate) fn write_file(dest: &Path, footer: &Footer, batch: &RecordBatch) -> Result<()> {
    let mut out = ParquetOut::create(dest, batch.schema(), footer, 64 * 1024)?;
    if batch.num_rows() > 0 {
        out.write(batch)?;
    }
    out.finish()
}

/// Opens a contract file, checks its footer says `kind` in a version we understand, and
/// returns the footer with a reader builder positioned at the first row.
pub(crate) fn open(
    path: &Path,
    kind: FileKind,
) -> Result<(Footer, ParquetRecordBatchReaderBuilder<ParquetFile>)> {
    let (footer, file, metadata) = open_metadata(path, kind)?;
    Ok((
        footer,
        ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata),
    ))
}

/// Like [`open`], but returns the parsed Parquet metadata so that a caller can build several
/// readers (one per row group, say) without parsing the footer again.
pub(crate) fn open_metadata(
    path: &Path,
    kind: FileKind,
) -> Result<(Footer, ParquetFile, ArrowReaderMetadata)> {
    let file = ParquetFile::open(path)?;
    let metadata = guarded(path, || {
        ArrowReaderMetadata::load(&file, ArrowReaderOptions::default()).map_err(|source| {
            FormatError::Parquet {
                path: path.to_path_buf(),
                source,
            }
        })
    })?;
    check_column_chunks(path, &metadata, file.len())?;
    let mut footer = Footer::default();
    if let Some(kvs) = metadata.metadata().file_metadata().key_value_metadata() {
        for kv in kvs {
            if let Some(v) = &kv.value {
                footer.0.insert(kv.key.clone(), v.clone());
            }
        }
    }
    let found = footer
        .0
        .get(KEY_SCHEMA)
        .ok_or_else(|| FormatError::NotConvbase {
            path: path.to_path_buf(),
        })?;
    if found != kind.as_str() {
        return Err(FormatError::WrongKind {
            path: path.to_path_buf(),
            expected: kind.as_str(),
            found: found.clone(),
        });
    }
    let version: u32 = footer.get_parsed(path, KEY_VERSION)?;
    if version > SCHEMA_VERSION {
        return Err(FormatError::FutureVersion {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok((footer, file, metadata))
}

/// Reads every record batch of an opened file.
pub(crate) fn read_batches(
    path: &Path,
    builder: ParquetRecordBatchReaderBuilder<ParquetFile>,
) -> Result<Vec<RecordBatch>> {
    guarded(path, || {
        let reader =
            builder
                .with_batch_size(8192)
                .build()
                .map_err(|source| FormatError::Parquet {
                    path: path.to_path_buf(),
                    source,
                })?;
        reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|source| FormatError::Arrow {
                path: path.to_path_buf(),
                source,
            })
    })
}

/// Runs parquet/arrow code on a file, turning a panic into an error naming the file.
/// parquet 60 still panics on some malformed files (an `expect` in its dictionary page
/// decoder, found by `fuzz/`): a damaged file must be rejected, not crash the stage.
fn guarded<T>(path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(FormatError::Invalid {
            path: path.to_path_buf(),
            problem: format!("malformed Parquet file (the Parquet reader failed: {why})"),
        })
    })
}

/// Refuses column chunks with a negative offset or size, which parquet 60 would otherwise
/// meet with a panic (`ColumnChunkMetaData::byte_range`) when building a reader, and
/// column chunks that do not lie inside the file (`len` bytes).
fn check_column_chunks(path: &Path, metadata: &ArrowReaderMetadata, len: u64) -> Result<()> {
    for (g, group) in metadata.metadata().row_groups().iter().enumerate() {
        for column in group.columns() {
            let start = column
                .dictionary_page_offset()
                .unwrap_or(column.data_page_offset());
            let end = start.checked_add(column.compressed_size());
            if start < 0 || column.compressed_size() < 0 || end.is_none_or(|end| end as u64 > len) {
                return Err(FormatError::Invalid {
                    path: path.to_path_buf(),
                    problem: format!(
                        "malformed Parquet file: row group {g}, column `{}` has offset {start} and size {} (the file has {len} bytes)",
                        column.column_path(),
                        column.compressed_size()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Checks that `schema` holds every field of `expected` with the same type.
pub(crate) fn check_schema(path: &Path, schema: &Schema, expected: &[Field]) -> Result<()> {
    for want in expected {
        let got = schema
            .field_with_name(want.name())
            .map_err(|_| FormatError::Column {
                path: path.to_path_buf(),
                column: want.name().clone(),
                problem: "missing".into(),
            })?;
        if !types_match(got.data_type(), want.data_type()) {
            return Err(FormatError::Column {
                path: path.to_path_buf(),
                column: want.name().clone(),
                problem: format!("type is {}, expected {}", got.data_type(), want.data_type()),
            });
        }
    }
    Ok(())
}

/// Compares types ignoring the name and nullability of list items.
fn types_match(got: &DataType, want: &DataType) -> bool {
    match (got, want) {
        (DataType::FixedSizeList(g, gn), DataType::FixedSizeList(w, wn)) => {
            (gn == wn || *wn == 0) && g.data_type() == w.data_type()
        }
        _ => got == want,
    }
}

/// Typed column access that reports the file and column on failure.
pub(crate) struct Columns<'a> {
    pub path: &'a Path,
    pub batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    fn col(&self, name: &str) -> Result<&'a ArrayRef> {
        self.batch
            .column_by_name(name)
            .ok_or_else(|| FormatError::Column {
                path: self.path.to_path_buf(),
                column: name.into(),
                problem: "missing".into(),
            })
    }

    fn bad(&self, name: &str, problem: &str) -> FormatError {
        FormatError::Column {
            path: self.path.to_path_buf(),
            column: name.into(),
            problem: problem.into(),
        }
    }

    pub fn strings(&self, name: &str) -> Result<&'a StringArray> {
        self.col(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| self.bad(name, "not a string column"))
    }

    /// A string column with no nulls, as owned strings.
    pub fn required_strings(&self, name: &str) -> Result<Vec<String>> {
        let a = self.strings(name)?;
        if a.null_count() > 0 {
            return Err(self.bad(name, "has null values"));
        }
        Ok(a.iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    }

    pub fn optional_strings(&self, name: &str) -> Result<Vec<Option<String>>> {
        Ok(self
            .strings(name)?
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    }

    pub fn primitive<T: arrow::datatypes::ArrowPrimitiveType>(
        &self,
        name: &str,
    ) -> Result<&'a arrow::array::PrimitiveArray<T>> {
        self.col(name)?
            .as_primitive_opt::<T>()
            .ok_or_else(|| self.bad(name, "wrong numeric type"))
    }

    pub fn required<T: arrow::datatypes::ArrowPrimitiveType>(
        &self,
        name: &str,
    ) -> Result<Vec<T::Native>> {
        let a = self.primitive::<T>(name)?;
        if a.null_count() > 0 {
            return Err(self.bad(name, "has null values"));
        }
        Ok(a.values().to_vec())
    }

    pub fn optional<T: arrow::datatypes::ArrowPrimitiveType>(
        &self,
        name: &str,
    ) -> Result<Vec<Option<T::Native>>> {
        Ok(self.primitive::<T>(name)?.iter().collect())
    }

    /// A `FixedSizeList<Float32, dim>` column as one contiguous slice of `rows * dim` floats.
    pub fn f32_vectors(&self, name: &str) -> Result<(usize, &'a [f32])> {
        let list: &FixedSizeListArray = self
            .col(name)?
            .as_fixed_size_list_opt()
            .ok_or_else(|| self.bad(name, "not a fixed-size list"))?;
        if list.null_count() > 0 {
            return Err(self.bad(name, "has null vectors"));
        }
        let values: &Float32Array = list
            .values()
            .as_primitive_opt()
            .ok_or_else(|| self.bad(name, "items are not float32"))?;
        if values.null_count() > 0 {
            return Err(self.bad(name, "has null values"));
        }
        Ok((list.value_length() as usize, values.values()))
    }
}

/// A `FixedSizeList<Float32, dim>` array from `rows * dim` contiguous floats.
pub(crate) fn f32_vectors(values: Vec<f32>, dim: usize) -> FixedSizeListArray {
    FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        dim as i32,
        Arc::new(Float32Array::from(values)),
        None,
    )
}

pub(crate) fn vector_field(name: &str, dim: usize) -> Field {
    Field::new(
        name,
        DataType::FixedSizeList(
            Arc::new(Field::new("item", DataType::Float32, false)),
            dim as i32,
        ),
        false,
    )
}

/// Hex SHA-256 of a file's bytes, streamed (used for manifests, weights and images).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
