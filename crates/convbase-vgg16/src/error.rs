//! Errors of this crate; every message names the file (or Hub repo) and, where one is at
//! fault, the tensor.

use std::path::PathBuf;

/// What can go wrong loading, checking or saving weights.
#[derive(Debug, thiserror::Error)]
pub enum Vgg16Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a weights file this tool reads ({reason})")]
    UnknownFormat { path: PathBuf, reason: String },
    #[error("{path}: corrupt or truncated {format} file: {reason}")]
    Corrupt {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: tensor `{tensor}` has shape {got:?}, expected {expected:?}")]
    WrongShape {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("{path}: tensor `{tensor}` has unsupported data type {dtype}")]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    #[error("{path}: tensor `{tensor}` is ambiguous: {candidates:?} all match")]
    Ambiguous {
        path: PathBuf,
        tensor: String,
        candidates: Vec<String>,
    },
    #[error("{path}: SHA-256 is {actual}, expected {expected}")]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "{path}: tensor `{tensor}` does not match the SHA-256 recorded in the file's metadata (corrupted bytes)"
    )]
    TensorChecksumMismatch { path: PathBuf, tensor: String },
    #[error("{path}: tensor `{tensor}` holds a non-finite value (NaN or infinity)")]
    NonFinite { path: PathBuf, tensor: String },
    #[error("Hugging Face Hub `{repo}`: {reason}")]
    Hub { repo: String, reason: String },
    #[error("{path}: {source}")]
    Candle {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    #[error(transparent)]
    Model(#[from] candle_core::Error),
}

impl Vgg16Error {
    /// True when the weights file itself is at fault (bad, incomplete or not what it claims):
    /// binaries map this to exit code 3.
    pub fn is_input_rejected(&self) -> bool {
        !matches!(self, Self::Io { .. } | Self::Hub { .. } | Self::Model(_))
    }

    /// Converts into the error a binary reports: a rejected weights file carries the "input
    /// rejected" marker (exit code 3) that `convbase_cli::report_error` looks for, anything
    /// else (I/O, the Hub, a failed computation) stays a failure (exit code 1). Every binary
    /// that loads weights goes through this, so that they all classify alike.
    pub fn into_anyhow(self) -> anyhow::Error {
        if self.is_input_rejected() {
            anyhow::Error::new(convbase_cli::InputRejected(self.to_string()))
        } else {
            anyhow::Error::new(self)
        }
    }
}

/// A name that is not one of the accepted values of a [`FromStr`](std::str::FromStr) enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{got}`; expected one of: {expected}")]
pub struct ParseError {
    pub what: &'static str,
    pub got: String,
    pub expected: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use convbase_cli::{Exit, report_error};
    use std::process::ExitCode;

    #[test]
    fn a_rejected_weights_file_exits_3_and_other_failures_1() {
        let path = PathBuf::from("w.safetensors");
        let rejected = [
            Vgg16Error::Corrupt {
                path: path.clone(),
                format: "safetensors",
                reason: "truncated".into(),
            },
            Vgg16Error::UnknownFormat {
                path: path.clone(),
                reason: "empty".into(),
            },
            Vgg16Error::MissingTensor {
                path: path.clone(),
                tensor: "features.28.bias".into(),
            },
            Vgg16Error::NonFinite {
                path: path.clone(),
                tensor: "features.0.weight".into(),
            },
            Vgg16Error::TensorChecksumMismatch {
                path: path.clone(),
                tensor: "features.0.weight".into(),
            },
        ];
        for e in rejected {
            let text = e.to_string();
            let err = e.into_anyhow().context("loading the conv base");
            assert!(format!("{err:#}").ends_with(&text), "message kept: {err:#}");
            assert_eq!(
                report_error(&err),
                ExitCode::from(Exit::InputRejected),
                "{text}"
            );
        }
        let io = Vgg16Error::Io {
            path,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(
            report_error(&io.into_anyhow()),
            ExitCode::from(Exit::Failure)
        );
    }
}
