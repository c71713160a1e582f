//! `predictions.parquet`: a head's class probabilities, one row per (image, view).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, UInt32Type};

use crate::error::{FormatError, Result};
use crate::features::FeatureProvenance;
use crate::meta::{self, Columns, FileKind, Footer};
use crate::split::Split;

/// One predicted image.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRow {
    pub path: String,
    pub split: Split,
    /// The true label from the manifest.
    pub label: i32,
    pub view: u32,
    /// One probability per class, summing to 1.
    pub probabilities: Vec<f32>,
    /// Arg-max of `probabilities`.
    pub predicted: i32,
}

/// A predictions file: which head made it, on which features, and the rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub classes: Vec<String>,
    /// The head's name (its binary, e.g. `convbase-head-dense`).
    pub head: String,
    /// Provenance of the features the head was applied to.
    pub features: FeatureProvenance,
    pub rows: Vec<PredictionRow>,
}

fn fields(classes: usize) -> Vec<Field> {
    vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("label", DataType::Int32, false),
        Field::new("view", DataType::UInt32, false),
        meta::vector_field("probabilities", classes),
        Field::new("predicted", DataType::Int32, false),
    ]
}

impl Predictions {
    /// Writes the predictions atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let n = self.classes.len();
        if let Some(bad) = self.rows.iter().find(|r| r.probabilities.len() != n) {
            return Err(FormatError::Invalid {
                path: path.to_path_buf(),
                problem: format!(
                    "{}: {} probabilities for {n} classes",
                    bad.path,
                    bad.probabilities.len()
                ),
            });
        }
        let rows = &self.rows;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.path))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.split.as_str()),
            )),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.label))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.view))),
            Arc::new(meta::f32_vectors(
                rows.iter()
                    .flat_map(|r| r.probabilities.iter().copied())
                    .collect(),
                n,
            )),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.predicted),
            )),
        ];
        let batch =
            RecordBatch::try_new(Arc::new(Schema::new(fields(n))), columns).map_err(|source| {
                FormatError::Arrow {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        let mut footer = Footer::new(FileKind::Predictions);
        footer.set_json("convbase.classes", &self.classes);
        footer.set("convbase.head", &self.head);
        footer.set_json("convbase.features", &self.features);
        meta::write_file(path, &footer, &batch)
    }

    /// Reads and validates a predictions file.
    pub fn read(path: &Path) -> Result<Predictions> {
        let (footer, builder) = meta::open(path, FileKind::Predictions)?;
        let classes: Vec<String> = footer.get_json(path, "convbase.classes")?;
        let head = footer.get(path, "convbase.head")?.to_string();
        let features = footer.get_json(path, "convbase.features")?;
        let n = classes.len();
        meta::check_schema(path, builder.schema(), &fields(n))?;
        let mut rows = Vec::new();
        for batch in meta::read_batches(path, builder)? {
            let c = Columns {
                path,
                batch: &batch,
            };
            let paths = c.required_strings("path")?;
            let splits = c.required_strings("split")?;
            let labels = c.required::<Int32Type>("label")?;
            let views = c.required::<UInt32Type>("view")?;
            let (_, probs) = c.f32_vectors("probabilities")?;
            let predicted = c.required::<Int32Type>("predicted")?;
            for i in 0..batch.num_rows() {
                rows.push(PredictionRow {
                    path: paths[i].clone(),
                    split: splits[i].parse().map_err(|problem| FormatError::Column {
                        path: path.to_path_buf(),
                        column: "split".into(),
                        problem,
                    })?,
                    label: labels[i],
                    view: views[i],
                    probabilities: probs[i * n..(i + 1) * n].to_vec(),
                    predicted: predicted[i],
                });
            }
        }
        Ok(Predictions {
            classes,
            head,
            features,
            rows,
        })
    }
}
