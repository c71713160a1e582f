//! `convbase-vgg16`: convert VGG16 conv-base weights from any source to safetensors with
//! provenance, and show what a weights file holds.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use candle_core::Device;
use clap::{Parser, Subcommand};
use convbase_cli::{GlobalArgs, InputRejected, init_logging, run};
use convbase_vgg16::{Preprocess, Vgg16Error, Weights};

/// VGG16 conv-base weights: convert them to safetensors with provenance, or inspect them.
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
}

fn load(spec: &str, sha256: Option<&str>) -> anyhow::Result<Weights> {
    let spec = match sha256 {
        Some(sum) => format!("{spec}#sha256={sum}"),
        None => spec.to_string(),
    };
    Weights::load(&spec, &Device::Cpu).map_err(|e: Vgg16Error| {
        if e.is_input_rejected() {
            anyhow::Error::new(InputRejected(e.to_string()))
        } else {
            anyhow::Error::new(e)
        }
    })
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
    })
}
