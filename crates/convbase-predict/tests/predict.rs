//! `convbase-predict` gives, in one process, what the staged pipeline gives: the same
//! probabilities as the run's own predictions for the same images.

use std::path::{Path, PathBuf};

use clap::Parser;
use convbase_data::ResizeFilter;
use convbase_format::{
    Manifest, ManifestMeta, ManifestRow, Predictions, STATUS_OK, Split, sha256_file,
};
use convbase_head_dense::{DenseConfig, DenseHead};
use convbase_predict::{Prediction, Predictor};
use convbase_train::cli::TrainArgs;
use convbase_vgg16::{GlobalPool, Layer, Preprocess};

fn weights() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/weights/vgg16-keras-imagenet.safetensors");
    assert!(
        path.exists(),
        "real weights missing: run scripts/fetch-weights.sh first"
    );
    path
}

#[derive(Parser)]
struct Train {
    #[command(flatten)]
    training: TrainArgs,
    #[command(flatten)]
    model: DenseConfig,
}

/// Features of the manifest's images at `layer`, 32 px, written beside the manifest.
fn extract(manifest: &Path, layer: Layer) -> PathBuf {
    let features = manifest.with_file_name(format!("{layer}.parquet"));
    convbase_extract::run(
        &convbase_extract::Config {
            manifest: manifest.to_path_buf(),
            weights: weights().to_string_lossy().into_owned(),
            out: features.clone(),
            size: 32,
            batch: 8,
            layer,
            pool: GlobalPool::None,
            preprocess: Some(Preprocess::Rescale),
            resize_filter: ResizeFilter::Nearest,
            device: candle_core::Device::Cpu,
            root: None,
            reuse: Vec::new(),
            chunk_batches: 5,
            decode_threads: 1,
            views: 0,
            augment: None,
        },
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    features
}

/// A run trained on 16 small images (two colours of stripes), extracted at 32 px.
fn trained_run(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let root = dir.join("images");
    let mut rows = Vec::new();
    for i in 0..16u32 {
        let label = (i % 2) as i32;
        let rel = format!("{}/{i}.png", ["red", "blue"][label as usize]);
        let path = root.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_fn(40, 40, |x, y| {
            let v = ((x + y + i) % 8 * 30) as u8;
            if label == 0 {
                image::Rgb([200, v, 20])
            } else {
                image::Rgb([20, v, 200])
            }
        })
        .save(&path)
        .unwrap();
        rows.push(ManifestRow {
            path: rel,
            class: ["blue", "red"][1 - label as usize].into(),
            label: 1 - label,
            split: if i < 12 {
                Split::Train
            } else {
                Split::Validation
            },
            sha256: Some(sha256_file(&path).unwrap()),
            bytes: None,
            width: Some(40),
            height: Some(40),
            color: Some("Rgb8".into()),
            status: STATUS_OK.into(),
        });
    }
    rows.sort_by(|a, b| a.path.cmp(&b.path));
    let validation: Vec<PathBuf> = rows
        .iter()
        .filter(|r| r.split == Split::Validation)
        .map(|r| root.join(&r.path))
        .collect();
    let manifest = dir.join("manifest.parquet");
    Manifest {
        meta: ManifestMeta {
            classes: vec!["blue".into(), "red".into()],
            root: root.to_string_lossy().into_owned(),
            layout: "presplit".into(),
        },
        rows,
    }
    .write(&manifest)
    .unwrap();
    let features = extract(&manifest, Layer::Block5Pool);
    let run = dir.join("run");
    let t = Train::parse_from(["train", "--epochs", "3", "--seed", "7", "--lr", "1e-4"]);
    convbase_train::cli::train::<DenseHead>(
        &features,
        &run,
        &t.training,
        &t.model,
        &convbase_cli::GlobalArgs {
            quiet: true,
            verbose: 0,
        },
    )
    .unwrap();
    (run, validation)
}

#[test]
fn predicts_what_the_staged_pipeline_predicted_and_reports_bad_images() {
    let dir = tempfile::tempdir().unwrap();
    let (run, mut images) = trained_run(dir.path());
    let bad = dir.path().join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff not really").unwrap();
    images.insert(1, bad.clone());

    let predictor = Predictor::new(&run, None, candle_core::Device::Cpu).unwrap();
    let results = predictor.predict(&images).unwrap();
    assert_eq!(
        results.len(),
        images.len(),
        "one result per image, in order"
    );
    let err = results[1].as_ref().unwrap_err();
    assert!(err.contains("broken.jpg"), "{err}");

    assert_eq!(same_as_staged(dir.path(), &run, &images, &results), 4);
}

/// Checks each prediction against the run's own (staged) predictions of that image; returns
/// how many were compared.
fn same_as_staged(
    dir: &Path,
    run: &Path,
    images: &[PathBuf],
    results: &[Result<Prediction, String>],
) -> usize {
    let staged = Predictions::read(&run.join("predictions.parquet")).unwrap();
    let mut compared = 0;
    for (image, result) in images.iter().zip(results) {
        let Ok(p) = result else { continue };
        let rel = image.strip_prefix(dir.join("images")).unwrap();
        let row = staged
            .rows
            .iter()
            .find(|r| Path::new(&r.path) == rel && r.view == 0)
            .unwrap();
        let mine: Vec<f32> = staged.classes.iter().map(|c| p.probabilities[c]).collect();
        for (a, b) in mine.iter().zip(&row.probabilities) {
            assert!(
                (a - b).abs() < 1e-5,
                "{}: {mine:?} vs {:?}",
                p.path,
                row.probabilities
            );
        }
        assert_eq!(p.label_id as i32, row.predicted);
        assert_eq!(p.label, staged.classes[p.label_id]);
        compared += 1;
    }
    compared
}

#[test]
fn a_fine_tuned_run_runs_its_own_block5() {
    let dir = tempfile::tempdir().unwrap();
    let (head_run, images) = trained_run(dir.path());
    let block4 = extract(&dir.path().join("manifest.parquet"), Layer::Block4Pool);
    let run = dir.path().join("finetuned");
    let t = Train::parse_from(["train", "--epochs", "2", "--seed", "5", "--lr", "1e-4"]);
    let job = convbase_finetune::Job {
        features: block4,
        head_run: head_run.clone(),
        weights: None,
        out: run.clone(),
    };
    let quiet = convbase_cli::GlobalArgs {
        quiet: true,
        verbose: 0,
    };
    convbase_finetune::train(&job, &t.training, &quiet).unwrap();

    let predictor = Predictor::new(&run, None, candle_core::Device::Cpu).unwrap();
    let results = predictor.predict(&images).unwrap();
    assert_eq!(same_as_staged(dir.path(), &run, &images, &results), 4);
    // Fine-tuning moved the predictions away from the head's: the run's block5 is used.
    let before = Predictor::new(&head_run, None, candle_core::Device::Cpu)
        .unwrap()
        .predict(&images)
        .unwrap();
    let moved = results
        .iter()
        .zip(&before)
        .map(|(a, b)| (a.as_ref().unwrap().probability - b.as_ref().unwrap().probability).abs())
        .fold(0f32, f32::max);
    assert!(moved > 1e-4, "fine-tuning changed no prediction ({moved})");
}

#[test]
fn other_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = trained_run(dir.path());
    // Same tensors, different bytes: a copy with one metadata byte changed is other weights.
    let other = dir.path().join("other.safetensors");
    let mut bytes = std::fs::read(weights()).unwrap();
    let brace = bytes.iter().position(|&b| b == b'{').unwrap();
    bytes.insert(brace + 1, b' ');
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) + 1;
    bytes[..8].copy_from_slice(&header.to_le_bytes());
    std::fs::write(&other, bytes).unwrap();
    let err = Predictor::new(
        &run,
        Some(other.to_str().unwrap()),
        candle_core::Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not the ones the run was trained on"), "{err}");
}
