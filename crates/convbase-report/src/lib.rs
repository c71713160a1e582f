//! Evaluation report of a head run: metrics, confusion matrix, ROC AUC, worst errors, one
//! HTML page.
//!
//! [`generate`] reads a run directory (`predictions.parquet` through
//! [`convbase_format::Predictions`], plus `config.json`, `history.csv` and `curves.png`
//! when present) and writes, each atomically:
//! - `metrics.json`: every number, machine-readable ([`MetricsFile`]);
//! - `confusion.png`: one confusion matrix per split;
//! - `errors.png`: a contact sheet of the most confidently wrong images of one split;
//! - `report.html`: all of it in one self-contained page (images as data URIs).
//!
//! Metrics use view 0 (the unaugmented image) only. Log loss clips like Keras
//! ([`metrics::EPSILON`]); ROC AUC (two classes) is the Mann-Whitney rank statistic.

mod confusion;
mod draw;
pub mod history;
mod html;
pub mod metrics;
mod sheet;

use std::io::Write;
use std::path::{Path, PathBuf};

use convbase_format::{FeatureProvenance, FormatError, PredictionRow, Predictions, Split};
use serde::Serialize;

use crate::history::{History, HistorySummary};
use crate::metrics::{Outcomes, SplitMetrics};
use crate::sheet::SheetItem;

/// What can stop a report. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot draw: {problem}")]
    Draw { path: PathBuf, problem: String },
    #[error("{path}: cannot encode PNG: {source}")]
    Png {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
}

impl ReportError {
    /// True when the run directory's content is not acceptable input (exit code 3), as
    /// opposed to a failure to read or write.
    pub fn is_input_rejected(&self) -> bool {
        match self {
            ReportError::Format(e) => e.is_input_rejected(),
            ReportError::Invalid { .. } => true,
            _ => false,
        }
    }
}

/// What to report on and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The run directory holding `predictions.parquet` (and `config.json`, ...).
    pub run_dir: PathBuf,
    /// Where the outputs go (usually `run_dir`).
    pub out_dir: PathBuf,
    /// How many misclassified images the contact sheet shows.
    pub top: usize,
    /// Which split's errors the contact sheet shows.
    pub error_split: Split,
}

/// `metrics.json`: the report's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsFile {
    pub run_dir: String,
    pub head: String,
    pub classes: Vec<String>,
    pub features: FeatureProvenance,
    /// The view the metrics are computed on (0 = unaugmented).
    pub view: u32,
    /// One entry per split present, in train, validation, test order.
    pub splits: Vec<SplitMetrics>,
    pub errors: ErrorsSummary,
    pub history: Option<HistorySummary>,
    /// What the report had to leave out, and why.
    pub notes: Vec<String>,
}

/// The misclassified images of one split that the contact sheet shows.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorsSummary {
    pub split: Split,
    /// All misclassified images of the split.
    pub total: usize,
    /// The `top` most confident mistakes (lowest probability of the true class first).
    pub shown: Vec<ShownError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShownError {
    pub path: String,
    pub label: i32,
    pub predicted: i32,
    pub p_true: f32,
    pub probabilities: Vec<f32>,
    /// `null` when the image was drawn, else why it could not be loaded.
    pub image_error: Option<String>,
}

/// The result of [`generate`].
#[derive(Debug)]
pub struct Report {
    pub metrics: MetricsFile,
    /// The plain-text summary (metrics table, confusion matrices) for stdout.
    pub summary: String,
    /// The files written.
    pub written: Vec<PathBuf>,
}

/// Names of the files in a run directory and of the outputs.
pub const PREDICTIONS_FILE: &str = "predictions.parquet";
pub const CONFIG_FILE: &str = "config.json";
pub const HISTORY_FILE: &str = "history.csv";
pub const CURVES_FILE: &str = "curves.png";
pub const METRICS_FILE: &str = "metrics.json";
pub const CONFUSION_FILE: &str = "confusion.png";
pub const ERRORS_FILE: &str = "errors.png";
pub const HTML_FILE: &str = "report.html";

/// Reads the run directory, computes everything and writes the outputs.
pub fn generate(opts: &Options) -> Result<Report, ReportError> {
    let pred_path = opts.run_dir.join(PREDICTIONS_FILE);
    let preds = Predictions::read(&pred_path)?;
    let rows = view0_rows(&pred_path, &preds)?;
    let c = preds.classes.len();
    let mut notes = Vec::new();

    let splits: Vec<SplitMetrics> = Split::ALL
        .iter()
        .filter_map(|&split| {
            let of_split: Vec<&PredictionRow> =
                rows.iter().copied().filter(|r| r.split == split).collect();
            (!of_split.is_empty()).then(|| {
                let labels: Vec<usize> = of_split.iter().map(|r| r.label as usize).collect();
                let predicted: Vec<usize> = of_split.iter().map(|r| r.predicted as usize).collect();
                let probabilities: Vec<f32> = of_split
                    .iter()
                    .flat_map(|r| r.probabilities.iter().copied())
                    .collect();
                let outcomes = Outcomes {
                    labels: &labels,
                    predicted: &predicted,
                    probabilities: &probabilities,
                };
                metrics::evaluate(split.as_str(), &preds.classes, outcomes)
            })
        })
        .collect();
    tracing::info!(
        "{} rows of view 0 in {} split(s), {c} classes",
        rows.len(),
        splits.len()
    );

    // Most confident mistakes: lowest probability of the true class first.
    let mut wrong: Vec<&PredictionRow> = rows
        .iter()
        .copied()
        .filter(|r| r.split == opts.error_split && r.predicted != r.label)
        .collect();
    wrong.sort_by(|a, b| {
        p_true(a)
            .total_cmp(&p_true(b))
            .then_with(|| a.path.cmp(&b.path))
    });
    let total_wrong = wrong.len();
    wrong.truncate(opts.top);
    if !rows.iter().any(|r| r.split == opts.error_split) {
        notes.push(format!(
            "no {} rows in {}: the error sheet is empty",
            opts.error_split,
            pred_path.display()
        ));
    }
    let root = Path::new(&preds.features.dataset_root);
    let items: Vec<SheetItem> = wrong
        .iter()
        .map(|r| {
            let file = root.join(&r.path);
            let image = load_image(&file);
            if let Err(e) = &image {
                tracing::warn!("{}: {e}", file.display());
            }
            SheetItem {
                name: Path::new(&r.path)
                    .file_name()
                    .map_or_else(|| r.path.clone(), |n| n.to_string_lossy().into_owned()),
                true_class: preds.classes[r.label as usize].clone(),
                predicted_class: preds.classes[r.predicted as usize].clone(),
                p_true: p_true(r),
                image,
            }
        })
        .collect();
    let shown: Vec<ShownError> = wrong
        .iter()
        .zip(&items)
        .map(|(r, item)| ShownError {
            path: r.path.clone(),
            label: r.label,
            predicted: r.predicted,
            p_true: p_true(r),
            probabilities: r.probabilities.clone(),
            image_error: item.image.as_ref().err().cloned(),
        })
        .collect();

    let history = match History::read(&opts.run_dir.join(HISTORY_FILE)) {
        Ok(h) => Some(h),
        Err(e) => {
            notes.push(format!("training history left out: {e}"));
            None
        }
    };
    let config = read_config(&opts.run_dir.join(CONFIG_FILE), &mut notes);
    let curves = read_png(&opts.run_dir.join(CURVES_FILE), &mut notes);
    for note in &notes {
        tracing::warn!("{note}");
    }

    let confusion_path = opts.out_dir.join(CONFUSION_FILE);
    let confusion_png = confusion::render(&preds.classes, &splits)
        .map_err(|problem| ReportError::Draw {
            path: confusion_path.clone(),
            problem,
        })
        .and_then(|img| encode(&confusion_path, &img))?;
    let errors_path = opts.out_dir.join(ERRORS_FILE);
    let header = if !rows.iter().any(|r| r.split == opts.error_split) {
        format!("{}: no rows in the predictions", opts.error_split)
    } else if total_wrong == 0 {
        format!("{}: no misclassified images", opts.error_split)
    } else {
        format!(
            "{}: {} of {} misclassified images, most confident first",
            opts.error_split,
            items.len(),
            total_wrong
        )
    };
    let errors_png = sheet::render(&header, &items)
        .map_err(|problem| ReportError::Draw {
            path: errors_path.clone(),
            problem,
        })
        .and_then(|img| encode(&errors_path, &img))?;

    let metrics = MetricsFile {
        run_dir: opts.run_dir.display().to_string(),
        head: preds.head.clone(),
        classes: preds.classes.clone(),
        features: preds.features.clone(),
        view: 0,
        splits,
        errors: ErrorsSummary {
            split: opts.error_split,
            total: total_wrong,
            shown,
        },
        history: history.as_ref().map(History::summary),
        notes,
    };
    let summary = text_summary(&metrics);
    let page = html::render(&html::Page {
        metrics: &metrics,
        history: history.as_ref(),
        config: config.as_ref(),
        confusion_png: &confusion_png,
        errors_png: &errors_png,
        curves_png: curves.as_deref(),
    });

    let metrics_json = serde_json::to_vec_pretty(&metrics).expect("metrics serialise");
    let mut written = Vec::new();
    for (name, bytes) in [
        (METRICS_FILE, &metrics_json),
        (CONFUSION_FILE, &confusion_png),
        (ERRORS_FILE, &errors_png),
        (HTML_FILE, &page.into_bytes()),
    ] {
        let path = opts.out_dir.join(name);
        write_file(&path, bytes)?;
        tracing::info!("wrote {}", path.display());
        written.push(path);
    }
    Ok(Report {
        metrics,
        summary,
        written,
    })
}

/// The view-0 rows, after checking that labels and predictions index the classes.
fn view0_rows<'a>(
    path: &Path,
    preds: &'a Predictions,
) -> Result<Vec<&'a PredictionRow>, ReportError> {
    let c = preds.classes.len();
    if c < 2 {
        return Err(ReportError::Invalid {
            path: path.to_path_buf(),
            problem: format!("{c} class(es); a classification report needs at least 2"),
        });
    }
    let rows: Vec<&PredictionRow> = preds.rows.iter().filter(|r| r.view == 0).collect();
    if rows.is_empty() {
        return Err(ReportError::Invalid {
            path: path.to_path_buf(),
            problem: "no rows of view 0 (unaugmented images) to evaluate".into(),
        });
    }
    let in_range = |v: i32| usize::try_from(v).is_ok_and(|v| v < c);
    if let Some(bad) = rows
        .iter()
        .find(|r| !in_range(r.label) || !in_range(r.predicted))
    {
        return Err(ReportError::Invalid {
            path: path.to_path_buf(),
            problem: format!(
                "{}: label {} / predicted {} out of range for {c} classes",
                bad.path, bad.label, bad.predicted
            ),
        });
    }
    Ok(rows)
}

fn p_true(r: &PredictionRow) -> f32 {
    r.probabilities[r.label as usize]
}

/// Loads an image for the contact sheet; the error is the reason shown on its tile (the
/// path is in the caption and the logs).
fn load_image(path: &Path) -> Result<image::RgbImage, String> {
    convbase_data::load_rgb8(path).map_err(|e| e.reason.to_string())
}

fn read_config(path: &Path, notes: &mut Vec<String>) -> Option<serde_json::Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            notes.push(format!("configuration left out: {}: {e}", path.display()));
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            notes.push(format!("configuration left out: {}: {e}", path.display()));
            None
        }
    }
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn read_png(path: &Path, notes: &mut Vec<String>) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.starts_with(PNG_SIGNATURE) => Some(bytes),
        Ok(_) => {
            notes.push(format!(
                "training curves left out: {}: not a PNG file",
                path.display()
            ));
            None
        }
        Err(e) => {
            notes.push(format!("training curves left out: {}: {e}", path.display()));
            None
        }
    }
}

fn encode(path: &Path, img: &image::RgbImage) -> Result<Vec<u8>, ReportError> {
    draw::png_bytes(img).map_err(|source| ReportError::Png {
        path: path.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    convbase_format::write_atomically(path, |f| {
        f.write_all(bytes).map_err(|source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// The metrics table of every split, then each split's confusion matrix and per-class
/// numbers, as plain text.
pub fn text_summary(m: &MetricsFile) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<12} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "split", "n", "accuracy", "log_loss", "roc_auc", "macro_f1"
    );
    for sm in &m.splits {
        let auc = sm
            .roc_auc
            .map_or_else(|| "-".to_string(), |a| format!("{a:.4}"));
        let _ = writeln!(
            s,
            "{:<12} {:>7} {:>9.4} {:>9.4} {:>9} {:>9.4}",
            sm.split, sm.count, sm.accuracy, sm.log_loss, auc, sm.macro_f1
        );
    }
    let width = m.classes.iter().map(String::len).max().unwrap_or(0).max(6);
    for sm in &m.splits {
        let _ = writeln!(
            s,
            "\nconfusion matrix, {} (rows: true class, columns: predicted)",
            sm.split
        );
        let _ = write!(s, "{:<width$}", "");
        for name in &m.classes {
            let _ = write!(s, " {name:>width$}");
        }
        let _ = writeln!(s);
        for (name, row) in m.classes.iter().zip(&sm.confusion) {
            let _ = write!(s, "{name:<width$}");
            for count in row {
                let _ = write!(s, " {count:>width$}");
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "{:<width$} {:>9} {:>9} {:>9} {:>7}",
            "class", "precision", "recall", "f1", "support"
        );
        for cm in &sm.per_class {
            let _ = writeln!(
                s,
                "{:<width$} {:>9.4} {:>9.4} {:>9.4} {:>7}",
                cm.class, cm.precision, cm.recall, cm.f1, cm.support
            );
        }
    }
    let _ = writeln!(
        s,
        "\n{} misclassified {} image(s); the {} most confident are in {ERRORS_FILE}",
        m.errors.total,
        m.errors.split,
        m.errors.shown.len()
    );
    s
}
