//! The command line every head binary shares: `train` and `predict`, with the head's own
//! flags flattened into `train`. A head's `main` is one call to [`main`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use convbase_cli::GlobalArgs;
use convbase_format::Features;
use tracing::info;

use crate::data::{ClassWeight, Rows};
use crate::error::{Result, TrainError};
use crate::fit::{FitSettings, Monitor, Trainer};
use crate::head::{Head, Model};
use crate::optim::OptimizerConfig;
use crate::run_dir::{RunConfig, StagedDir, TrainedModel, predict_rows, write_run};

#[derive(Debug, Parser)]
struct Cli<C: Args> {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command<C>,
}

#[derive(Debug, Subcommand)]
enum Command<C: Args> {
    /// Train on the `train` rows of a features file, validate on its `validation` rows
    /// (view 0), and write a run directory: config.json, model.safetensors, history.csv,
    /// curves.png, predictions.parquet.
    Train(TrainCommand<C>),
    /// Predict every row of a features file with a trained run's model. Refuses features
    /// computed differently from the model's (other weights, layer, size, ...) with exit
    /// code 3, writing nothing.
    Predict(PredictCommand),
}

#[derive(Debug, Args)]
struct TrainCommand<C: Args> {
    /// The features file (from convbase-extract).
    #[arg(long, value_name = "FEATURES.parquet")]
    features: PathBuf,
    /// The run directory to write. Replaced if it is an earlier run directory.
    #[arg(long, value_name = "RUN_DIR")]
    out: PathBuf,
    #[command(flatten)]
    training: TrainArgs,
    #[command(flatten, next_help_heading = "Model")]
    model: C,
}

#[derive(Debug, Args)]
struct PredictCommand {
    /// A run directory written by `train` of this head.
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// The features to predict; they must be compatible with the ones trained on.
    #[arg(long, value_name = "FEATURES.parquet")]
    features: PathBuf,
    /// The predictions file to write.
    #[arg(long, value_name = "PREDICTIONS.parquet")]
    out: PathBuf,
}

/// The optimiser to train with (all with Keras' update rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OptimizerName {
    /// Keras 3's RMSprop (epsilon inside the square root).
    Rmsprop,
    /// TF/Keras 2's RMSprop, as in the book (epsilon added to the square root).
    RmspropLegacy,
    Adam,
    Adamw,
    Sgd,
}

/// Training flags shared by every head. Defaults are the seed's: RMSprop(2e-5), 30 epochs,
/// batch 20, shuffled each epoch.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Training")]
pub struct TrainArgs {
    /// Passes over the training images.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: u64,
    /// Samples per update; the last batch of an epoch may be smaller.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Seed of every random draw (initial weights, shuffles, views, dropout masks): the same
    /// seed gives a bit-identical run on the CPU. Drawn at random and recorded when absent.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The update rule; all follow Keras' semantics.
    #[arg(long, value_enum, default_value_t = OptimizerName::Rmsprop)]
    pub optimizer: OptimizerName,
    /// Learning rate.
    #[arg(long, default_value_t = 2e-5)]
    pub lr: f64,
    /// RMSprop: decay of the squared-gradient average (Keras 0.9; PyTorch uses 0.99).
    #[arg(long, default_value_t = 0.9)]
    pub rho: f64,
    /// RMSprop, Adam, AdamW: epsilon of the denominator (Keras 1e-7).
    #[arg(long, default_value_t = 1e-7)]
    pub epsilon: f64,
    /// Adam, AdamW: decay of the gradient average.
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f64,
    /// Adam, AdamW: decay of the squared-gradient average.
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f64,
    /// AdamW: decoupled weight decay (Keras' default 0.004).
    #[arg(long, default_value_t = 0.004)]
    pub weight_decay: f64,
    /// SGD: momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Weigh the training loss per class: `balanced` (n / (classes * n_class)), or
    /// `CLASS=W,...` with class names or labels (others weigh 1).
    #[arg(long, value_name = "balanced|CLASS=W,...")]
    pub class_weight: Option<ClassWeight>,
    /// Stop when the monitored metric has not improved for this many epochs.
    #[arg(long, value_name = "EPOCHS")]
    pub patience: Option<usize>,
    /// End with the weights of the best epoch by the monitored metric.
    #[arg(long)]
    pub keep_best: bool,
    /// The validation metric `--patience` and `--keep-best` watch.
    #[arg(long, value_enum, default_value_t = Monitor::ValLoss)]
    pub monitor: Monitor,
    /// Smallest change of the monitored metric that counts as an improvement.
    #[arg(long, default_value_t = 0.0)]
    pub min_delta: f32,
    /// Train on every view of every training image each epoch, instead of one view per
    /// image drawn at random (only matters for features with augmented views).
    #[arg(long)]
    pub all_views: bool,
}

impl TrainArgs {
    pub fn optimizer_config(&self) -> OptimizerConfig {
        let lr = self.lr;
        match self.optimizer {
            OptimizerName::Rmsprop => OptimizerConfig::Rmsprop {
                lr,
                rho: self.rho,
                eps: self.epsilon,
            },
            OptimizerName::RmspropLegacy => OptimizerConfig::RmspropLegacy {
                lr,
                rho: self.rho,
                eps: self.epsilon,
            },
            OptimizerName::Adam => OptimizerConfig::Adam {
                lr,
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.epsilon,
            },
            OptimizerName::Adamw => OptimizerConfig::Adamw {
                lr,
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.epsilon,
                weight_decay: self.weight_decay,
            },
            OptimizerName::Sgd => OptimizerConfig::Sgd {
                lr,
                momentum: self.momentum,
            },
        }
    }

    pub fn fit_settings(&self) -> FitSettings {
        FitSettings {
            epochs: self.epochs as usize,
            batch_size: self.batch_size as usize,
            all_views: self.all_views,
            monitor: self.monitor,
            patience: self.patience,
            min_delta: self.min_delta,
            keep_best: self.keep_best,
        }
    }
}

/// The whole `main` of a head binary.
pub fn main<H: Head>() -> ExitCode
where
    H::Config: Args,
{
    let command = Cli::<H::Config>::command()
        .name(H::NAME)
        .bin_name(H::NAME)
        .about(H::ABOUT);
    let cli = command
        .try_get_matches()
        .and_then(|m| Cli::<H::Config>::from_arg_matches(&m))
        .unwrap_or_else(|e| e.exit());
    convbase_cli::process::flush_denormals_to_zero();
    convbase_cli::process::retain_freed_memory();
    convbase_cli::init_logging(&cli.global);
    convbase_cli::run(|| {
        match cli.command {
            Command::Train(t) => {
                train::<H>(&t.features, &t.out, &t.training, &t.model, &cli.global)
            }
            Command::Predict(p) => predict::<H>(&p.run, &p.features, &p.out),
        }
        .map_err(TrainError::into_anyhow)
    })
}

/// `train`: fit a head on a features file and write its run directory.
pub fn train<H: Head>(
    features_path: &Path,
    out: &Path,
    args: &TrainArgs,
    model_config: &H::Config,
    global: &GlobalArgs,
) -> Result<()> {
    let session = Session::start(features_path, out, args)?;
    let (features, seed) = (&session.features, session.seed);
    info!(
        "{}, {} classes, dim {}; seed {seed}",
        session.summary(),
        features.provenance.classes.len(),
        features.dim
    );
    let model = Model::<H>::init(
        model_config,
        features.dim,
        features.provenance.classes.len(),
        seed,
    )?;
    session.fit_into_run(model, model_config.clone(), global)
}

/// One training run, from its features to its run directory: what every trainer binary
/// (the heads, `convbase-finetune`) does around building its model.
#[derive(Debug)]
pub struct Session<'a> {
    pub features: Features,
    pub rows: Rows,
    /// `--seed`, or a random one (recorded in `config.json` either way).
    pub seed: u64,
    features_path: &'a Path,
    args: &'a TrainArgs,
    out: PathBuf,
    staged: StagedDir,
}

impl<'a> Session<'a> {
    /// Reads the features and starts staging the run directory `out`.
    pub fn start(features_path: &'a Path, out: &Path, args: &'a TrainArgs) -> Result<Self> {
        let features = Features::read(features_path)?;
        let rows = Rows::new(&features)?;
        let staged = StagedDir::create(out)?;
        Ok(Session {
            features,
            rows,
            seed: args.seed.unwrap_or_else(rand::random),
            features_path,
            args,
            out: out.to_path_buf(),
            staged,
        })
    }

    /// "FILE: N training images (R rows), V validation rows", for the binary's first log line.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} training images ({} rows), {} validation rows",
            self.features_path.display(),
            self.rows.train_images.len(),
            self.rows.train_images.iter().map(Vec::len).sum::<usize>(),
            self.rows.validation.len(),
        )
    }

    /// Trains `model` as the arguments say, logging each epoch, and writes the run directory.
    pub fn fit_into_run<H: Head>(
        self,
        model: Model<H>,
        model_config: H::Config,
        global: &GlobalArgs,
    ) -> Result<()> {
        let Session {
            features,
            rows,
            seed,
            features_path,
            args,
            out,
            staged,
        } = self;
        if rows.has_views() && !args.all_views {
            info!("several views per training image: drawing one per image each epoch");
        }
        let classes = features.provenance.classes.clone();
        let train_labels: Vec<i32> = rows
            .train_view0
            .iter()
            .map(|&i| features.rows.labels[i])
            .collect();
        let class_weights = args
            .class_weight
            .as_ref()
            .map(|w| w.resolve(&classes, &train_labels))
            .transpose()?;
        if let Some(w) = &class_weights {
            info!("class weights {:?}", w.0);
        }
        let optimizer = args.optimizer_config();
        let settings = args.fit_settings();
        let updates = optimizer.build(model.vars());
        let mut trainer = Trainer::new(model, updates, class_weights.clone());

        let bar = convbase_cli::progress(global, settings.epochs as u64, "epochs");
        let (history, outcome) = trainer.fit(&features, &rows, &settings, seed, |m| {
            bar.suspend(|| {
                let opt = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
                info!(
                    "epoch {}/{} loss {:.4} acc {:.4} val_loss {} val_acc {} {:.2}s",
                    m.epoch,
                    settings.epochs,
                    m.loss,
                    m.acc,
                    opt(m.val_loss),
                    opt(m.val_acc),
                    m.seconds
                )
            });
            bar.inc(1);
        })?;
        bar.finish_and_clear();
        if outcome.stopped_early {
            info!("stopped early after epoch {}", outcome.epochs_run);
        }
        info!(
            "trained {} epochs in {:.2}s ({:.2}s per epoch); weights of epoch {}",
            outcome.epochs_run,
            outcome.seconds,
            outcome.seconds / outcome.epochs_run.max(1) as f64,
            outcome.weights_epoch
        );

        let model = trainer.into_model();
        let config = RunConfig {
            head: H::NAME.to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            seed,
            model: model_config,
            optimizer,
            fit: settings,
            class_weights: class_weights.map(|w| w.0),
            inputs: features.dim,
            classes,
            features_file: features_path.display().to_string(),
            features: features.provenance.clone(),
            outcome: Some(outcome),
        };
        write_run(staged, &model, &config, &history, &features)?;
        info!("wrote {}", out.display());
        Ok(())
    }
}

/// `predict`: apply a trained run's model to a features file.
pub fn predict<H: Head>(run: &Path, features_path: &Path, out: &Path) -> Result<()> {
    let trained = TrainedModel::<H>::load(run)?;
    let features = Features::read(features_path)?;
    trained.check_features(&features.provenance, features_path)?;
    let all: Vec<usize> = (0..features.rows.len()).collect();
    let predictions = predict_rows(&trained.model, &features, &all)?;
    predictions.write(out)?;
    info!("wrote {} predictions to {}", all.len(), out.display());
    Ok(())
}
