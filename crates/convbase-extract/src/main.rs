use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use convbase_cli::GlobalArgs;
use convbase_data::ResizeFilter;
use convbase_data::augment::AugmentPolicy;
use convbase_vgg16::{GlobalPool, Layer, Preprocess};

/// Runs the VGG16 conv base over every usable image of a manifest and writes one feature
/// vector per image (and per augmented view of a training image) to a Parquet file.
///
/// The output is a cache that never lies: re-running with the same inputs does no model
/// work; images added to the manifest are the only ones computed and removed ones
/// disappear; any change of weights, layer, size, filter, pooling or preprocessing
/// recomputes everything into a fresh file (a new augmentation policy recomputes the
/// augmented views only); a killed run resumes from its completed chunks.
///
/// Rows are keyed by the SHA-256 of the bytes decoded, and are only ever computed for the
/// content the manifest describes. An image that cannot be read, or whose file changed
/// since `convbase-prepare` (its SHA-256 differs from the manifest's), is skipped with its
/// path and reason and gets no row; nothing is cached for the new content. Re-run
/// `convbase-prepare` to take the new content in: the next extraction computes only it.
/// Images skipped before are tried again by every run.
#[derive(Debug, Parser)]
#[command(name = "convbase-extract", version, after_help = EXIT_CODES)]
struct Args {
    /// Manifest written by `convbase-prepare`.
    #[arg(short, long)]
    manifest: PathBuf,
    /// Weights: a .safetensors, Keras .onnx or .h5 file, or `hf:REPO` on the Hugging Face Hub.
    #[arg(short, long, env = "CONVBASE_WEIGHTS")]
    weights: String,
    /// Features file to write (Parquet).
    #[arg(short, long)]
    out: PathBuf,
    /// Square input size in pixels (the seed uses 150).
    #[arg(long, default_value_t = 150)]
    size: u32,
    /// Images per forward pass.
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Output layer by its Keras name (block5_pool, block4_pool, block3_conv3, ...).
    #[arg(long, default_value = "block5_pool")]
    layer: Layer,
    /// Global pooling of the layer's output.
    #[arg(long, default_value = "none")]
    pool: GlobalPool,
    /// Input preprocessing; default: what the weights expect (Keras weights: caffe).
    /// `rescale` (x/255) reproduces the seed.
    #[arg(long)]
    preprocess: Option<Preprocess>,
    /// Resize filter; nearest is what Keras' flow_from_directory uses.
    #[arg(long, default_value = "nearest")]
    resize_filter: ResizeFilter,
    /// Device: cpu, or cuda[:N] in builds with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Data set root, if the images moved since `convbase-prepare` ran.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Another features file whose rows computed with the same settings are reused instead
    /// of recomputed (repeatable); files with other settings are ignored with a note.
    #[arg(long, value_name = "FEATURES.parquet")]
    reuse: Vec<PathBuf>,
    /// Batches per journal chunk: at most this much work is lost when a run is killed.
    #[arg(long, default_value_t = 5)]
    chunk_batches: usize,
    /// Threads decoding images while the model runs.
    #[arg(long, default_value_t = 1)]
    decode_threads: usize,
    /// Augmented views per training image, computed once and cached beside the plain view 0
    /// (validation and test images keep view 0 only). Raising it computes only the new
    /// views. 0: no augmentation.
    #[arg(long, default_value_t = 0, help_heading = "Augmentation")]
    views: u32,
    /// How views are drawn, with Keras ImageDataGenerator's semantics: a preset (`book`:
    /// rotation 40, shifts 0.2, shear 0.2 degrees, zoom 0.2, horizontal flip, fill nearest;
    /// `book-keras2.0.8`: the same arguments as the book's Keras ran them, shear in radians)
    /// then comma-separated overrides, e.g. `book,rotation=20,fill=reflect,seed=7`. Keys:
    /// rotation, width_shift, height_shift, shear, shear_unit, zoom (z or lo:hi),
    /// horizontal_flip, vertical_flip, fill (nearest|constant|reflect|wrap), cval,
    /// interpolation (bilinear|nearest), geometry (keras3|keras2), seed.
    #[arg(long, default_value = "book", help_heading = "Augmentation")]
    augment: AugmentPolicy,
    #[command(flatten)]
    global: GlobalArgs,
}

const EXIT_CODES: &str = "Exit codes: 0 success (images that cannot be decoded are skipped and \
reported), 1 failure, 2 usage error, 3 input rejected (manifest or weights not valid).";

fn main() -> ExitCode {
    let args = Args::parse();
    convbase_cli::init_logging(&args.global);
    convbase_cli::run(|| {
        let cfg = convbase_extract::Config {
            manifest: args.manifest,
            weights: args.weights,
            out: args.out,
            size: args.size,
            batch: args.batch,
            layer: args.layer,
            pool: args.pool,
            preprocess: args.preprocess,
            resize_filter: args.resize_filter,
            device: convbase_extract::parse_device(&args.device)?,
            root: args.root,
            reuse: args.reuse,
            chunk_batches: args.chunk_batches,
            decode_threads: args.decode_threads,
            views: args.views,
            augment: Some(args.augment),
        };
        let bar = convbase_cli::progress(&args.global, 0, "extract");
        let s = convbase_extract::run(&cfg, &bar)?;
        bar.finish_and_clear();
        if s.up_to_date && s.failed.is_empty() {
            tracing::info!(
                "{} is up to date ({} rows); no model work",
                cfg.out.display(),
                s.rows
            );
        } else if s.up_to_date {
            tracing::info!(
                "{} is up to date ({} rows, {} failed to decode again); no model work",
                cfg.out.display(),
                s.rows,
                s.failed.len()
            );
        } else {
            let rate = if s.seconds > 0.0 {
                s.computed as f64 / s.seconds
            } else {
                0.0
            };
            tracing::info!(
                "wrote {}: {} rows ({} computed, {} cached), {} not usable, {} failed to decode; {:.1} s, {:.2} images/s",
                cfg.out.display(),
                s.rows,
                s.computed,
                s.cached,
                s.skipped,
                s.failed.len(),
                s.seconds,
                rate
            );
        }
        if !s.changed.is_empty() {
            tracing::warn!(
                "{} images changed since convbase-prepare wrote {} and were left out; \
                 re-run convbase-prepare, then convbase-extract computes just them",
                s.changed.len(),
                cfg.manifest.display()
            );
        }
        Ok(())
    })
}
