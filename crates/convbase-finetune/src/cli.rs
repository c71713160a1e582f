//! The command line: `train` and `predict`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use convbase_cli::GlobalArgs;
use convbase_train::cli::TrainArgs;

use crate::model::FineTuned;
use crate::train::{Job, train};

/// The seed's learning rate for fine-tuning (half the head's).
pub const DEFAULT_LR: &str = "1e-5";

/// Fine-tunes VGG16's block5 together with a trained dense head (the seed's variant 3),
/// on cached block4_pool features: each step runs only block5 and the head, not the whole
/// conv base.
///
/// Needs block4_pool features (`convbase-extract --layer block4_pool --pool none`, with
/// augmented views if wanted) and a `convbase-head-dense` run trained on block5_pool features
/// of the same images, weights, size and preprocessing.
#[derive(Debug, Parser)]
#[command(name = "convbase-finetune", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success, 1 failure, 2 usage error, 3 input rejected \
(features of another layer, weights or preprocessing than the head run's, a run of another \
kind); nothing is written when an input is rejected.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Train block5 (block5_conv1..3) and the head, starting from the conv base weights and
    /// the head run, with RMSprop(1e-5) by default; validate on view 0 of the `validation`
    /// rows; write a run directory: config.json, model.safetensors (block5 + head),
    /// history.csv, curves.png, predictions.parquet.
    Train(TrainCommand),
    /// Predict every row of a block4_pool features file with a fine-tuned run. Refuses
    /// features computed differently from the run's (exit code 3), writing nothing.
    Predict(PredictCommand),
}

#[derive(Debug, Args)]
struct TrainCommand {
    /// block4_pool features (all views) from convbase-extract.
    #[arg(long, value_name = "FEATURES.parquet")]
    features: PathBuf,
    /// The dense head's run directory (convbase-head-dense train on block5_pool features).
    #[arg(long, value_name = "RUN_DIR")]
    head_run: PathBuf,
    /// The run directory to write. Replaced if it is an earlier run directory.
    #[arg(long, value_name = "RUN_DIR")]
    out: PathBuf,
    /// Where to read the conv base weights from, if not where the features were computed
    /// from (their checksum must match).
    #[arg(short, long)]
    weights: Option<String>,
    #[command(flatten)]
    training: TrainArgs,
}

#[derive(Debug, Args)]
struct PredictCommand {
    /// A run directory written by `convbase-finetune train`.
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// block4_pool features to predict; they must be compatible with the ones trained on.
    #[arg(long, value_name = "FEATURES.parquet")]
    features: PathBuf,
    /// The predictions file to write.
    #[arg(long, value_name = "PREDICTIONS.parquet")]
    out: PathBuf,
}

/// The whole `main` of `convbase-finetune`.
pub fn main() -> ExitCode {
    let command = Cli::command().mut_subcommand("train", |c| {
        c.mut_arg("lr", |a| a.default_value(DEFAULT_LR))
    });
    let cli = command
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
        .unwrap_or_else(|e| e.exit());
    convbase_cli::process::flush_denormals_to_zero();
    convbase_cli::process::retain_freed_memory();
    convbase_cli::init_logging(&cli.global);
    convbase_cli::run(|| match cli.command {
        Command::Train(t) => {
            let job = Job {
                features: t.features,
                head_run: t.head_run,
                weights: t.weights,
                out: t.out,
            };
            train(&job, &t.training, &cli.global).map_err(|e| e.into_anyhow())
        }
        Command::Predict(p) => {
            convbase_train::cli::predict::<FineTuned>(&p.run, &p.features, &p.out)
                .map_err(|e| e.into_anyhow())
        }
    })
}
