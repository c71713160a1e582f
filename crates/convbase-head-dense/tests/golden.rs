//! The heads' numerics against numpy: a few training steps of small heads, computed by
//! `scripts/dev/make_head_goldens.py` (float64, Keras' semantics) from the same initial
//! weights, batches and dropout masks, compared with the real heads and optimisers.
//!
//! Tolerance: 1e-5 absolute on weights and losses. The Rust side computes in float32
//! (relative rounding 6e-8) over sums of at most 16 terms, and the script only keeps
//! cases without near-kinks (ReLU inputs or clipped probabilities near their edges) or
//! near-cancelling gradient sums, so the observed error is at most 2.4e-7; the weights move by
//! 1e-3..1e-1 over the 5 steps, and each planted deviation below moves them by far more
//! than the tolerance.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use convbase_head_dense::{DenseConfig, DenseHead};
use convbase_head_linear::{LinearConfig, LinearHead};
use convbase_train::data::ClassWeights;
use convbase_train::{DropoutMasks, Head, Model, Optimizer, OptimizerConfig, Trainer};
use serde::Deserialize;

const TOL: f32 = 1e-5;

#[derive(Deserialize)]
struct Array {
    shape: Vec<usize>,
    data: Vec<f32>,
}

#[derive(Deserialize)]
struct Step {
    x: Array,
    labels: Vec<u32>,
    masks: Option<Vec<Array>>,
    loss: f32,
    acc: f32,
}

#[derive(Deserialize)]
struct Golden {
    inputs: usize,
    hidden: u64,
    width: u64,
    classes: usize,
    dropout: f32,
    l2: f32,
    class_weight: Option<Vec<f32>>,
    optimizer: OptimizerConfig,
    initial: HashMap<String, Array>,
    steps: Vec<Step>,
    #[serde(rename = "final")]
    final_: HashMap<String, Array>,
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../convbase-train/tests/golden")
        .join(format!("{name}.json"))
}

fn load(name: &str) -> Golden {
    let path = golden_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The golden's dropout masks, handed out in order.
struct GivenMasks(VecDeque<Vec<f32>>);

impl DropoutMasks for GivenMasks {
    fn mask(&mut self, rows: usize, cols: usize, _rate: f32) -> Vec<f32> {
        let m = self
            .0
            .pop_front()
            .expect("a mask for every dropout layer and step");
        assert_eq!(m.len(), rows * cols);
        m
    }
}

/// Largest deviation from the golden of any step's loss, accuracy or any final weight.
fn deviation<H: Head>(
    g: &Golden,
    config: &H::Config,
    optimizer: impl FnOnce(Vec<Var>) -> Box<dyn Optimizer>,
) -> f32 {
    let dev = Device::Cpu;
    let tensors = g
        .initial
        .iter()
        .map(|(k, a)| {
            (
                k.clone(),
                Tensor::from_slice(&a.data, a.shape.as_slice(), &dev).unwrap(),
            )
        })
        .collect();
    let model = Model::<H>::from_tensors(config, g.inputs, g.classes, tensors, Path::new("golden"))
        .unwrap();
    let opt = optimizer(model.vars());
    let mut trainer = Trainer::new(model, opt, g.class_weight.clone().map(ClassWeights));
    let mut worst = 0f32;
    for step in &g.steps {
        let x = Tensor::from_slice(&step.x.data, step.x.shape.as_slice(), &dev).unwrap();
        let masks = step
            .masks
            .iter()
            .flatten()
            .map(|m| m.data.clone())
            .collect();
        let mut masks = GivenMasks(masks);
        let s = trainer.step(&x, &step.labels, &mut masks).unwrap();
        assert!(masks.0.is_empty(), "every given mask used");
        worst = worst.max((s.loss - step.loss).abs());
        let acc = s.correct as f32 / step.labels.len() as f32;
        worst = worst.max((acc - step.acc).abs());
    }
    for (name, var) in trainer.model().params.vars() {
        let want = &g.final_[name];
        assert_eq!(var.dims(), want.shape.as_slice(), "{name}");
        let got = var.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in got.iter().zip(&want.data) {
            worst = worst.max((a - b).abs());
        }
    }
    worst
}

fn dense_config(g: &Golden) -> DenseConfig {
    DenseConfig {
        width: g.width,
        depth: g.hidden,
        dropout: g.dropout,
    }
}

fn dense_deviation(name: &str) -> f32 {
    let g = load(name);
    let optimizer = g.optimizer.clone();
    deviation::<DenseHead>(&g, &dense_config(&g), |vars| optimizer.build(vars))
}

#[test]
fn dense_binary_rmsprop_matches_numpy() {
    let d = dense_deviation("dense_binary_rmsprop");
    assert!(d <= TOL, "max deviation {d}");
}

#[test]
fn dense_dropout_rmsprop_matches_numpy() {
    let d = dense_deviation("dense_binary_dropout_rmsprop");
    assert!(d <= TOL, "max deviation {d}");
}

#[test]
fn dense_softmax_with_class_weights_matches_numpy() {
    let d = dense_deviation("dense_softmax3_weighted_rmsprop");
    assert!(d <= TOL, "max deviation {d}");
}

#[test]
fn adam_matches_numpy() {
    let d = dense_deviation("dense_binary_adam");
    assert!(d <= TOL, "max deviation {d}");
}

#[test]
fn adamw_matches_numpy() {
    let d = dense_deviation("dense_binary_adamw");
    assert!(d <= TOL, "max deviation {d}");
}

#[test]
fn sgd_momentum_matches_numpy() {
    let d = dense_deviation("dense_binary_sgd_momentum");
    assert!(d <= TOL, "max deviation {d}");
}

#[test]
fn linear_probe_with_l2_matches_numpy() {
    let g = load("linear_softmax3_l2_rmsprop");
    let optimizer = g.optimizer.clone();
    let config = LinearConfig { l2: g.l2 };
    let d = deviation::<LinearHead>(&g, &config, |vars| optimizer.build(vars));
    assert!(d <= TOL, "max deviation {d}");
}

#[test]
fn planted_pytorch_rmsprop_fails_the_comparison() {
    let g = load("dense_binary_rmsprop");
    let OptimizerConfig::Rmsprop { lr, rho, eps } = g.optimizer else {
        panic!("an RMSprop golden")
    };
    let config = dense_config(&g);
    // PyTorch's RMSprop: alpha 0.99, eps 1e-8 added to the root.
    let d = deviation::<DenseHead>(&g, &config, |vars| {
        OptimizerConfig::RmspropLegacy {
            lr,
            rho: 0.99,
            eps: 1e-8,
        }
        .build(vars)
    });
    assert!(d > 100.0 * TOL, "PyTorch's RMSprop went unnoticed: {d}");
    // Only the epsilon moved out of the root (TF/Keras 2), Keras' rho and eps kept.
    let d = deviation::<DenseHead>(&g, &config, |vars| {
        OptimizerConfig::RmspropLegacy { lr, rho, eps }.build(vars)
    });
    assert!(
        d > 10.0 * TOL,
        "epsilon outside the root went unnoticed: {d}"
    );
    // Only rho changed to PyTorch's 0.99.
    let d = deviation::<DenseHead>(&g, &config, |vars| {
        OptimizerConfig::Rmsprop { lr, rho: 0.99, eps }.build(vars)
    });
    assert!(d > 100.0 * TOL, "rho 0.99 went unnoticed: {d}");
}

#[test]
fn planted_adamw_without_decay_fails_the_comparison() {
    let g = load("dense_binary_adamw");
    let OptimizerConfig::Adamw {
        lr,
        beta1,
        beta2,
        eps,
        ..
    } = g.optimizer
    else {
        panic!("an AdamW golden")
    };
    let d = deviation::<DenseHead>(&g, &dense_config(&g), |vars| {
        OptimizerConfig::Adam {
            lr,
            beta1,
            beta2,
            eps,
        }
        .build(vars)
    });
    assert!(d > 10.0 * TOL, "missing weight decay went unnoticed: {d}");
}
