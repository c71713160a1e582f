//! A small real setup for the binary's tests: 22 synthetic 32 px images (two classes of
//! stripes), their block4_pool features (training images with a flipped second view) and
//! block5_pool features computed by the real conv base, and a dense head trained on the
//! latter. At 32 px, block4_pool is 2x2x512 and block5_pool 1x1x512.

#![allow(dead_code)] // each test binary uses part of this module

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use clap::Parser;
use convbase_format::{FeatureBatch, FeatureProvenance, FeaturesWriter, Split};
use convbase_head_dense::{DenseConfig, DenseHead};
use convbase_train::cli::TrainArgs;
use convbase_vgg16::{GlobalPool, Layer, Vgg16, Weights, flatten_hwc};

pub const SIZE: usize = 32;

pub fn weights_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/weights/vgg16-keras-imagenet.safetensors");
    assert!(
        path.is_file(),
        "{} not found: the real VGG16 weights are needed; run scripts/fetch-weights.sh",
        path.display()
    );
    path
}

/// Provenance of features of `layer` with `shape`, as convbase-extract records them.
pub fn provenance(
    weights: &Weights,
    layer: &str,
    shape: [usize; 3],
    views: u32,
) -> FeatureProvenance {
    serde_json::from_value(serde_json::json!({
        "weights_sha256": weights.sha256, "weights_source": weights.source, "layer": layer,
        "input_size": SIZE, "resize_filter": "nearest", "preprocess": "caffe", "pool": "none",
        "feature_shape": shape, "flatten_order": "hwc", "augment": "none", "views": views,
        "manifest_sha256": "00".repeat(32), "classes": ["horizontal", "vertical"],
        "dataset_root": "/synthetic"
    }))
    .unwrap()
}

/// Image `i` of `class` (0: horizontal stripes, 1: vertical), caffe-like values, CHW.
fn image(class: usize, i: usize, flip: bool) -> Vec<f32> {
    let mut state = (i as u64 + 1) * 0x9E37_79B9_7F4A_7C15 + class as u64;
    let mut px = vec![0f32; 3 * SIZE * SIZE];
    for c in 0..3 {
        for y in 0..SIZE {
            for x in 0..SIZE {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = (state >> 40) as f32 / (1u64 << 24) as f32 * 40.0 - 20.0;
                let xx = if flip { SIZE - 1 - x } else { x };
                let along = if class == 0 { y } else { xx };
                let stripe = if (along + i) % 6 < 3 { 90.0 } else { -90.0 };
                px[(c * SIZE + y) * SIZE + x] = stripe + noise + c as f32 * 10.0;
            }
        }
    }
    px
}

/// Paths of the files [`setup`] makes.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub weights: Weights,
    pub block4: PathBuf,
    pub block5: PathBuf,
    pub head_run: PathBuf,
}

#[derive(Parser)]
struct HeadTrain {
    #[command(flatten)]
    training: TrainArgs,
}

/// Writes the features of `rows` (split, class, index, view) at `layer`.
fn write(
    path: &Path,
    weights: &Weights,
    layer: Layer,
    rows: &[(Split, usize, usize, u32)],
    views: u32,
) {
    let base = Vgg16::new(weights, layer, GlobalPool::None, &Device::Cpu).unwrap();
    let mut pixels = Vec::new();
    for &(_, class, i, view) in rows {
        pixels.extend(image(class, i, view == 1));
    }
    let x = Tensor::from_vec(pixels, (rows.len(), 3, SIZE, SIZE), &Device::Cpu).unwrap();
    let out = base.forward(&x).unwrap();
    let (_, c, h, w) = out.dims4().unwrap();
    let prov = provenance(weights, layer.keras_name(), [h, w, c], views);
    let mut batch = FeatureBatch::default();
    for &(split, class, i, view) in rows {
        batch.paths.push(format!("{split}/{class}/{i}.png"));
        batch.sha256.push(format!("{:064x}", class * 1000 + i));
        batch.labels.push(class as i32);
        batch.splits.push(split);
        batch.views.push(view);
    }
    batch.values = flatten_hwc(&out).unwrap();
    let mut w = FeaturesWriter::create(path, &prov).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
}

pub fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let weights = Weights::load(weights_path().to_str().unwrap(), &Device::Cpu).unwrap();
    let mut images = Vec::new();
    for (split, n) in [(Split::Train, 6), (Split::Validation, 3), (Split::Test, 2)] {
        for class in 0..2 {
            for i in 0..n {
                images.push((split, class, i + 100 * split as usize, 0));
            }
        }
    }
    let mut with_views = Vec::new();
    for &(split, class, i, _) in &images {
        with_views.push((split, class, i, 0));
        if split == Split::Train {
            with_views.push((split, class, i, 1));
        }
    }
    let block4 = dir.path().join("block4.parquet");
    let block5 = dir.path().join("block5.parquet");
    write(&block4, &weights, Layer::Block4Pool, &with_views, 1);
    write(&block5, &weights, Layer::Block5Pool, &images, 0);
    let head_run = dir.path().join("head");
    let t = HeadTrain::parse_from(["train", "--epochs", "5", "--seed", "1", "--lr", "1e-3"]);
    convbase_train::cli::train::<DenseHead>(
        &block5,
        &head_run,
        &t.training,
        &DenseConfig {
            width: 16,
            depth: 1,
            dropout: 0.5,
        },
        &convbase_cli::GlobalArgs {
            quiet: true,
            verbose: 0,
        },
    )
    .unwrap();
    Setup {
        dir,
        weights,
        block4,
        block5,
        head_run,
    }
}
