use std::path::PathBuf;

use convbase_format::FormatError;

/// Everything that can stop a head from training or predicting. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The input is readable but not what the head needs (mismatched provenance, no
    /// training rows, a model file of another head): exit code 3.
    #[error("{0}")]
    Rejected(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A model file that cannot be used (corrupt, missing tensor, wrong shape): exit code 3.
    #[error("{path}: {problem}")]
    Model { path: PathBuf, problem: String },
    /// The output cannot be written where asked.
    #[error("{path}: {problem}")]
    Output { path: PathBuf, problem: String },
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }

    /// Converts into the error a binary reports, keeping the "input rejected" marker
    /// (exit code 3) that `convbase_cli::report_error` looks for.
    pub fn into_anyhow(self) -> anyhow::Error {
        match self {
            TrainError::Format(e) => anyhow::Error::new(e),
            TrainError::Rejected(msg) => anyhow::Error::new(convbase_cli::InputRejected(msg)),
            e @ TrainError::Model { .. } => {
                anyhow::Error::new(convbase_cli::InputRejected(e.to_string()))
            }
            e => anyhow::Error::new(e),
        }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
