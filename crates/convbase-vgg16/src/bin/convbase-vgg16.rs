//! `convbase-vgg16`: convert VGG16 conv-base weights from any source to safetensors with
//! provenance, show what a weights file holds, and time the conv base's forward pass.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use candle_core::DType;
use candle_core::Device;
use candle_core::Tensor;
use candle_nn::{VarBuilder, VarMap};
use clap::{Parser, Subcommand};
use convbase_cli::{GlobalArgs, InputRejected, init_logging, run};
use convbase_vgg16::fast::Isa;
use convbase_vgg16::{GlobalPool, Layer, Preprocess, Vgg16, Vgg16Error, Weights};

/// VGG16 conv-base weights: convert them to safetensors with provenance, inspect them, or time
/// the conv base on them.
///
/// WEIGHTS/SRC is a path to a `.safetensors` (torchvision/timm names), a Keras VGG16 exported to
/// `.onnx` by tf2onnx, a Keras `.h5` weights file, or `hf:OWNER/NAME[@REVISION][:FILE]` for the
/// Hugging Face Hub (e.g. `hf:timm/vgg16.tv_in1k`; honours HF_HOME, HF_HUB_CACHE and
/// HF_HUB_OFFLINE=1). Exit codes: 0 ok, 1 failure, 2 usage, 3 weights rejected.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the 26 conv tensors as float32 safetensors (torchvision names) whose header
    /// metadata records the source, its SHA-256, its format and the preprocessing expected.
    Convert {
        /// Weights to read (path or hf: spec).
        src: String,
        /// Output `.safetensors` file (written atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// Refuse the source unless its SHA-256 (hex) is this.
        #[arg(long)]
        sha256: Option<String>,
        /// Record this preprocessing instead of the one the source's format implies
        /// (Keras: caffe; torchvision/timm: torch).
        #[arg(long, value_enum)]
        preprocess: Option<Preprocess>,
        /// Record this as the source instead of SRC (e.g. the package the file came from).
        #[arg(long)]
        source: Option<String>,
    },
    /// Print the tensors, the parameter count and the provenance of a weights file.
    Info {
        /// Weights to read (path or hf: spec).
        weights: String,
        /// Refuse the file unless its SHA-256 (hex) is this.
        #[arg(long)]
        sha256: Option<String>,
    },
    /// Time `Vgg16::forward` (the CPU inference path extraction uses) on random input (or
    /// `--input`): prints one JSON line on stdout with the median seconds per batch and images
    /// per second.
    ///
    /// Threads: the global rayon pool (RAYON_NUM_THREADS, default one per core). Kernels: the
    /// widest instruction set the CPU has, capped by CONVBASE_ISA=amx|avx512|avx2|portable.
    Bench {
        /// Weights to run (path or hf: spec); speed does not depend on their values.
        weights: String,
        /// Images per batch.
        #[arg(long, default_value_t = 20)]
        batch: usize,
        /// Input height and width in pixels.
        #[arg(long, default_value_t = 150)]
        size: usize,
        /// Output layer.
        #[arg(long, default_value = "block5_pool")]
        layer: Layer,
        /// Timed runs (the median is reported), after `--warmup` untimed ones.
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// Untimed runs first (allocate frames and work space, fill caches).
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Run on this input instead of random values: raw little-endian f32, NCHW
        /// (batch, 3, size, size), preprocessed (so that peers can run the very same batch).
        #[arg(long)]
        input: Option<PathBuf>,
        /// Write the output of the last run here: raw little-endian f32, NHWC.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Time one fine-tuning pass through block5 (block5_conv1..3 + block5_pool) on random
    /// block4_pool-shaped maps: forward and backward (gradients of the block5 weights and
    /// biases, not of the input: cached features need none), or forward only. Prints one JSON
    /// line on stdout as `bench` does. Random weights: speed does not depend on their values.
    ///
    /// Threads and kernels as for `bench`.
    BenchBlock5 {
        /// Images per batch.
        #[arg(long, default_value_t = 20)]
        batch: usize,
        /// Height and width of the block4_pool maps (9 for 150 px images).
        #[arg(long, default_value_t = 9)]
        size: usize,
        /// `winograd`: NHWC, `Vgg16::forward_range_nhwc` (fine-tuning's path); `gemm`: NCHW,
        /// `forward_range_gemm`; `candle`: NCHW, candle's conv2d (`forward_range`).
        #[arg(long, default_value = "winograd")]
        path: Block5Path,
        /// Forward pass only (no gradients).
        #[arg(long)]
        forward_only: bool,
        /// Timed runs (the median is reported), after `--warmup` untimed ones.
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
    },
}

/// The block5 implementations `bench-block5` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Block5Path {
    Winograd,
    Gemm,
    Candle,
}

/// Median wall time of `runs` calls of `f` after `warmup` calls, and every timed run.
fn time_runs(
    warmup: usize,
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(f64, Vec<f64>)> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    Ok((sorted[sorted.len() / 2], times))
}

fn load(spec: &str, sha256: Option<&str>) -> anyhow::Result<Weights> {
    let spec = match sha256 {
        Some(sum) => format!("{spec}#sha256={sum}"),
        None => spec.to_string(),
    };
    Weights::load(&spec, &Device::Cpu).map_err(Vgg16Error::into_anyhow)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global);
    run(|| match cli.command {
        Command::Convert {
            src,
            output,
            sha256,
            preprocess,
            source,
        } => {
            let mut w = load(&src, sha256.as_deref())?;
            if let Some(p) = preprocess {
                w.preprocess = p;
            }
            if let Some(s) = source {
                w.metadata.remove(convbase_vgg16::meta::SOURCE);
                w.source = s;
            }
            if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            w.save(&output)
                .with_context(|| format!("writing {}", output.display()))?;
            tracing::info!(
                "wrote {} ({} weights from {}, expect {} input)",
                output.display(),
                w.format,
                w.origin(),
                w.preprocess
            );
            println!("{}", output.display());
            Ok(())
        }
        Command::Info { weights, sha256 } => {
            let w = load(&weights, sha256.as_deref())?;
            println!("source: {}", w.source);
            println!("sha256: {}", w.sha256);
            println!("format: {}", w.format);
            println!("preprocess: {}", w.preprocess);
            println!("parameters: {}", w.parameter_count());
            for (k, v) in &w.metadata {
                if k != convbase_vgg16::meta::TENSOR_SHA256 {
                    println!("metadata {k}: {v}");
                }
            }
            for (name, shape) in convbase_vgg16::conv_tensor_names() {
                println!("tensor {name} {shape:?}");
            }
            Ok(())
        }
        Command::Bench {
            weights,
            batch,
            size,
            layer,
            runs,
            warmup,
            input,
            output,
        } => {
            let w = load(&weights, None)?;
            let device = Device::Cpu;
            let model = Vgg16::new(&w, layer, GlobalPool::None, &device)?;
            let shape = (batch, 3, size, size);
            let x = match &input {
                Some(path) => {
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let want = batch * 3 * size * size * 4;
                    if bytes.len() != want {
                        return Err(InputRejected(format!(
                            "{}: {} bytes, expected {want} (f32 {batch}x3x{size}x{size})",
                            path.display(),
                            bytes.len()
                        ))
                        .into());
                    }
                    let v: Vec<f32> = bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    Tensor::from_vec(v, shape, &device)?
                }
                None => Tensor::randn(0f32, 50.0, shape, &device)?,
            };
            let isa = Isa::detect();
            let threads = rayon::current_num_threads();
            tracing::info!(
                "timing {runs} runs of batch {batch}, {size}px -> {layer}, {isa} kernels, {threads} threads"
            );
            let mut y = None;
            let (median, times) = time_runs(warmup, runs, || {
                y = Some(model.forward(&x)?);
                Ok(())
            })?;
            if let (Some(path), Some(y)) = (&output, &y) {
                let bytes: Vec<u8> = convbase_vgg16::flatten_hwc(y)?
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect();
                std::fs::write(path, bytes)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let json = serde_json::json!({
                "system": "convbase",
                "isa": isa.to_string(),
                "threads": threads,
                "batch": batch,
                "size": size,
                "layer": layer.to_string(),
                "median_s": median,
                "images_per_s": batch as f64 / median,
                "runs_s": times,
            });
            println!("{json}");
            Ok(())
        }
        Command::BenchBlock5 {
            batch,
            size,
            path,
            forward_only,
            runs,
            warmup,
        } => {
            // As the fine-tuning binary runs.
            convbase_cli::process::retain_freed_memory();
            let device = Device::Cpu;
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
            let model = Vgg16::from_varbuilder(vb, Layer::Block5Pool, GlobalPool::None)?;
            let c = Layer::Block4Pool.channels();
            let nhwc = Tensor::randn(0f32, 1.0, (batch, size, size, c), &device)?.relu()?;
            let nchw = nhwc.permute((0, 3, 1, 2))?.contiguous()?;
            let (from, to) = (Layer::Block5Conv1, Layer::Block5Pool);
            let pass = || -> candle_core::Result<Tensor> {
                match path {
                    Block5Path::Winograd => model.forward_range_nhwc(&nhwc, from, to),
                    Block5Path::Gemm => model.forward_range_gemm(&nchw, from, to),
                    Block5Path::Candle => model.forward_range(&nchw, from, to),
                }
            };
            let isa = Isa::detect();
            let threads = rayon::current_num_threads();
            tracing::info!(
                "timing {runs} runs of block5 ({path:?}, forward_only={forward_only}), batch \
                 {batch}, {size}x{size}x{c}, {isa} kernels, {threads} threads"
            );
            let (median, times) = time_runs(warmup, runs, || {
                let y = pass()?;
                if forward_only {
                    std::hint::black_box(y);
                } else {
                    std::hint::black_box(y.sum_all()?.backward()?);
                }
                Ok(())
            })?;
            let json = serde_json::json!({
                "system": "convbase",
                "path": format!("{path:?}").to_lowercase(),
                "forward_only": forward_only,
                "isa": isa.to_string(),
                "threads": threads,
                "batch": batch,
                "size": size,
                "median_s": median,
                "images_per_s": batch as f64 / median,
                "runs_s": times,
            });
            println!("{json}");
            Ok(())
        }
    })
}
