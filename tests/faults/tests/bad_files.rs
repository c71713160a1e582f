//! Contract files and weights that must be refused: truncated or foreign Parquet files,
//! files of another kind or of a future schema version, a column of the wrong type,
//! features from other weights given to a head, truncated or corrupted weights and model
//! files. Each must fail with the exit code its binary's `--help` documents (3: input
//! rejected; 1: the run failed, e.g. a missing file), an error naming the file, and nothing
//! written at the output path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use convbase_faults_tests::bins::bin;
use convbase_faults_tests::fixtures::{copy_demo, make_bad_corpus, temp_files, weights};
use convbase_faults_tests::proc;

const LIMIT: Duration = Duration::from_secs(300);

/// A real pipeline run on 24 demo images: manifest, features, a trained run directory.
struct Pipeline {
    dir: tempfile::TempDir,
    manifest: PathBuf,
    features: PathBuf,
    run: PathBuf,
}

fn extract(manifest: &Path, weights: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(bin("convbase-extract"));
    cmd.args(["-q", "--size", "32", "--batch", "8"])
        .arg("-w")
        .arg(weights)
        .arg("-m")
        .arg(manifest)
        .arg("-o")
        .arg(out);
    cmd
}

fn train(features: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(bin("convbase-head-dense"));
    cmd.args([
        "-q", "train", "--epochs", "2", "--width", "16", "--seed", "1",
    ])
    .arg("--features")
    .arg(features)
    .arg("--out")
    .arg(out);
    cmd
}

fn predict(run: &Path, features: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(bin("convbase-head-dense"));
    cmd.args(["-q", "predict"])
        .arg("--run")
        .arg(run)
        .arg("--features")
        .arg(features)
        .arg("--out")
        .arg(out);
    cmd
}

impl Pipeline {
    fn new() -> Pipeline {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        copy_demo(&data, &[("train", 6), ("validation", 3), ("test", 3)], 0);
        let manifest = dir.path().join("manifest.parquet");
        let mut cmd = Command::new(bin("convbase-prepare"));
        cmd.arg("-q").arg(&data).arg("-o").arg(&manifest);
        proc::run(&mut cmd, LIMIT).expect_code(0, "prepare");
        let features = dir.path().join("features.parquet");
        proc::run(&mut extract(&manifest, &weights(), &features), LIMIT).expect_code(0, "extract");
        let run = dir.path().join("run");
        proc::run(&mut train(&features, &run), LIMIT).expect_code(0, "train");
        Pipeline {
            dir,
            manifest,
            features,
            run,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A copy of `src` cut to `keep` of its bytes.
    fn truncated(&self, src: &Path, name: &str, keep: f64) -> PathBuf {
        let bytes = std::fs::read(src).unwrap();
        let p = self.path(name);
        std::fs::write(&p, &bytes[..(bytes.len() as f64 * keep) as usize]).unwrap();
        p
    }

    /// A copy of the run directory with `file` replaced by `bytes`.
    fn run_with(&self, name: &str, file: &str, bytes: &[u8]) -> PathBuf {
        let run = self.path(name);
        std::fs::create_dir_all(&run).unwrap();
        for e in std::fs::read_dir(&self.run).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), run.join(e.file_name())).unwrap();
        }
        std::fs::write(run.join(file), bytes).unwrap();
        run
    }
}

/// One input that must be refused.
struct Case {
    what: String,
    cmd: Command,
    code: i32,
    /// Words the error must contain (besides the file's path).
    words: &'static str,
    /// The file at fault, which the error must name.
    culprit: PathBuf,
    /// Where the command would write: nothing may appear there.
    output: PathBuf,
}

/// Runs every case and returns what went wrong, one line per problem.
fn check(cases: Vec<Case>) -> Vec<String> {
    let mut problems = Vec::new();
    for mut c in cases {
        let run = proc::run(&mut c.cmd, LIMIT);
        let err = run.stderr.trim();
        let culprit = c.culprit.display().to_string();
        let mut wrong = Vec::new();
        if run.code != Some(c.code) {
            wrong.push(format!("exit code {:?}, documented {}", run.code, c.code));
        }
        if !err.contains(&culprit) {
            wrong.push(format!("error does not name {culprit}"));
        }
        if !err.contains(c.words) {
            wrong.push(format!("error lacks `{}`", c.words));
        }
        if c.output.exists() {
            wrong.push(format!("{} was written", c.output.display()));
        }
        let dir = c.output.parent().unwrap();
        let left: Vec<String> = temp_files(dir)
            .into_iter()
            .chain(
                std::fs::read_dir(dir)
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".work") || n.ends_with(".tmp")),
            )
            .collect();
        if !left.is_empty() {
            wrong.push(format!("left beside the output: {left:?}"));
        }
        if wrong.is_empty() {
            eprintln!("ok   {:<55} exit {} | {}", c.what, c.code, last_line(err));
        } else {
            eprintln!(
                "FAIL {:<55} {} | {}",
                c.what,
                wrong.join("; "),
                last_line(err)
            );
            problems.push(format!("{}: {}", c.what, wrong.join("; ")));
        }
    }
    problems
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or("")
}

#[test]
fn bad_contract_files_are_refused_and_nothing_is_written() {
    let p = Pipeline::new();
    let bad = p.path("bad");
    make_bad_corpus(&[
        "parquet".as_ref(),
        "--manifest".as_ref(),
        p.manifest.as_os_str(),
        "--features".as_ref(),
        p.features.as_os_str(),
        "--predictions".as_ref(),
        p.run.join("predictions.parquet").as_os_str(),
        bad.as_os_str(),
    ]);
    let b = |name: &str| bad.join(name);
    let out_dir = p.path("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let features_out = out_dir.join("features.parquet");
    let run_out = out_dir.join("run");
    let predictions_out = out_dir.join("predictions.parquet");
    let manifest_cut = p.truncated(&p.manifest, "manifest-cut.parquet", 0.6);
    let features_cut = p.truncated(&p.features, "features-cut.parquet", 0.5);
    let empty = p.truncated(&p.features, "empty.parquet", 0.0);
    let missing = p.path("no-such-manifest.parquet");

    // Features of the same images computed with other weights (a valid file whose values
    // differ), for a head trained on the real ones.
    let other_weights = p.path("other-weights.safetensors");
    write_weights(
        &other_weights,
        |name, data| {
            if name == "features.28.bias" {
                data.iter_mut().for_each(|v| *v += 0.5);
            }
        },
        true,
    );
    let other_features = p.path("features-other-weights.parquet");
    proc::run(
        &mut extract(&p.manifest, &other_weights, &other_features),
        LIMIT,
    )
    .expect_code(0, "extract with other weights");

    let model = std::fs::read(p.run.join("model.safetensors")).unwrap();
    let run_model_cut = p.run_with(
        "run-model-cut",
        "model.safetensors",
        &model[..model.len() / 2],
    );
    let run_model_garbage = p.run_with(
        "run-model-garbage",
        "model.safetensors",
        b"\x20\x00\x00\x00\x00\x00\x00\x00{\"not\": json at all}     ",
    );
    let predictions_v2 = std::fs::read(b("predictions-v2.parquet")).unwrap();
    let run_predictions_v2 =
        p.run_with("run-predictions-v2", "predictions.parquet", &predictions_v2);
    let predictions = std::fs::read(p.run.join("predictions.parquet")).unwrap();
    let run_predictions_cut = p.run_with(
        "run-predictions-cut",
        "predictions.parquet",
        &predictions[..predictions.len() / 2],
    );

    let ext = |m: &Path| extract(m, &weights(), &features_out);
    let tr = |f: &Path| train(f, &run_out);
    let pr = |run: &Path, f: &Path| predict(run, f, &predictions_out);
    let report = |run: &Path| {
        let mut cmd = Command::new(bin("convbase-report"));
        cmd.arg("-q")
            .arg(run)
            .arg("--out")
            .arg(out_dir.join("report"));
        cmd
    };
    let case = |what: &str,
                cmd: Command,
                code: i32,
                words: &'static str,
                culprit: &Path,
                output: &Path| Case {
        what: what.to_string(),
        cmd,
        code,
        words,
        culprit: culprit.to_path_buf(),
        output: output.to_path_buf(),
    };
    let cases = vec![
        case(
            "extract: truncated manifest",
            ext(&manifest_cut),
            3,
            "not a readable Parquet file",
            &manifest_cut,
            &features_out,
        ),
        case(
            "extract: empty manifest file",
            ext(&empty),
            3,
            "not a readable Parquet file",
            &empty,
            &features_out,
        ),
        case(
            "extract: foreign Parquet as manifest",
            ext(&b("foreign.parquet")),
            3,
            "not a convbase file",
            &b("foreign.parquet"),
            &features_out,
        ),
        case(
            "extract: features file as manifest",
            ext(&p.features),
            3,
            "expected a manifest file",
            &p.features,
            &features_out,
        ),
        case(
            "extract: manifest of schema version 2",
            ext(&b("manifest-v2.parquet")),
            3,
            "newer than this tool understands",
            &b("manifest-v2.parquet"),
            &features_out,
        ),
        case(
            "extract: manifest whose label column is text",
            ext(&b("manifest-text-label.parquet")),
            3,
            "column `label`",
            &b("manifest-text-label.parquet"),
            &features_out,
        ),
        case(
            "extract: manifest that does not exist",
            ext(&missing),
            1,
            "No such file",
            &missing,
            &features_out,
        ),
        case(
            "train: truncated features",
            tr(&features_cut),
            3,
            "not a readable Parquet file",
            &features_cut,
            &run_out,
        ),
        case(
            "train: foreign Parquet as features",
            tr(&b("foreign.parquet")),
            3,
            "not a convbase file",
            &b("foreign.parquet"),
            &run_out,
        ),
        case(
            "train: manifest as features",
            tr(&p.manifest),
            3,
            "expected a features file",
            &p.manifest,
            &run_out,
        ),
        case(
            "train: features of schema version 2",
            tr(&b("features-v2.parquet")),
            3,
            "newer than this tool understands",
            &b("features-v2.parquet"),
            &run_out,
        ),
        case(
            "train: footer's feature_shape contradicts the vectors",
            tr(&b("features-wrong-dim.parquet")),
            3,
            "column `features`",
            &b("features-wrong-dim.parquet"),
            &run_out,
        ),
        case(
            "train: features column of float64",
            tr(&b("features-float64.parquet")),
            3,
            "column `features`",
            &b("features-float64.parquet"),
            &run_out,
        ),
        case(
            "predict: features from other weights",
            pr(&p.run, &other_features),
            3,
            "weights_sha256 differs",
            &other_features,
            &predictions_out,
        ),
        case(
            "predict: features of schema version 2",
            pr(&p.run, &b("features-v2.parquet")),
            3,
            "newer than this tool understands",
            &b("features-v2.parquet"),
            &predictions_out,
        ),
        case(
            "predict: truncated model file",
            pr(&run_model_cut, &p.features),
            3,
            "model.safetensors",
            &run_model_cut.join("model.safetensors"),
            &predictions_out,
        ),
        case(
            "predict: model file with a garbage header",
            pr(&run_model_garbage, &p.features),
            3,
            "not a readable safetensors file",
            &run_model_garbage.join("model.safetensors"),
            &predictions_out,
        ),
        case(
            "report: predictions of schema version 2",
            report(&run_predictions_v2),
            3,
            "newer than this tool understands",
            &run_predictions_v2.join("predictions.parquet"),
            &out_dir.join("report"),
        ),
        case(
            "report: truncated predictions",
            report(&run_predictions_cut),
            3,
            "not a readable Parquet file",
            &run_predictions_cut.join("predictions.parquet"),
            &out_dir.join("report"),
        ),
    ];
    let n = cases.len();
    let problems = check(cases);
    assert!(
        problems.is_empty(),
        "{} of {n} cases wrong:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Rewrites the real weights through `change(name, values)`; `drop_checksums` removes the
/// per-tensor SHA-256 metadata (a legitimately different file), otherwise it is kept (the
/// tensors then no longer match it: corrupted bytes).
fn write_weights(dest: &Path, mut change: impl FnMut(&str, &mut Vec<f32>), drop_checksums: bool) {
    write_tensors(dest, |tensors, metadata| {
        for (name, (_, data)) in tensors.iter_mut() {
            change(name, data);
        }
        if drop_checksums {
            metadata.remove("convbase.tensor_sha256");
        }
    });
}

type Tensors = Vec<(String, (Vec<usize>, Vec<f32>))>;

/// Reads the real weights, lets `edit` change tensors and metadata, writes `dest`.
fn write_tensors(dest: &Path, edit: impl FnOnce(&mut Tensors, &mut HashMap<String, String>)) {
    let bytes = std::fs::read(weights()).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = header.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (name, (view.shape().to_vec(), data))
        })
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    edit(&mut tensors, &mut metadata);
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, (shape, data))| {
            (
                name,
                shape,
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = raw
        .iter()
        .map(|(name, shape, data)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, Some(metadata), dest).unwrap();
}

#[test]
fn bad_weights_are_refused_with_exit_3_and_nothing_is_written() {
    let p = Pipeline::new();
    let w = |name: &str| p.path(name);
    let real = std::fs::read(weights()).unwrap();
    std::fs::write(w("cut.safetensors"), &real[..real.len() / 2]).unwrap();
    std::fs::write(w("empty.safetensors"), b"").unwrap();
    std::fs::write(
        w("text.safetensors"),
        b"these are not the weights you are looking for\n",
    )
    .unwrap();
    std::fs::write(
        w("garbage-header.safetensors"),
        b"\x20\x00\x00\x00\x00\x00\x00\x00{\"not\": json at all}     ",
    )
    .unwrap();
    // Flipped bytes inside a tensor, header intact: the per-tensor checksums catch them.
    let mut flipped = real.clone();
    let n = flipped.len();
    for b in &mut flipped[n - 4096..n - 4000] {
        *b ^= 0x55;
    }
    std::fs::write(w("flipped.safetensors"), &flipped).unwrap();
    write_weights(
        &w("nan.safetensors"),
        |name, data| {
            if name == "features.0.weight" {
                data[5] = f32::NAN;
            }
        },
        true,
    );
    write_tensors(&w("missing-tensor.safetensors"), |t, m| {
        t.retain(|(name, _)| name != "features.28.bias");
        m.remove("convbase.tensor_sha256");
    });
    write_tensors(&w("wrong-shape.safetensors"), |t, m| {
        for (name, (shape, _)) in t.iter_mut() {
            if name == "features.0.weight" {
                *shape = vec![64, 3, 9]; // same number of values, wrong shape
            }
        }
        m.remove("convbase.tensor_sha256");
    });

    let out_dir = p.path("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("features.parquet");
    let case = |what: &str, file: &str, code: i32, words: &'static str| Case {
        what: format!("extract: {what}"),
        cmd: extract(&p.manifest, &w(file), &out),
        code,
        words,
        culprit: w(file),
        output: out.clone(),
    };
    let mut cases = vec![
        case("truncated weights", "cut.safetensors", 3, "truncated"),
        case(
            "empty weights file",
            "empty.safetensors",
            3,
            "not a weights file",
        ),
        case(
            "text file as weights",
            "text.safetensors",
            3,
            "not a weights file",
        ),
        case(
            "weights with a garbage header",
            "garbage-header.safetensors",
            3,
            "safetensors",
        ),
        case(
            "weights with flipped bytes",
            "flipped.safetensors",
            3,
            "corrupted bytes",
        ),
        case("weights holding a NaN", "nan.safetensors", 3, "non-finite"),
        case(
            "weights missing a tensor",
            "missing-tensor.safetensors",
            3,
            "features.28.bias",
        ),
        case(
            "weights with a tensor of the wrong shape",
            "wrong-shape.safetensors",
            3,
            "features.0.weight",
        ),
        case(
            "weights that do not exist",
            "no-such.safetensors",
            1,
            "No such file",
        ),
    ];
    // convbase-predict documents the same code for weights that are not usable.
    let image = p
        .path("data/test/shirt")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut predict = Command::new(bin("convbase-predict"));
    predict
        .arg("-q")
        .arg(&p.run)
        .arg(&image)
        .arg("-w")
        .arg(w("cut.safetensors"));
    cases.push(Case {
        what: "predict: truncated weights".into(),
        cmd: predict,
        code: 3,
        words: "truncated",
        culprit: w("cut.safetensors"),
        output: out_dir.join("nothing-written-here"),
    });
    let n = cases.len();
    let problems = check(cases);
    assert!(
        problems.is_empty(),
        "{} of {n} cases wrong:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
