//! Extraction stage: runs the VGG16 conv base over the usable images of a manifest and
//! writes a features file, reusing every row an earlier run computed with the same settings.
//!
//! The pipeline streams: a decoder thread reads, resizes and preprocesses images into
//! batches while the model runs on the previous batch; completed work is journalled in
//! chunk files (see [`cache`]) so a killed run resumes where it stopped; the final file is
//! assembled in manifest order and renamed into place only when complete.
//!
//! With `views > 0`, every training image also gets that many augmented views (Keras'
//! `ImageDataGenerator` semantics, drawn per image content hash and view), computed once
//! and cached like view 0; validation and test images keep view 0 only.
//!
//! Rows are keyed by the SHA-256 of the bytes actually decoded, and only ever for the
//! content the manifest describes: an image whose file no longer has the SHA-256 the
//! manifest recorded (edited or replaced after `convbase-prepare`) is skipped and reported
//! with its path, like an unreadable one, and nothing is computed or cached for it. The
//! features file then describes exactly the manifest's images; re-running
//! `convbase-prepare` records the new content, and the next extraction computes just it. An
//! output that lacks rows of its manifest (images that could not be read when it was
//! written) is never taken as up to date: those images are tried again.

pub mod cache;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use candle_core::{Device, Tensor};
use convbase_data::augment::AugmentPolicy;
use convbase_data::{ImageError, ResizeFilter, decode_for_network, read_image};
use convbase_format::{
    FeatureBatch, FeatureProvenance, FeaturesWriter, Manifest, ManifestRow, Split,
    read_features_meta, sha256_file,
};
use convbase_vgg16::{GlobalPool, Layer, Preprocess, Vgg16, Vgg16Error, Weights};
use sha2::{Digest, Sha256};

use crate::cache::{Cache, WorkDir, compatible};

/// Everything that decides what an extraction computes and where it goes.
#[derive(Debug, Clone)]
pub struct Config {
    pub manifest: PathBuf,
    /// Weights spec: a file path (.safetensors, .onnx, .h5) or `hf:REPO`.
    pub weights: String,
    pub out: PathBuf,
    pub size: u32,
    pub batch: usize,
    pub layer: Layer,
    pub pool: GlobalPool,
    /// `None`: what the weights expect.
    pub preprocess: Option<Preprocess>,
    pub resize_filter: ResizeFilter,
    pub device: Device,
    /// Overrides the data set root recorded in the manifest.
    pub root: Option<PathBuf>,
    /// Other features files whose compatible rows are reused (e.g. the plain features when
    /// adding augmented views in another file).
    pub reuse: Vec<PathBuf>,
    /// Batches per journal chunk: the most work a kill can lose.
    pub chunk_batches: usize,
    /// Threads decoding images beside the model.
    pub decode_threads: usize,
    /// Augmented views per training image, beside the unaugmented view 0.
    pub views: u32,
    /// How augmented views are drawn; required when `views > 0`.
    pub augment: Option<AugmentPolicy>,
}

impl Config {
    /// The views a row of `split` has in the output: 0, and 1..=views for training images.
    fn views_of(&self, split: Split) -> std::ops::RangeInclusive<u32> {
        0..=if split == Split::Train { self.views } else { 0 }
    }
}

/// What a run did, for the summary line.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    /// Rows in the output file.
    pub rows: usize,
    /// Rows (image views) run through the model in this run.
    pub computed: usize,
    /// Rows taken from the cache (earlier output or journal).
    pub cached: usize,
    /// Manifest rows whose status is not `ok`.
    pub skipped: usize,
    /// Images that failed to decode now: (path, reason).
    pub failed: Vec<(String, String)>,
    /// Those of `failed` that decode but are not the content the manifest recorded (changed
    /// since `convbase-prepare`): re-running it would make them usable.
    pub changed: Vec<String>,
    /// True when the output was already up to date and nothing was written.
    pub up_to_date: bool,
    pub seconds: f64,
}

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(spec: &str) -> anyhow::Result<Device> {
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal: usize = s
                .strip_prefix("cuda:")
                .map(str::parse)
                .transpose()
                .with_context(|| format!("bad device `{s}`"))?
                .unwrap_or(0);
            if cfg!(feature = "cuda") {
                Ok(Device::new_cuda(ordinal)?)
            } else {
                bail!(
                    "device `{s}`: this build has no CUDA support (rebuild with `--features cuda`)"
                )
            }
        }
        other => bail!("unknown device `{other}` (expected cpu, cuda or cuda:N)"),
    }
}

/// A weights spec that stays valid from another directory: file paths made absolute.
fn absolute_source(source: &str) -> String {
    if source.starts_with("hf:") {
        return source.to_string();
    }
    std::fs::canonicalize(source)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| source.to_string())
}

/// Holds an exclusive lock on the output for the whole run, so two extractions on the same
/// output wait for each other instead of interleaving.
fn lock_output(out: &Path) -> anyhow::Result<File> {
    let name = out.file_name().unwrap_or_default().to_string_lossy();
    let path = out.with_file_name(format!(".{name}.lock"));
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    if file.try_lock().is_err() {
        tracing::warn!(
            "another convbase-extract is writing {}; waiting for it to finish",
            out.display()
        );
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
    }
    Ok(file)
}

/// Runs the extraction. `progress` is told the number of images to compute, then advanced.
pub fn run(cfg: &Config, progress: &indicatif::ProgressBar) -> anyhow::Result<Summary> {
    let start = Instant::now();
    if cfg.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if cfg.size < 32 {
        bail!("--size must be at least 32 pixels (VGG16 pools 5 times)");
    }
    let augment = match (cfg.views, cfg.augment) {
        (0, _) => "none".to_string(),
        (_, Some(policy)) => policy.to_json(),
        (_, None) => bail!("augmented views need an augmentation policy"),
    };
    let _lock = lock_output(&cfg.out)?;

    let manifest = Manifest::read(&cfg.manifest)?;
    let manifest_sha256 = sha256_file(&cfg.manifest)
        .with_context(|| format!("hashing {}", cfg.manifest.display()))?;
    let root = cfg
        .root
        .clone()
        .unwrap_or_else(|| PathBuf::from(&manifest.meta.root));
    let (usable, unusable): (Vec<&ManifestRow>, Vec<&ManifestRow>) =
        manifest.rows.iter().partition(|r| r.is_ok());
    let mut summary = Summary {
        skipped: unusable.len(),
        ..Summary::default()
    };
    if summary.skipped > 0 {
        tracing::info!(
            "{} manifest rows are not usable (status other than ok) and are skipped",
            summary.skipped
        );
    }

    let weights = Weights::load(&cfg.weights, &cfg.device).map_err(Vgg16Error::into_anyhow)?;
    let preprocess = cfg.preprocess.unwrap_or(weights.preprocess);
    let model = Vgg16::new(&weights, cfg.layer, cfg.pool, &cfg.device)?;
    let provenance = FeatureProvenance {
        weights_sha256: weights.sha256.clone(),
        weights_source: absolute_source(&weights.source),
        layer: cfg.layer.to_string(),
        input_size: cfg.size,
        resize_filter: cfg.resize_filter.to_string(),
        preprocess: preprocess.to_string(),
        pool: cfg.pool.to_string(),
        feature_shape: model.output_shape(cfg.size as usize),
        flatten_order: "hwc".into(),
        augment,
        views: cfg.views,
        manifest_sha256,
        classes: manifest.meta.classes.clone(),
        dataset_root: root.to_string_lossy().into_owned(),
    };

    // Earlier output: reused when compatible; up to date when it is exactly this run's result.
    let expected_rows: usize = usable.iter().map(|r| cfg.views_of(r.split).count()).sum();
    // Rows of an output computed exactly as this run computes (same settings and manifest).
    let mut same_output_rows = None;
    let mut cache = Cache::default();
    if cfg.out.exists() {
        match read_features_meta(&cfg.out) {
            Ok((have, rows)) if have == provenance && !WorkDir::path_for(&cfg.out).exists() => {
                if rows == expected_rows {
                    // Same settings and same manifest, and every row is there.
                    summary.up_to_date = true;
                    summary.rows = rows;
                    summary.cached = summary.rows;
                    summary.seconds = start.elapsed().as_secs_f64();
                    return Ok(summary);
                }
                tracing::info!(
                    "{} lacks {} of its manifest's {expected_rows} rows (images that could not be read when it was written): trying them again",
                    cfg.out.display(),
                    expected_rows.saturating_sub(rows)
                );
                same_output_rows = Some(rows);
                if let Err(why) = cache.add_file(&cfg.out, &provenance) {
                    tracing::warn!("cannot reuse {}: {why}", cfg.out.display());
                }
            }
            Ok((have, _)) => match compatible(&have, &provenance) {
                Ok(()) => {
                    if let Err(why) = cache.add_file(&cfg.out, &provenance) {
                        tracing::warn!("cannot reuse {}: {why}", cfg.out.display());
                    }
                }
                Err(why) => tracing::info!(
                    "settings changed ({why}): {} will be recomputed",
                    cfg.out.display()
                ),
            },
            Err(e) => tracing::warn!("ignoring existing output: {e}"),
        }
    }
    for other in &cfg.reuse {
        match cache.add_file(other, &provenance) {
            Ok(()) => tracing::info!("reusing compatible rows of {}", other.display()),
            Err(why) => tracing::info!("not reusing {}: {why}", other.display()),
        }
    }
    let mut work = WorkDir::open(&cfg.out, &provenance, &mut cache)?;

    // Image views the cache lacks, in manifest order, each (content, view) computed once.
    // When an image fails, another file of the manifest with the same content (if any) is
    // tried in a next round.
    let mut attempted = std::collections::HashSet::new();
    loop {
        let mut seen = std::collections::HashSet::new();
        let todo: Vec<(&ManifestRow, u32)> = usable
            .iter()
            .flat_map(|&r| cfg.views_of(r.split).map(move |view| (r, view)))
            .filter(|&(r, view)| {
                let sha = r.sha256.as_deref().unwrap_or_default();
                !cache.contains(sha, view)
                    && !attempted.contains(&(r.path.as_str(), view))
                    && seen.insert((sha, view))
            })
            .collect();
        if todo.is_empty() {
            break;
        }
        attempted.extend(todo.iter().map(|&(r, view)| (r.path.as_str(), view)));
        progress.inc_length(todo.len() as u64);
        tracing::info!(
            "{} image views to compute ({} cached) with {} at {} px on {:?}",
            todo.len(),
            cache.len(),
            cfg.layer,
            cfg.size,
            cfg.device
        );
        let (computed, failed) = compute(
            cfg,
            &root,
            &todo,
            preprocess,
            &model,
            &provenance,
            &mut cache,
            &mut work,
            progress,
        )?;
        summary.computed += computed;
        for f in failed {
            if f.changed {
                summary.changed.push(f.path.clone());
            }
            summary.failed.push((f.path, f.reason));
        }
    }

    let present = cache.rows_present(&usable, |split| cfg.views_of(split));
    if summary.computed == 0 && same_output_rows == Some(present) {
        // Nothing could be added: the output already holds every row this run can give.
        work.remove()?;
        summary.up_to_date = true;
        summary.rows = present;
        summary.cached = present;
        summary.seconds = start.elapsed().as_secs_f64();
        return Ok(summary);
    }

    // Assemble the output in manifest order, streaming from the cache's files.
    let mut writer = FeaturesWriter::create(&cfg.out, &provenance)?;
    cache.write_in_order(
        &usable,
        |split| cfg.views_of(split),
        &mut writer,
        provenance.dim(),
    )?;
    summary.rows = writer.finish()?;
    summary.cached = summary.rows - summary.computed.min(summary.rows);
    work.remove()?;
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// One decoded batch: the image views with the SHA-256 of the bytes decoded, and their
/// preprocessed NCHW pixels.
struct Decoded<'a> {
    rows: Vec<(&'a ManifestRow, u32, String)>,
    pixels: Vec<f32>,
    failed: Vec<Failed>,
}

/// An image that could not be used, with why.
#[derive(Debug)]
struct Failed {
    /// As in the manifest.
    path: String,
    /// Names the file.
    reason: String,
    /// It decodes, but is not the content the manifest recorded.
    changed: bool,
}

/// Reads an image once, checks that its bytes are the content the manifest recorded, and
/// decodes those very bytes: the features computed are always those of the content whose
/// SHA-256 keys them. Returns the SHA-256 and the network input.
fn load_checked(
    root: &Path,
    row: &ManifestRow,
    size: u32,
    filter: ResizeFilter,
) -> Result<(String, Vec<f32>), Failed> {
    let path = root.join(&row.path);
    let failed = |reason: String, changed: bool| Failed {
        path: row.path.clone(),
        reason,
        changed,
    };
    let bytes = read_image(&path).map_err(|e| failed(e.to_string(), false))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let decoded = decode_for_network(&bytes, size, filter).map_err(|reason| ImageError {
        path: Some(path.clone()),
        reason,
    });
    let recorded = row.sha256.as_deref().unwrap_or_default();
    if sha256 != recorded {
        let changed = format!(
            "the file changed since convbase-prepare (its SHA-256 is {sha256}, the manifest records {recorded})"
        );
        return Err(match decoded {
            Err(e) => failed(format!("{e}; {changed}"), false),
            Ok(_) => failed(
                format!(
                    "{}: {changed}; not extracted: re-run convbase-prepare to include its new content",
                    path.display()
                ),
                true,
            ),
        });
    }
    decoded
        .map(|pixels| (sha256, pixels))
        .map_err(|e| failed(e.to_string(), false))
}

/// Runs the model over the image views in `todo`, journalling every `chunk_batches` batches.
/// Returns the number of image views computed and the images that failed to decode, once
/// each.
#[allow(clippy::too_many_arguments)]
fn compute(
    cfg: &Config,
    root: &Path,
    todo: &[(&ManifestRow, u32)],
    preprocess: Preprocess,
    model: &Vgg16,
    provenance: &FeatureProvenance,
    cache: &mut Cache,
    work: &mut WorkDir,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<(usize, Vec<Failed>)> {
    let size = cfg.size as usize;
    let per_image = 3 * size * size;
    let dim = provenance.dim();
    let decoders = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.decode_threads.max(1))
        .thread_name(|i| format!("decode-{i}"))
        .build()?;
    // Two batches in flight: the one the model runs and the next one decoding.
    let (tx, rx) = crossbeam_channel::bounded::<Decoded>(1);
    let mut failed = Vec::new();
    let mut computed = 0;

    std::thread::scope(|scope| -> anyhow::Result<()> {
        // Owned here so that an early error drops it and unblocks the producer.
        let rx = rx;
        let producer = scope.spawn(move || {
            // Over-read a little so that a batch stays full when some images fail.
            let mut pending = todo.iter().copied().peekable();
            while pending.peek().is_some() {
                let mut out = Decoded {
                    rows: Vec::with_capacity(cfg.batch),
                    pixels: Vec::with_capacity(cfg.batch * per_image),
                    failed: Vec::new(),
                };
                while out.rows.len() < cfg.batch && pending.peek().is_some() {
                    let want = cfg.batch - out.rows.len();
                    let next: Vec<(&ManifestRow, u32)> = pending.by_ref().take(want).collect();
                    let loaded: Vec<_> = decoders.install(|| {
                        use rayon::prelude::*;
                        next.par_iter()
                            .map(|&(r, view)| {
                                load_checked(root, r, cfg.size, cfg.resize_filter).map(
                                    |(sha256, rgb)| {
                                        let rgb = match (view, &cfg.augment) {
                                            (1.., Some(policy)) => {
                                                policy.view(&rgb, size, size, &sha256, view)
                                            }
                                            _ => rgb,
                                        };
                                        let mut chw = vec![0f32; per_image];
                                        preprocess.apply(&rgb, size, &mut chw);
                                        (sha256, chw)
                                    },
                                )
                            })
                            .collect()
                    });
                    for ((row, view), res) in next.into_iter().zip(loaded) {
                        match res {
                            Ok((sha256, chw)) => {
                                out.rows.push((row, view, sha256));
                                out.pixels.extend_from_slice(&chw);
                            }
                            Err(f) => out.failed.push(f),
                        }
                    }
                }
                if tx.send(out).is_err() {
                    return; // consumer stopped on an error
                }
            }
        });

        let mut chunk = FeatureBatch::default();
        let mut batches_in_chunk = 0;
        let mut failed_paths = std::collections::HashSet::new();
        for decoded in rx.iter() {
            progress.inc(decoded.failed.len() as u64);
            for f in decoded.failed {
                // An image with several views fails once per view; report it once.
                if failed_paths.insert(f.path.clone()) {
                    tracing::warn!("skipping {}: {}", root.join(&f.path).display(), f.reason);
                    failed.push(f);
                }
            }
            let n = decoded.rows.len();
            if n == 0 {
                continue;
            }
            let x = Tensor::from_vec(decoded.pixels, (n, 3, size, size), &cfg.device)?;
            let y = model.forward(&x)?;
            let values = convbase_vgg16::flatten_hwc(&y)?;
            debug_assert_eq!(values.len(), n * dim);
            for (row, view, sha256) in decoded.rows {
                chunk.paths.push(row.path.clone());
                chunk.sha256.push(sha256);
                chunk.labels.push(row.label);
                chunk.splits.push(row.split);
                chunk.views.push(view);
            }
            chunk.values.extend_from_slice(&values);
            batches_in_chunk += 1;
            computed += n;
            progress.inc(n as u64);
            if batches_in_chunk == cfg.chunk_batches.max(1) {
                work.write_chunk(provenance, &chunk, cache)?;
                chunk = FeatureBatch::default();
                batches_in_chunk = 0;
            }
        }
        if !chunk.is_empty() {
            work.write_chunk(provenance, &chunk, cache)?;
        }
        producer
            .join()
            .map_err(|_| anyhow::anyhow!("decoder thread panicked"))?;
        Ok(())
    })?;
    Ok((computed, failed))
}
