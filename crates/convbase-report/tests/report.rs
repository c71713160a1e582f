//! The report's numbers against scikit-learn goldens, and the binary on synthetic run
//! directories made in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use convbase_format::{
    FeatureProvenance, Manifest, ManifestMeta, ManifestRow, PredictionRow, Predictions, Split,
};
use convbase_report::metrics::{self, Outcomes};
use image::{Rgb, RgbImage};
use serde_json::Value;

// ---------------------------------------------------------------- goldens

#[test]
fn metrics_match_scikit_learn_goldens() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metrics.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let classes: Vec<String> = serde_json::from_value(case["classes"].clone()).unwrap();
        let labels: Vec<usize> = serde_json::from_value(case["labels"].clone()).unwrap();
        let predicted: Vec<usize> = serde_json::from_value(case["predicted"].clone()).unwrap();
        let rows: Vec<Vec<f64>> = serde_json::from_value(case["probabilities"].clone()).unwrap();
        let probabilities: Vec<f32> = rows.iter().flatten().map(|&p| p as f32).collect();
        let m = metrics::evaluate(
            name,
            &classes,
            Outcomes {
                labels: &labels,
                predicted: &predicted,
                probabilities: &probabilities,
            },
        );
        let e = &case["expected"];
        let close = |what: &str, got: f64, want: &Value| {
            let want = want.as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-9,
                "{name}: {what} = {got}, golden (numpy/scikit-learn) says {want}"
            );
        };
        assert_eq!(m.count, e["count"].as_u64().unwrap() as usize, "{name}");
        close("accuracy", m.accuracy, &e["accuracy"]);
        close("log_loss", m.log_loss, &e["log_loss"]);
        let confusion: Vec<Vec<usize>> = serde_json::from_value(e["confusion"].clone()).unwrap();
        assert_eq!(m.confusion, confusion, "{name}: confusion");
        for (k, cm) in m.per_class.iter().enumerate() {
            close("precision", cm.precision, &e["precision"][k]);
            close("recall", cm.recall, &e["recall"][k]);
            close("f1", cm.f1, &e["f1"][k]);
            assert_eq!(
                cm.support as u64,
                e["support"][k].as_u64().unwrap(),
                "{name}"
            );
        }
        close("macro_precision", m.macro_precision, &e["macro_precision"]);
        close("macro_recall", m.macro_recall, &e["macro_recall"]);
        close("macro_f1", m.macro_f1, &e["macro_f1"]);
        match (m.roc_auc, e["roc_auc"].as_f64()) {
            (Some(got), Some(_)) => close("roc_auc", got, &e["roc_auc"]),
            (None, None) => {}
            (got, want) => panic!("{name}: roc_auc {got:?}, scikit-learn says {want:?}"),
        }
    }
}

// ---------------------------------------------------------------- synthetic run dirs

const RED: Rgb<u8> = Rgb([220, 20, 20]);
const GREY_TILE: Rgb<u8> = Rgb([190, 190, 190]);

fn provenance(root: &Path) -> FeatureProvenance {
    FeatureProvenance {
        weights_sha256: "ab".repeat(32),
        weights_source: "test".into(),
        layer: "block5_pool".into(),
        input_size: 150,
        resize_filter: "nearest".into(),
        preprocess: "rescale".into(),
        pool: "none".into(),
        feature_shape: vec![4, 4, 512],
        flatten_order: "hwc".into(),
        augment: "none".into(),
        views: 0,
        manifest_sha256: "cd".repeat(32),
        classes: vec!["cats".into(), "dogs".into()],
        dataset_root: root.display().to_string(),
    }
}

fn row(path: &str, split: Split, label: i32, view: u32, p_dog: f32) -> PredictionRow {
    PredictionRow {
        path: path.into(),
        split,
        label,
        view,
        probabilities: vec![1.0 - p_dog, p_dog],
        predicted: i32::from(p_dog > 0.5),
    }
}

/// A run directory with train (4 rows, 3 right) and validation (7 rows, 3 wrong) view-0
/// predictions, plus view-1 rows that are all wrong and must not count. The most
/// confident validation mistake's image is missing; the second one is solid red.
fn make_run(dir: &Path, with_extras: bool) -> PathBuf {
    let data = dir.join("data");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let images = [
        ("train/cats/c1.png", Rgb([30, 30, 30])),
        ("train/cats/c2.png", Rgb([60, 60, 60])),
        ("train/dogs/d1.png", Rgb([90, 90, 90])),
        ("train/dogs/d2.png", Rgb([120, 120, 120])),
        ("validation/cats/c3.png", RED),
        ("validation/cats/c4.png", Rgb([20, 200, 20])),
        ("validation/cats/c5.png", Rgb([20, 20, 200])),
        ("validation/dogs/d3.png", Rgb([200, 200, 20])),
        ("validation/dogs/d4.png", Rgb([20, 200, 200])),
        ("validation/dogs/d5.png", Rgb([200, 20, 200])),
    ];
    for (path, color) in images {
        let p = data.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        // 10x10 with a dark diagonal, so thumbnails are not flat.
        let mut img = RgbImage::from_pixel(10, 10, color);
        img.put_pixel(0, 0, Rgb([0, 0, 0]));
        img.save(&p).unwrap();
    }
    use Split::{Train, Validation};
    let mut rows = vec![
        row("train/cats/c1.png", Train, 0, 0, 0.1),
        row("train/cats/c2.png", Train, 0, 0, 0.7), // wrong
        row("train/dogs/d1.png", Train, 1, 0, 0.8),
        row("train/dogs/d2.png", Train, 1, 0, 0.9),
        row("validation/cats/c3.png", Validation, 0, 0, 0.8), // wrong, p(true) 0.2
        row("validation/cats/c4.png", Validation, 0, 0, 0.3),
        row("validation/cats/c5.png", Validation, 0, 0, 0.2),
        row("validation/dogs/d3.png", Validation, 1, 0, 0.6),
        row("validation/dogs/d4.png", Validation, 1, 0, 0.45), // wrong, p(true) 0.45
        row("validation/dogs/d9.png", Validation, 1, 0, 0.05), // wrong, p(true) 0.05, missing
        row("validation/dogs/d5.png", Validation, 1, 0, 0.9),
    ];
    let augmented: Vec<PredictionRow> = rows
        .iter()
        .map(|r| {
            let wrong = if r.label == 0 { 0.99 } else { 0.01 };
            row(&r.path, r.split, r.label, 1, wrong)
        })
        .collect();
    rows.extend(augmented);
    Predictions {
        classes: vec!["cats".into(), "dogs".into()],
        head: "convbase-head-dense".into(),
        features: provenance(&data),
        rows,
    }
    .write(&run.join("predictions.parquet"))
    .unwrap();
    if with_extras {
        std::fs::write(
            run.join("history.csv"),
            "epoch,loss,acc,val_loss,val_acc,seconds\n1,0.69,0.55,0.68,0.57,0.1\n2,0.5,0.75,0.6,0.5714,0.1\n",
        )
        .unwrap();
        std::fs::write(
            run.join("config.json"),
            r#"{"lr": 2e-5, "epochs": 2, "note": "<b>"}"#,
        )
        .unwrap();
        RgbImage::from_fn(40, 30, |x, y| Rgb([x as u8 * 6, y as u8 * 8, 100]))
            .save(run.join("curves.png"))
            .unwrap();
    }
    run
}

fn report(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_convbase-report"))
        .args(args)
        .arg("--quiet")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn png(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

fn variance(img: &RgbImage) -> f64 {
    let v: Vec<f64> = img.as_raw().iter().map(|&b| f64::from(b)).collect();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64
}

#[test]
fn report_of_a_full_run_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let run = make_run(tmp.path(), true);
    let out = report(&[run.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Numbers: view 0 only (the all-wrong view-1 rows would give accuracy 0).
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let val = &m["splits"][1];
    assert_eq!(val["split"], "validation");
    assert_eq!(val["count"], 7);
    assert!((val["accuracy"].as_f64().unwrap() - 4.0 / 7.0).abs() < 1e-12);
    assert_eq!(val["confusion"], serde_json::json!([[2, 1], [2, 2]]));
    assert!((m["splits"][0]["accuracy"].as_f64().unwrap() - 0.75).abs() < 1e-12);
    assert_eq!(m["errors"]["total"], 3);
    assert_eq!(m["history"]["epochs"], 2);
    assert_eq!(m["notes"], serde_json::json!([]));
    let shown = m["errors"]["shown"].as_array().unwrap();
    let order: Vec<&str> = shown.iter().map(|s| s["path"].as_str().unwrap()).collect();
    assert_eq!(
        order,
        [
            "validation/dogs/d9.png",
            "validation/cats/c3.png",
            "validation/dogs/d4.png"
        ]
    );
    assert!(
        shown[0]["image_error"]
            .as_str()
            .unwrap()
            .contains("unreadable")
    );
    assert!(shown[1]["image_error"].is_null());

    // stdout: the metrics table and the confusion matrix.
    assert!(stdout.contains("validation"), "{stdout}");
    assert!(stdout.contains("0.5714"), "{stdout}");
    assert!(stdout.contains("confusion matrix, validation"), "{stdout}");

    // Two panels of a 2-class matrix.
    let confusion = png(&run.join("confusion.png"));
    assert_eq!(confusion.dimensions(), (584, 302));
    assert!(variance(&confusion) > 0.0);

    // 3 errors: a 2x2 grid of 166x210 cells under a 36-pixel header.
    let errors = png(&run.join("errors.png"));
    assert_eq!(errors.dimensions(), (348, 464));
    assert!(variance(&errors) > 0.0);
    // Tile 1 (missing image) is a grey placeholder; tile 2 shows the red image upscaled.
    assert_eq!(errors.get_pixel(16 + 140, 36 + 140), &GREY_TILE);
    assert_eq!(errors.get_pixel(16 + 166 + 75, 36 + 75), &RED);

    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert_eq!(
        html.matches("src=\"data:image/png;base64,").count(),
        3,
        "confusion, errors, curves"
    );
    assert!(html.contains("0.5714"));
    assert!(
        html.contains("&quot;&lt;b&gt;&quot;"),
        "config JSON is escaped"
    );
    assert!(
        !html.contains("src=\"confusion.png\""),
        "no external references"
    );

    // Nothing half-written left behind.
    let stray: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(stray.is_empty());
}

#[test]
fn missing_history_is_noted_and_out_and_top_are_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let run = make_run(tmp.path(), false);
    let out_dir = tmp.path().join("elsewhere");
    let out = report(&[
        run.as_os_str(),
        "--out".as_ref(),
        out_dir.as_os_str(),
        "--top".as_ref(),
        "1".as_ref(),
        "--split".as_ref(),
        "train".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["report.html", "confusion.png", "errors.png", "metrics.json"] {
        assert!(out_dir.join(f).is_file(), "{f}");
        assert!(!run.join(f).exists(), "{f} not in the run dir");
    }
    let errors = png(&out_dir.join("errors.png"));
    assert_eq!(errors.dimensions(), (182, 254));
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(m["errors"]["split"], "train");
    assert_eq!(m["errors"]["shown"][0]["path"], "train/cats/c2.png");
    assert!(m["history"].is_null());
    let notes = m["notes"].to_string();
    for what in ["history", "configuration", "curves"] {
        assert!(notes.contains(what), "{notes}");
    }
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("No training history"));
    assert_eq!(html.matches("data:image/png;base64,").count(), 2);
}

#[test]
fn a_manifest_in_place_of_predictions_is_rejected_with_code_3() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    Manifest {
        meta: ManifestMeta {
            classes: vec!["cats".into(), "dogs".into()],
            root: "/data".into(),
            layout: "presplit".into(),
        },
        rows: vec![ManifestRow {
            path: "train/cats/1.jpg".into(),
            class: "cats".into(),
            label: 0,
            split: Split::Train,
            sha256: None,
            bytes: None,
            width: None,
            height: None,
            color: None,
            status: "ok".into(),
        }],
    }
    .write(&run.join("predictions.parquet"))
    .unwrap();
    let out = report(&[run.as_os_str()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("predictions"));
    assert!(!run.join("report.html").exists());
}
