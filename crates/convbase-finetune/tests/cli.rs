//! The real `convbase-finetune` binary on features computed by the real conv base (see
//! `common`): the starting point equals the conv base + head, a run directory like the
//! heads', `predict` agreeing with it, and inputs that do not belong together refused with
//! exit code 3 and nothing written.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use candle_core::{Device, Tensor};
use convbase_finetune::start_model;
use convbase_format::{Features, Predictions, Split, read_features_meta};
use convbase_head_dense::DenseHead;
use convbase_train::TrainedModel;

const BIN: &str = env!("CARGO_BIN_EXE_convbase-finetune");

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

fn train(features: &Path, head_run: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "-q",
        "train",
        "--features",
        features.to_str().unwrap(),
        "--head-run",
        head_run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn tensors(run_dir: &Path) -> HashMap<String, Vec<f32>> {
    candle_core::safetensors::load(run_dir.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t): (String, Tensor)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

fn config(run_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("config.json")).unwrap()).unwrap()
}

/// Asserts a refusal: exit code 3, `needle` in the message, `out` not created.
fn assert_refused(out: &Output, needle: &str, dir: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
    assert!(!dir.exists(), "{} written", dir.display());
    let staging: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".ft.tmp."))
        .collect();
    assert!(staging.is_empty(), "staging left behind: {staging:?}");
}

#[test]
fn starts_where_the_conv_base_and_head_are() {
    let s = common::setup();
    let head = TrainedModel::<DenseHead>::load(&s.head_run).unwrap();
    let (block4, _) = read_features_meta(&s.block4).unwrap();
    let (_, model) = start_model(&block4, &s.weights, &head, &s.head_run).unwrap();
    // Block5 (candle's convs on HWC rows turned NCHW) + head on block4_pool features must
    // give what the head gives on the conv base's own block5_pool features.
    let b4 = Features::read(&s.block4).unwrap();
    let b5 = Features::read(&s.block5).unwrap();
    let view0: Vec<usize> = (0..b4.rows.len())
        .filter(|&i| b4.rows.views[i] == 0)
        .collect();
    let mut rows = Vec::new();
    for &i in &view0 {
        rows.extend_from_slice(b4.rows.row(i, b4.dim));
    }
    assert_eq!(view0.len(), b5.rows.len());
    for (k, &i) in view0.iter().enumerate() {
        assert_eq!(b4.rows.paths[i], b5.rows.paths[k]);
    }
    let ours = model.predict_proba(&rows, view0.len()).unwrap();
    let theirs = head
        .model
        .predict_proba(&b5.rows.values, b5.rows.len())
        .unwrap();
    for (a, b) in ours.iter().zip(&theirs) {
        assert!((a - b).abs() < 1e-5, "{ours:?} vs {theirs:?}");
    }
}

#[test]
fn trains_into_a_run_directory_and_predicts_with_it() {
    let s = common::setup();
    let out = s.dir.path().join("ft");
    let o = train(
        &s.block4,
        &s.head_run,
        &out,
        &["--epochs", "2", "--seed", "3", "--lr", "1e-4"],
    );
    assert!(o.status.success());
    for f in [
        "config.json",
        "model.safetensors",
        "history.csv",
        "curves.png",
        "predictions.parquet",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let c = config(&out);
    assert_eq!(c["head"], "convbase-finetune");
    assert_eq!(c["optimizer"]["name"], "rmsprop");
    assert_eq!(c["optimizer"]["lr"], 1e-4);
    assert_eq!(c["features"]["layer"], "block4_pool");
    assert_eq!(c["model"]["head_run"]["features"]["layer"], "block5_pool");
    assert_eq!(c["model"]["head"]["dropout"], 0.5);
    assert_eq!(c["model"]["block4_shape"], serde_json::json!([2, 2, 512]));
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 3, "{history}");

    // Block5 and the head are both in the model file, both moved by training.
    let trained = tensors(&out);
    let head = tensors(&s.head_run);
    let mut names: Vec<_> = trained.keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "features.24.bias",
            "features.24.weight",
            "features.26.bias",
            "features.26.weight",
            "features.28.bias",
            "features.28.weight",
            "hidden.0.bias",
            "hidden.0.kernel",
            "output.bias",
            "output.kernel"
        ]
    );
    let base: Vec<f32> = s.weights.tensors()["features.28.weight"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_ne!(trained["features.28.weight"], base);
    assert_ne!(trained["hidden.0.kernel"], head["hidden.0.kernel"]);

    // Predictions of view 0 of every split; `predict` on the same features agrees.
    let staged = Predictions::read(&out.join("predictions.parquet")).unwrap();
    assert_eq!(staged.head, "convbase-finetune");
    for split in Split::ALL {
        assert!(staged.rows.iter().any(|r| r.split == split), "{split}");
    }
    assert!(staged.rows.iter().all(|r| r.view == 0));
    assert_eq!(staged.rows.len(), 22);
    let p = s.dir.path().join("p.parquet");
    let o = run(&[
        "-q",
        "predict",
        "--run",
        out.to_str().unwrap(),
        "--features",
        s.block4.to_str().unwrap(),
        "--out",
        p.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let again = Predictions::read(&p).unwrap();
    assert_eq!(again.rows.len(), 34, "every row, views included");
    for r in &staged.rows {
        let a = again
            .rows
            .iter()
            .find(|a| a.path == r.path && a.view == 0)
            .unwrap();
        for (x, y) in a.probabilities.iter().zip(&r.probabilities) {
            assert!((x - y).abs() < 1e-6, "{}: {x} vs {y}", r.path);
        }
    }

    // The same seed gives the same weights; the default learning rate is the seed's 1e-5.
    let out2 = s.dir.path().join("ft2");
    let o = train(
        &s.block4,
        &s.head_run,
        &out2,
        &["--epochs", "2", "--seed", "3", "--lr", "1e-4"],
    );
    assert!(o.status.success());
    assert_eq!(tensors(&out2), trained);
    let out3 = s.dir.path().join("ft3");
    assert!(
        train(&s.block4, &s.head_run, &out3, &["--epochs", "1"])
            .status
            .success()
    );
    assert_eq!(config(&out3)["optimizer"]["lr"], 1e-5);
}

#[test]
fn refuses_inputs_that_do_not_belong_together() {
    let s = common::setup();
    let out = s.dir.path().join("ft");
    let one = ["--epochs", "1"];

    // Features of another layer.
    let o = train(&s.block5, &s.head_run, &out, &one);
    assert_refused(&o, "block4_pool", &out);

    // block4 features from other weights than the head's features.
    let mut other = Features::read(&s.block4).unwrap();
    other.provenance.weights_sha256 = "ff".repeat(32);
    let path = s.dir.path().join("other.parquet");
    let mut w = convbase_format::FeaturesWriter::create(&path, &other.provenance).unwrap();
    w.write(&other.rows).unwrap();
    w.finish().unwrap();
    let o = train(&path, &s.head_run, &out, &one);
    assert_refused(&o, "weights_sha256", &out);

    // Weights whose checksum differs from the features' (same tensors, one more byte).
    let weights = s.dir.path().join("other.safetensors");
    let mut bytes = std::fs::read(common::weights_path()).unwrap();
    let brace = bytes.iter().position(|&b| b == b'{').unwrap();
    bytes.insert(brace + 1, b' ');
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) + 1;
    bytes[..8].copy_from_slice(&header.to_le_bytes());
    std::fs::write(&weights, bytes).unwrap();
    let mut args = one.to_vec();
    args.extend(["--weights", weights.to_str().unwrap()]);
    let o = train(&s.block4, &s.head_run, &out, &args);
    assert_refused(&o, "are not the ones", &out);
}
