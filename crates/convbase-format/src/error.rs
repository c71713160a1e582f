use std::path::PathBuf;

/// Everything that can go wrong reading or writing a contract file. Every variant names the
/// file, and where it applies the column or footer key, so a user knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable Parquet file: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("{path}: not a convbase file (footer key `convbase.schema` missing)")]
    NotConvbase { path: PathBuf },
    #[error("{path}: is a convbase {found} file, expected a {expected} file")]
    WrongKind {
        path: PathBuf,
        expected: &'static str,
        found: String,
    },
    #[error(
        "{path}: schema version {found} is newer than this tool understands ({supported}); upgrade convbase"
    )]
    FutureVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: column `{column}`: {problem}")]
    Column {
        path: PathBuf,
        column: String,
        problem: String,
    },
    #[error("{path}: footer key `{key}`: {problem}")]
    Footer {
        path: PathBuf,
        key: String,
        problem: String,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

impl FormatError {
    /// True when the file exists but is not acceptable input (as opposed to an I/O failure).
    pub fn is_input_rejected(&self) -> bool {
        !matches!(self, FormatError::Io { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FormatError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;
