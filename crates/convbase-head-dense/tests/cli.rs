//! The real `convbase-head-dense` binary on synthetic features files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};
use common::{Spec, two_clusters, write_features};
use convbase_format::{Predictions, Split};

const BIN: &str = env!("CARGO_BIN_EXE_convbase-head-dense");

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

fn train(features: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--features",
        features.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--lr",
        "1e-3",
        "--width",
        "16",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn config(run_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("config.json")).unwrap()).unwrap()
}

/// The history without its wall-clock column.
fn history(run_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(run_dir.join("history.csv"))
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

fn weights(run_dir: &Path) -> Vec<(String, Vec<f32>)> {
    let mut w: Vec<_> =
        candle_core::safetensors::load(run_dir.join("model.safetensors"), &Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, t): (String, Tensor)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn run_dir_is_complete_and_the_head_learns() {
    let tmp = tempfile::tempdir().unwrap();
    let features = tmp.path().join("features.parquet");
    two_clusters(&features);
    let out = tmp.path().join("run");
    let o = train(&features, &out, &["--epochs", "6", "--seed", "1"]);
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("epoch 6/6 loss"), "{stderr}");

    let names: Vec<_> = listing(&out)
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "config.json",
            "curves.png",
            "history.csv",
            "model.safetensors",
            "predictions.parquet"
        ]
    );
    let staging: Vec<_> = listing(tmp.path())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".run.tmp.")
        })
        .collect();
    assert!(staging.is_empty(), "staging directory left: {staging:?}");

    let c = config(&out);
    assert_eq!(c["head"], "convbase-head-dense");
    assert_eq!(c["seed"], 1);
    assert_eq!(c["model"]["width"], 16);
    assert_eq!(c["optimizer"]["name"], "rmsprop");
    assert_eq!(c["optimizer"]["rho"], 0.9);
    assert_eq!(c["fit"]["batch_size"], 20);
    assert_eq!(c["features"]["layer"], "block5_pool");
    assert_eq!(c["outcome"]["epochs_run"], 6);

    let h = std::fs::read_to_string(out.join("history.csv")).unwrap();
    let lines: Vec<_> = h.lines().collect();
    assert_eq!(lines[0], "epoch,loss,acc,val_loss,val_acc,seconds");
    assert_eq!(lines.len(), 7);
    let last: Vec<f64> = lines[6].split(',').map(|v| v.parse().unwrap()).collect();
    assert!(
        last[4] > 0.9,
        "validation accuracy on separable clusters: {}",
        last[4]
    );

    let img = image::open(out.join("curves.png")).unwrap();
    assert_eq!((img.width(), img.height()), (1200, 500));

    let p = Predictions::read(&out.join("predictions.parquet")).unwrap();
    assert_eq!(p.head, "convbase-head-dense");
    assert_eq!(p.rows.len(), 400, "view 0 of every split");
    for split in Split::ALL {
        assert!(p.rows.iter().any(|r| r.split == split));
    }
    for r in &p.rows {
        assert_eq!(r.probabilities.len(), 2);
        assert!((r.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let test: Vec<_> = p.rows.iter().filter(|r| r.split == Split::Test).collect();
    let acc = test.iter().filter(|r| r.predicted == r.label).count() as f64 / test.len() as f64;
    assert!(acc > 0.9, "test accuracy {acc}");

    // predict with the run on the same features gives the run's own predictions.
    let pred = tmp.path().join("pred.parquet");
    let o = run(&[
        "predict",
        "--run",
        out.to_str().unwrap(),
        "--features",
        features.to_str().unwrap(),
        "--out",
        pred.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let q = Predictions::read(&pred).unwrap();
    assert_eq!(q.rows, p.rows);
}

#[test]
fn same_seed_same_run_other_seed_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let features = tmp.path().join("features.parquet");
    two_clusters(&features);
    let runs: Vec<_> = ["1", "1", "2"]
        .iter()
        .enumerate()
        .map(|(i, seed)| {
            let out = tmp.path().join(format!("run{i}"));
            assert!(
                train(&features, &out, &["--epochs", "3", "--seed", seed])
                    .status
                    .success()
            );
            out
        })
        .collect();
    assert_eq!(history(&runs[0]), history(&runs[1]));
    assert_eq!(
        weights(&runs[0]),
        weights(&runs[1]),
        "bitwise-identical weights"
    );
    assert_ne!(history(&runs[0]), history(&runs[2]));
    assert_ne!(weights(&runs[0]), weights(&runs[2]));
}

#[test]
fn predict_refuses_incompatible_features_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let features = tmp.path().join("features.parquet");
    two_clusters(&features);
    let out = tmp.path().join("run");
    assert!(
        train(&features, &out, &["--epochs", "1", "--seed", "3"])
            .status
            .success()
    );
    let spec = |layer| Spec {
        dim: 32,
        counts: [&[5, 5], &[5, 5], &[5, 5]],
        separation: 1.5,
        views: 1,
        layer,
    };
    let other_layer = tmp.path().join("block4.parquet");
    write_features(&other_layer, &spec("block4_pool"));
    let other_dim = tmp.path().join("dim.parquet");
    write_features(
        &other_dim,
        &Spec {
            dim: 8,
            ..spec("block5_pool")
        },
    );
    for (bad, field) in [(&other_layer, "layer"), (&other_dim, "feature_shape")] {
        let pred = tmp.path().join("pred.parquet");
        let o = run(&[
            "predict",
            "--run",
            out.to_str().unwrap(),
            "--features",
            bad.to_str().unwrap(),
            "--out",
            pred.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(3), "input rejected");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains(field) && stderr.contains("not compatible"),
            "{stderr}"
        );
        assert!(!pred.exists());
    }
    let files: Vec<_> = listing(tmp.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(
        files,
        ["block4.parquet", "dim.parquet", "features.parquet", "run"]
    );
}

#[test]
fn a_run_of_another_head_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let features = tmp.path().join("features.parquet");
    two_clusters(&features);
    let out = tmp.path().join("run");
    assert!(
        train(&features, &out, &["--epochs", "1", "--seed", "3"])
            .status
            .success()
    );
    let err =
        convbase_train::TrainedModel::<convbase_head_linear::LinearHead>::load(&out).unwrap_err();
    assert!(matches!(err, convbase_train::TrainError::Model { .. }));
    assert!(
        err.to_string().contains("trained by convbase-head-dense"),
        "{err}"
    );
}

#[test]
fn features_without_training_rows_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let features = tmp.path().join("features.parquet");
    write_features(
        &features,
        &Spec {
            dim: 4,
            counts: [&[0, 0], &[5, 5], &[0, 0]],
            separation: 1.0,
            views: 1,
            layer: "block5_pool",
        },
    );
    let out = tmp.path().join("run");
    let o = train(&features, &out, &["--epochs", "1"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no rows of split `train`"));
    assert_eq!(listing(tmp.path()), [features]);
}

#[test]
fn early_stopping_restores_the_best_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let features = tmp.path().join("features.parquet");
    two_clusters(&features);
    // No later epoch beats the first by 100: epoch 1 stays best, training stops after
    // `patience` more epochs and ends with epoch 1's weights.
    let stopped = tmp.path().join("stopped");
    let o = train(
        &features,
        &stopped,
        &[
            "--epochs",
            "10",
            "--seed",
            "5",
            "--patience",
            "2",
            "--min-delta",
            "100",
            "--keep-best",
        ],
    );
    assert!(o.status.success());
    let c = config(&stopped);
    assert_eq!(c["outcome"]["epochs_run"], 3);
    assert_eq!(c["outcome"]["stopped_early"], true);
    assert_eq!(c["outcome"]["best_epoch"], 1);
    assert_eq!(c["outcome"]["weights_epoch"], 1);
    assert_eq!(history(&stopped).len(), 4);
    let one = tmp.path().join("one");
    assert!(
        train(&features, &one, &["--epochs", "1", "--seed", "5"])
            .status
            .success()
    );
    assert_eq!(weights(&stopped), weights(&one), "weights of epoch 1");

    // Without --keep-best the last epoch's weights stay.
    let last = tmp.path().join("last");
    let o = train(
        &features,
        &last,
        &[
            "--epochs",
            "10",
            "--seed",
            "5",
            "--patience",
            "2",
            "--min-delta",
            "100",
        ],
    );
    assert!(o.status.success());
    assert_eq!(config(&last)["outcome"]["weights_epoch"], 3);
    assert_ne!(weights(&last), weights(&one));
}

#[test]
fn balanced_class_weights_are_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let features = tmp.path().join("features.parquet");
    write_features(
        &features,
        &Spec {
            dim: 8,
            counts: [&[60, 20], &[10, 10], &[0, 0]],
            separation: 1.5,
            views: 1,
            layer: "block5_pool",
        },
    );
    let out = tmp.path().join("run");
    let o = train(
        &features,
        &out,
        &["--epochs", "1", "--class-weight", "balanced"],
    );
    assert!(o.status.success());
    let w: Vec<f64> = serde_json::from_value(config(&out)["class_weights"].clone()).unwrap();
    // 80 / (2 * 60) and 80 / (2 * 20).
    assert!((w[0] - 2.0 / 3.0).abs() < 1e-6 && w[1] == 2.0, "{w:?}");
    let bad = run(&[
        "train",
        "--features",
        features.to_str().unwrap(),
        "--out",
        tmp.path().join("bad").to_str().unwrap(),
        "--class-weight",
        "cows=2",
    ]);
    assert_eq!(bad.status.code(), Some(3));
}

/// The loss of one batch under class weights: sum(w[y_i] * l_i) / batch, as Keras.
#[test]
fn class_weights_scale_each_sample_loss() {
    use convbase_head_dense::{DenseConfig, DenseHead};
    use convbase_train::data::ClassWeights;
    use convbase_train::{Model, OptimizerConfig, SeededMasks, Trainer};

    let config = DenseConfig {
        width: 8,
        depth: 1,
        dropout: 0.0,
    };
    let mut noise = common::Noise::new(3);
    let x: Vec<f32> = (0..6 * 5).map(|_| noise.normal()).collect();
    let x = Tensor::from_vec(x, (6, 5), &Device::Cpu).unwrap();
    let labels = [0, 1, 1, 0, 1, 0];
    let loss = |weights: Option<Vec<f32>>| {
        let model = Model::<DenseHead>::init(&config, 5, 2, 11).unwrap();
        let opt = OptimizerConfig::Sgd {
            lr: 0.0,
            momentum: 0.0,
        }
        .build(model.vars());
        let mut t = Trainer::new(model, opt, weights.map(ClassWeights));
        let mut masks = SeededMasks(convbase_train::rng::rng(
            0,
            convbase_train::rng::Stream::Dropout,
        ));
        t.step(&x, &labels, &mut masks).unwrap().loss
    };
    let plain = loss(None);
    let doubled = loss(Some(vec![2.0, 2.0]));
    assert!(
        (doubled - 2.0 * plain).abs() < 1e-6,
        "{doubled} vs 2 x {plain}"
    );
    // Class 0 only, and class 1 only, add up to the unweighted loss.
    let zeros = loss(Some(vec![1.0, 0.0]));
    let ones = loss(Some(vec![0.0, 1.0]));
    assert!(zeros > 0.0 && ones > 0.0);
    assert!(
        (zeros + ones - plain).abs() < 1e-6,
        "{zeros} + {ones} vs {plain}"
    );
    let tilted = loss(Some(vec![1.0, 3.0]));
    assert!((tilted - (zeros + 3.0 * ones)).abs() < 1e-5);
}
