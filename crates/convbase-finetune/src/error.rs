//! Errors of a fine-tuning; messages name the file or run directory at fault.

use convbase_format::FormatError;
use convbase_train::TrainError;
use convbase_vgg16::Vgg16Error;

/// Everything that can stop a fine-tuning.
#[derive(Debug, thiserror::Error)]
pub enum FineTuneError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Weights(#[from] Vgg16Error),
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Inputs that are readable but do not fit together (features of another layer, weights
    /// or preprocessing than the head run's): exit code 3.
    #[error("{0}")]
    Rejected(String),
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl FineTuneError {
    /// Converts into the error a binary reports, keeping the "input rejected" marker (exit
    /// code 3) that `convbase_cli::report_error` looks for.
    pub fn into_anyhow(self) -> anyhow::Error {
        use convbase_cli::InputRejected;
        match self {
            FineTuneError::Train(e) => e.into_anyhow(),
            FineTuneError::Weights(e) => e.into_anyhow(),
            FineTuneError::Format(e) => anyhow::Error::new(e),
            FineTuneError::Rejected(msg) => anyhow::Error::new(InputRejected(msg)),
            e @ FineTuneError::Candle(_) => anyhow::Error::new(e),
        }
    }
}
