//! What every head shares: the [`Head`] trait a head crate implements, Keras' layers,
//! initialisers, losses and optimisers (RMSprop, Adam, AdamW, SGD with momentum) over
//! candle `Var`s, the seeded training loop, the run directory (config, model file, history,
//! curves, predictions), prediction with a trained run, and the command line of every head
//! binary ([`cli::main`]).
//!
//! Heads run on the CPU: training a head on cached features takes seconds, and the
//! optimisers update parameters in place in host memory. Every random draw (initial
//! weights, shuffles, views, dropout masks) comes from a seeded ChaCha generator, so a run
//! with `--seed` is bit-reproducible.

pub mod cli;
pub mod data;
mod error;
pub mod fit;
mod head;
pub mod layers;
pub mod optim;
pub mod output;
pub mod params;
pub mod plot;
pub mod rng;
pub mod run_dir;

pub use error::{Result, TrainError};
pub use fit::{EpochMetrics, FitOutcome, FitSettings, Monitor, StepStats, Trainer};
pub use head::{Head, Model};
pub use layers::{Dense, DropoutMasks, Mode, SeededMasks, dropout};
pub use optim::{Optimizer, OptimizerConfig, update_in_place};
pub use output::Output;
pub use params::Params;
pub use run_dir::{RunConfig, TrainedModel};
