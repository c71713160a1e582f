use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use convbase_cli::{Exit, GlobalArgs};

/// Predicts images with a trained run: the run's conv base and head in one process.
///
/// Prints one JSON line per image on stdout, in the order given:
/// `{"path", "label", "label_id", "probability", "probabilities"}`; an image that cannot be
/// read prints `{"path", "error"}` and the others still print.
#[derive(Debug, Parser)]
#[command(name = "convbase-predict", version, after_help = EXIT_CODES)]
struct Args {
    /// Run directory written by a head's `train` or by `convbase-finetune train`.
    run: PathBuf,
    /// Images to classify.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Where to read the weights from, if not where the run's features were computed from
    /// (their checksum must match).
    #[arg(short, long)]
    weights: Option<String>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 20)]
    batch: usize,
    #[command(flatten)]
    global: GlobalArgs,
}

const EXIT_CODES: &str = "Exit codes: 0 every image predicted, 1 failure, 2 usage error, \
3 input rejected (a run or weights not usable, or some images could not be read).";

fn main() -> ExitCode {
    let args = Args::parse();
    convbase_cli::init_logging(&args.global);
    let mut bad_images = false;
    let code = convbase_cli::run(|| {
        let predictor = convbase_predict::Predictor::new(
            &args.run,
            args.weights.as_deref(),
            candle_core::Device::Cpu,
        )?;
        let mut out = std::io::stdout().lock();
        for chunk in args.images.chunks(args.batch.max(1)) {
            for (path, result) in chunk.iter().zip(predictor.predict(chunk)?) {
                let line = match result {
                    Ok(p) => serde_json::to_string(&p)?,
                    Err(error) => {
                        bad_images = true;
                        serde_json::json!({ "path": path.display().to_string(), "error": error })
                            .to_string()
                    }
                };
                writeln!(out, "{line}")?;
            }
            out.flush()?;
        }
        Ok(())
    });
    if bad_images && code == ExitCode::from(Exit::Success) {
        return Exit::InputRejected.into();
    }
    code
}
