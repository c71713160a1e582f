//! `convbase-prepare`: scan an image data set into `manifest.parquet`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use convbase_cli::{GlobalArgs, InputRejected, init_logging, progress, run};
use convbase_data::prepare::{PrepareError, prepare};
use convbase_data::split::SplitSpec;

const AFTER_HELP: &str = "\
Layouts:
  pre-split  ROOT/{train,validation,test}/CLASS/*   (`val` accepted for validation; test optional)
  flat       ROOT/CLASS/*  with --split, e.g. --split train=0.7,validation=0.15,test=0.15

Split rule (flat layout): a file goes to a split by SHA-256 of (seed, its path relative to ROOT)
mapped to [0,1) and compared with the cumulative fractions train, validation, test. The same
files, fractions and seed always give the same splits, and adding files never moves an
existing file to another split. Each class is split with the fractions in expectation, not
exactly (binomial counts).

Classes are the class folder names sorted by name; labels index that list (cats=0, dogs=1).
Every file found becomes a row with status `ok` or the reason it cannot be used (empty,
truncated, not an image, too large for the decoder limits, broken symlink, ...). Such files
are summarised on stderr and the run goes on, unless --strict.

Exit codes:
  0  manifest written
  1  the run failed (I/O error)
  2  usage error (bad flags)
  3  input rejected: layout not understood, fewer than 2 classes, a split without a usable
     image of some class, or unusable files with --strict (no manifest is written)";

/// Scan an image data set into manifest.parquet: one row per file with its class, label,
/// split, SHA-256, size, pixel size, colour type and status.
#[derive(Debug, Parser)]
#[command(name = "convbase-prepare", version, after_help = AFTER_HELP)]
struct Args {
    /// Data set root (see the layouts below).
    root: PathBuf,
    /// Manifest to write (atomically).
    #[arg(short, long, default_value = "manifest.parquet")]
    output: PathBuf,
    /// Split fractions for a flat ROOT/CLASS/* layout, e.g. train=0.7,validation=0.15,test=0.15.
    #[arg(long)]
    split: Option<SplitSpec>,
    /// Seed of the split assignment (flat layout).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fail (exit code 3) if any file cannot be used, instead of recording it.
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    global: GlobalArgs,
}

/// How many unusable paths to list on stderr.
const SHOWN: usize = 10;

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(&args.global);
    run(|| body(&args))
}

fn body(args: &Args) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    let bar = progress(&args.global, 0, "decoding");
    let prepared = prepare(&args.root, args.split, args.seed, &bar).map_err(|e| match e {
        PrepareError::Layout { .. } => anyhow::Error::new(InputRejected(e.to_string())),
        other => anyhow::Error::new(other),
    })?;
    let m = &prepared.manifest;
    let total = m.rows.len();
    let bad: Vec<_> = prepared.bad_rows().collect();
    tracing::info!(
        "{total} files, {} usable, {} not usable, {:.1} s ({:.0} files/s); classes: {}",
        total - bad.len(),
        bad.len(),
        start.elapsed().as_secs_f64(),
        total as f64 / start.elapsed().as_secs_f64().max(1e-9),
        m.meta.classes.join(", ")
    );
    for ((split, class), n) in prepared.ok_counts() {
        tracing::info!("  {:<10} {class}: {n}", split.as_str());
    }
    if !prepared.ignored.is_empty() {
        tracing::warn!(
            "{} entries outside any class folder ignored: {}",
            prepared.ignored.len(),
            prepared
                .ignored
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !bad.is_empty() {
        tracing::warn!("{} files cannot be used:", bad.len());
        for r in bad.iter().take(SHOWN) {
            tracing::warn!("  {}: {}", r.path, r.status);
        }
        if bad.len() > SHOWN {
            tracing::warn!(
                "  ... and {} more (see the manifest's status column)",
                bad.len() - SHOWN
            );
        }
        if args.strict {
            return Err(InputRejected(format!(
                "{} unusable file(s) under {} and --strict given; no manifest written",
                bad.len(),
                m.meta.root
            ))
            .into());
        }
    }
    m.write(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    tracing::info!("wrote {}", args.output.display());
    Ok(())
}
