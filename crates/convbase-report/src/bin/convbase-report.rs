//! `convbase-report RUN_DIR`: evaluation report of a head run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use convbase_cli::{GlobalArgs, InputRejected};
use convbase_format::Split;

/// Writes an evaluation report of a head's run directory: accuracy, log loss, confusion
/// matrices, per-class precision/recall/F1 and ROC AUC per split (view 0, the unaugmented
/// images), a contact sheet of the most confidently wrong images, and one self-contained
/// report.html.
///
/// Outputs (in RUN_DIR unless --out): metrics.json, confusion.png, errors.png, report.html.
/// The metrics table and confusion matrices are printed on stdout.
///
/// Exit codes: 0 success, 1 failure, 2 usage error, 3 predictions.parquet rejected
/// (not a predictions file, newer schema, labels out of range).
#[derive(Debug, Parser)]
#[command(name = "convbase-report", version)]
struct Args {
    /// Run directory of a head: holds predictions.parquet, and config.json, history.csv
    /// and curves.png when the head wrote them (missing ones are noted in the report).
    run_dir: PathBuf,
    /// Directory for the outputs [default: RUN_DIR].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// How many misclassified images the contact sheet shows (lowest probability of the
    /// true class first).
    #[arg(long, value_name = "K", default_value_t = 16)]
    top: usize,
    /// Which split's misclassified images the contact sheet shows (train, validation, test).
    #[arg(long, default_value = "validation")]
    split: Split,
    #[command(flatten)]
    global: GlobalArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    convbase_cli::init_logging(&args.global);
    convbase_cli::run(|| {
        let opts = convbase_report::Options {
            out_dir: args.out.clone().unwrap_or_else(|| args.run_dir.clone()),
            run_dir: args.run_dir,
            top: args.top,
            error_split: args.split,
        };
        let report = convbase_report::generate(&opts).map_err(|e| {
            if e.is_input_rejected() {
                anyhow::Error::new(InputRejected(e.to_string()))
            } else {
                anyhow::Error::new(e)
            }
        })?;
        print!("{}", report.summary);
        Ok(())
    })
}
