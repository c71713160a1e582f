//! The real `convbase-head-linear` binary: same contracts as the dense head, so swapping
//! heads in a pipeline is swapping the binary.

#[path = "../../convbase-head-dense/tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::{Spec, two_clusters, write_features};
use convbase_format::{Predictions, Split};

const BIN: &str = env!("CARGO_BIN_EXE_convbase-head-linear");

#[test]
fn trains_predicts_and_refuses_like_the_dense_head() {
    let tmp = tempfile::tempdir().unwrap();
    let features = tmp.path().join("features.parquet");
    two_clusters(&features);
    let run = tmp.path().join("run");
    let o = Command::new(BIN)
        .args([
            "train",
            "--features",
            features.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ])
        .args([
            "--epochs", "5", "--lr", "1e-2", "--seed", "1", "--l2", "0.001",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "config.json",
        "model.safetensors",
        "history.csv",
        "curves.png",
        "predictions.parquet",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["head"], "convbase-head-linear");
    assert_eq!(config["model"]["l2"], 0.001);
    let p = Predictions::read(&run.join("predictions.parquet")).unwrap();
    assert_eq!(p.head, "convbase-head-linear");
    let val: Vec<_> = p
        .rows
        .iter()
        .filter(|r| r.split == Split::Validation)
        .collect();
    let acc = val.iter().filter(|r| r.predicted == r.label).count() as f64 / val.len() as f64;
    assert!(acc > 0.9, "validation accuracy {acc}");

    let other = tmp.path().join("other.parquet");
    write_features(
        &other,
        &Spec {
            dim: 32,
            counts: [&[5, 5], &[5, 5], &[5, 5]],
            separation: 1.0,
            views: 1,
            layer: "block4_pool",
        },
    );
    let out = tmp.path().join("pred.parquet");
    let o = Command::new(BIN)
        .args([
            "predict",
            "--run",
            run.to_str().unwrap(),
            "--features",
            other.to_str().unwrap(),
        ])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(!out.exists());
}

#[test]
fn three_classes_use_a_softmax() {
    let tmp = tempfile::tempdir().unwrap();
    let features = tmp.path().join("features.parquet");
    write_features(
        &features,
        &Spec {
            dim: 12,
            counts: [&[40, 40, 40], &[20, 20, 20], &[0, 0, 0]],
            separation: 3.0,
            views: 1,
            layer: "block5_pool",
        },
    );
    let run = tmp.path().join("run");
    let o = Command::new(BIN)
        .args([
            "train",
            "--features",
            features.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ])
        .args(["--epochs", "10", "--lr", "1e-2", "--seed", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = Predictions::read(&run.join("predictions.parquet")).unwrap();
    assert_eq!(p.classes.len(), 3);
    assert!(p.rows.iter().all(|r| r.probabilities.len() == 3));
    let val: Vec<_> = p
        .rows
        .iter()
        .filter(|r| r.split == Split::Validation)
        .collect();
    let acc = val.iter().filter(|r| r.predicted == r.label).count() as f64 / val.len() as f64;
    assert!(acc > 0.8, "validation accuracy {acc}");
}
