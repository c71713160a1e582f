//! Fine-tuning numerics against numpy: two RMSprop steps of block5 + a dense head, starting
//! from the real VGG16 block5 weights, computed by `scripts/dev/make_finetune_goldens.py`
//! (float64; NHWC im2col conv with a hand-derived backward, checked by finite differences)
//! and compared with the real model, loss and optimiser.
//!
//! Inputs are 3 block4_pool maps of 4x4x512 as HWC rows (the features files' layout), so a
//! wrong layout conversion, a wrong pool gradient (candle's own `max_pool2d` passes a
//! quarter) or a wrong update rule moves the numbers by far more than the tolerances.
//! Tolerances (observed maximum in brackets, with block5's Winograd F(3x3, 3x3) convs):
//! block5_pool 1e-5 of its largest value [5.3e-7]; gradients 1e-4 of each tensor's largest
//! [4.5e-6]; losses 1e-5 absolute [2.4e-7]. float32 sums of the conv's 4608 products err by about 1e-6 of their magnitude
//! sum, and the script keeps only cases without ReLU inputs, pool maxima or probabilities
//! near a kink, so no rounding flips a branch. Parameters after the two steps are compared as
//! (after - before) / lr, within 1e-2 [2.4e-3, the float32 spacing of the larger biases
//! divided by lr]: RMSprop moves each element by about lr*sqrt(10) at its first step.
//! Planted faults seen to fail: candle's `max_pool2d` (gradients off by 0.75), rows read as
//! NCHW instead of HWC (block5_pool off by 0.18).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use convbase_finetune::{FineTuneConfig, FineTuned, HeadRun, tensor_names};
use convbase_head_dense::DenseConfig;
use convbase_train::{DropoutMasks, Head, Mode, Model, OptimizerConfig, Trainer};
use convbase_vgg16::Weights;
use serde::Deserialize;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/block5_rmsprop.safetensors")
}

fn real_weights() -> Weights {
    let path = repo().join("data/weights/vgg16-keras-imagenet.safetensors");
    assert!(
        path.is_file(),
        "{} not found: the real VGG16 weights are needed; run scripts/fetch-weights.sh",
        path.display()
    );
    Weights::load(path.to_str().unwrap(), &Device::Cpu).unwrap()
}

#[derive(Deserialize)]
struct Optimizer {
    lr: f64,
    rho: f64,
    eps: f64,
}

#[derive(Deserialize)]
struct Case {
    labels1: Vec<u32>,
    labels2: Vec<u32>,
    block4_shape: Vec<usize>,
    width: u64,
    dropout: f32,
    optimizer: Optimizer,
    losses: Vec<f32>,
}

struct Golden {
    case: Case,
    tensors: HashMap<String, Tensor>,
}

impl Golden {
    fn load() -> Self {
        let path = golden_path();
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        let case = header["__metadata__"]["case"].as_str().unwrap();
        Golden {
            case: serde_json::from_str(case).unwrap(),
            tensors: candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap(),
        }
    }

    fn get(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("golden has no `{name}`"))
    }

    /// A mask source handing out `mask1` then `mask2`.
    fn masks(&self) -> GivenMasks {
        GivenMasks(
            ["mask1", "mask2"]
                .iter()
                .map(|m| self.get(m).flatten_all().unwrap().to_vec1().unwrap())
                .collect(),
        )
    }
}

struct GivenMasks(VecDeque<Vec<f32>>);

impl DropoutMasks for GivenMasks {
    fn mask(&mut self, rows: usize, cols: usize, _rate: f32) -> Vec<f32> {
        let m = self.0.pop_front().expect("one mask per step");
        assert_eq!(m.len(), rows * cols);
        m
    }
}

fn provenance() -> convbase_format::FeatureProvenance {
    serde_json::from_value(serde_json::json!({
        "weights_sha256": "", "weights_source": "", "layer": "block5_pool", "input_size": 64,
        "resize_filter": "nearest", "preprocess": "caffe", "pool": "none",
        "feature_shape": [2, 2, 512], "flatten_order": "hwc", "augment": "none",
        "manifest_sha256": "", "classes": ["a", "b"], "dataset_root": ""
    }))
    .unwrap()
}

/// The model at the golden's starting point: the real block5 weights and its head.
fn model(g: &Golden, weights: &Weights) -> Model<FineTuned> {
    let mut tensors = HashMap::new();
    for (name, _) in tensor_names() {
        tensors.insert(name.clone(), weights.tensors()[&name].clone());
    }
    for (name, t) in &g.tensors {
        if let Some(head) = name.strip_prefix("init.") {
            tensors.insert(head.to_string(), t.clone());
        }
    }
    let config = FineTuneConfig {
        head: DenseConfig {
            width: g.case.width,
            depth: 1,
            dropout: g.case.dropout,
        },
        block4_shape: g.case.block4_shape.clone(),
        pool: "none".into(),
        head_run: HeadRun {
            dir: "golden".into(),
            seed: 0,
            features_file: "golden".into(),
            features: provenance(),
            outcome: None,
        },
    };
    let inputs = g.case.block4_shape.iter().product();
    Model::from_tensors(&config, inputs, 2, tensors, &golden_path()).unwrap()
}

/// The compared part of a parameter: `[:4, :8]` of a conv kernel, the whole of the others.
fn compared(name: &str, t: &Tensor) -> Vec<f32> {
    let t = if t.rank() == 4 {
        t.narrow(0, 0, 4).unwrap().narrow(1, 0, 8).unwrap()
    } else {
        t.clone()
    };
    t.flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Largest |a - b| relative to the largest |b|.
fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
        / scale
}

#[test]
fn block5_pool_of_hwc_rows_matches_numpy() {
    let g = Golden::load();
    let m = model(&g, &real_weights());
    let ours = m.head.head_inputs(g.get("x1")).unwrap();
    let ours = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want = g
        .get("pool1")
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let err = relative_error(&ours, &want);
    eprintln!("block5_pool relative error {err:.2e}");
    assert!(err < 1e-5, "block5_pool relative error {err}");
}

#[test]
fn plain_candle_path_matches_numpy_too() {
    // Block5::forward_nchw (candle NCHW tensors, GEMM convs): the reference path kept beside
    // the Winograd one.
    let g = Golden::load();
    let m = model(&g, &real_weights());
    let ours = m.head.head_inputs_nchw(g.get("x1")).unwrap();
    let ours = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want = g
        .get("pool1")
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let err = relative_error(&ours, &want);
    eprintln!("block5_pool (NCHW path) relative error {err:.2e}");
    assert!(err < 1e-5, "block5_pool (NCHW path) relative error {err}");
}

#[test]
fn gradients_of_block5_and_head_match_numpy() {
    let g = Golden::load();
    let m = model(&g, &real_weights());
    let x = g.get("x1");
    let mut masks = g.masks();
    let logits = m.head.forward(x, &mut Mode::Train(&mut masks)).unwrap();
    let targets = m.output.targets(&g.case.labels1, &Device::Cpu).unwrap();
    let (losses, _) = m.output.losses(&logits, &targets).unwrap();
    let loss = losses.mean_all().unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in m.params.vars() {
        let ours = compared(name, grads.get(var.as_tensor()).unwrap());
        let want = compared(name, g.get(&format!("grad1.{name}")));
        let err = relative_error(&ours, &want);
        eprintln!("gradient of {name}: relative error {err:.2e}");
        assert!(err < 1e-4, "gradient of {name}: relative error {err}");
    }
}

#[test]
fn two_rmsprop_steps_match_numpy() {
    let g = Golden::load();
    let m = model(&g, &real_weights());
    let before: HashMap<String, Vec<f32>> = m
        .params
        .vars()
        .iter()
        .map(|(n, v)| (n.clone(), compared(n, v.as_tensor())))
        .collect();
    let o = &g.case.optimizer;
    let optimizer = OptimizerConfig::Rmsprop {
        lr: o.lr,
        rho: o.rho,
        eps: o.eps,
    };
    let vars = m.vars();
    let mut trainer = Trainer::new(m, optimizer.build(vars), None);
    let mut masks = g.masks();
    for (step, (x, labels)) in [("x1", &g.case.labels1), ("x2", &g.case.labels2)]
        .into_iter()
        .enumerate()
    {
        let s = trainer.step(g.get(x), labels, &mut masks).unwrap();
        let want = g.case.losses[step];
        eprintln!(
            "loss of step {}: error {:.2e}",
            step + 1,
            (s.loss - want).abs()
        );
        assert!(
            (s.loss - want).abs() < 1e-5,
            "loss of step {}: {} vs {want}",
            step + 1,
            s.loss
        );
    }
    let lr = o.lr as f32;
    for (name, var) in trainer.model().params.vars() {
        let after = compared(name, var.as_tensor());
        let want = compared(name, g.get(&format!("final.{name}")));
        let b = &before[name];
        let ours: Vec<f32> = after.iter().zip(b).map(|(a, b)| (a - b) / lr).collect();
        let want: Vec<f32> = want.iter().zip(b).map(|(a, b)| (a - b) / lr).collect();
        let err = ours
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("update of {name}: error {err:.2e} in units of lr");
        assert!(err < 1e-2, "update of {name}: error {err} in units of lr");
        assert!(
            want.iter().any(|v| v.abs() > 0.1),
            "{name}: the golden's update is too small to test anything"
        );
    }
}
