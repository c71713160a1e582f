//! What every convbase binary shares, so that all of them behave alike for a user:
//! logs and progress on stderr (data on stdout), `NO_COLOR` and `--quiet` honoured,
//! and exit codes with one meaning across the tools.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the run failed (I/O error, unexpected failure) |
//! | 2 | usage error (bad flags or arguments) |
//! | 3 | input rejected: a file is not what the stage needs (wrong schema, future version, mismatched provenance, corrupt weights), or `--strict` found bad images |

pub mod process;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Flags every binary takes, flattened into its clap parser.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct GlobalArgs {
    /// Only print warnings and errors; no progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output (-v: debug, -vv: trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Exit codes shared by every convbase binary (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Failure = 1,
    Usage = 2,
    InputRejected = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// Marks an error as "the input was rejected" (exit code 3) rather than a failure.
#[derive(Debug)]
pub struct InputRejected(pub String);

impl std::fmt::Display for InputRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for InputRejected {}

/// True when colour may be used on stderr: a terminal and no `NO_COLOR`.
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Installs the stderr logger. Call once at the start of `main`.
pub fn init_logging(args: &GlobalArgs) {
    let default = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color_enabled())
        .with_target(false)
        .without_time()
        .try_init();
}

/// A progress bar on stderr for `len` items, hidden when quiet or stderr is not a terminal.
pub fn progress(args: &GlobalArgs, len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if args.quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = if color_enabled() {
        "{msg:>10} [{bar:30.cyan/blue}] {pos}/{len} {per_sec} eta {eta}"
    } else {
        "{msg:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// Maps a failed run to its exit code and prints the error chain on stderr.
///
/// Exit code 3 for an [`InputRejected`] or a rejected [`convbase_format::FormatError`]
/// anywhere in the chain. The other crates' errors cannot be named here (those crates
/// depend on this one): each converts itself with its `into_anyhow` (`Vgg16Error`,
/// `TrainError`, `FineTuneError`), which marks the rejected ones with [`InputRejected`].
pub fn report_error(err: &anyhow::Error) -> ExitCode {
    tracing::error!("{err:#}");
    let rejected = err.chain().any(|e| {
        e.downcast_ref::<InputRejected>().is_some()
            || e.downcast_ref::<convbase_format::FormatError>()
                .is_some_and(convbase_format::FormatError::is_input_rejected)
    });
    if rejected {
        Exit::InputRejected.into()
    } else {
        Exit::Failure.into()
    }
}

/// Runs a binary's body and turns its result into an exit code.
pub fn run(body: impl FnOnce() -> anyhow::Result<()>) -> ExitCode {
    match body() {
        Ok(()) => Exit::Success.into(),
        Err(e) => report_error(&e),
    }
}
