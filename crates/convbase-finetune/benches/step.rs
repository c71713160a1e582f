//! Speed of fine-tuning at the seed's size: block5 on a batch of 20 block4_pool maps of
//! 9x9x512 (150 px input), forward only and a whole training step (forward, backward through
//! the head and block5, RMSprop update). Weights are random: speed does not depend on them.
//! Images per second = 20 / the time per iteration.
//!
//! `cargo bench -p convbase-finetune --bench step`

use std::collections::HashMap;
use std::hint::black_box;

use candle_core::{Device, Tensor};
use convbase_finetune::{FineTuneConfig, FineTuned, HeadRun, tensor_names};
use convbase_head_dense::DenseConfig;
use convbase_train::rng::{Stream, rng};
use convbase_train::{Model, OptimizerConfig, SeededMasks, Trainer};
use criterion::{Criterion, criterion_group, criterion_main};

const BATCH: usize = 20;
const SHAPE: [usize; 3] = [9, 9, 512];

fn model() -> Model<FineTuned> {
    let dev = Device::Cpu;
    let mut tensors = HashMap::new();
    for (name, shape) in tensor_names() {
        let t = (Tensor::randn(0f32, 1.0, shape.as_slice(), &dev).unwrap() * 0.01).unwrap();
        tensors.insert(name, t);
    }
    let inputs = 4 * 4 * 512;
    let t = |shape: &[usize]| (Tensor::randn(0f32, 1.0, shape, &dev).unwrap() * 0.01).unwrap();
    tensors.insert("hidden.0.kernel".into(), t(&[inputs, 256]));
    tensors.insert("hidden.0.bias".into(), t(&[256]));
    tensors.insert("output.kernel".into(), t(&[256, 1]));
    tensors.insert("output.bias".into(), t(&[1]));
    let features = serde_json::from_value(serde_json::json!({
        "weights_sha256": "", "weights_source": "", "layer": "block5_pool", "input_size": 150,
        "resize_filter": "nearest", "preprocess": "caffe", "pool": "none",
        "feature_shape": [4, 4, 512], "flatten_order": "hwc", "augment": "none",
        "manifest_sha256": "", "classes": ["a", "b"], "dataset_root": ""
    }))
    .unwrap();
    let config = FineTuneConfig {
        head: DenseConfig {
            width: 256,
            depth: 1,
            dropout: 0.5,
        },
        block4_shape: SHAPE.to_vec(),
        pool: "none".into(),
        head_run: HeadRun {
            dir: "bench".into(),
            seed: 0,
            features_file: "bench".into(),
            features,
            outcome: None,
        },
    };
    let path = std::path::Path::new("bench");
    Model::from_tensors(&config, SHAPE.iter().product(), 2, tensors, path).unwrap()
}

fn bench(c: &mut Criterion) {
    let dim: usize = SHAPE.iter().product();
    let x = Tensor::rand(0f32, 50.0, (BATCH, dim), &Device::Cpu).unwrap();
    let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % 2).collect();
    let mut g = c.benchmark_group("block5_9x9x512_batch20");
    g.sample_size(10);
    let m = model();
    g.bench_function("forward", |b| {
        b.iter(|| black_box(m.head.head_inputs(&x).unwrap()))
    });
    let vars = m.vars();
    let optimizer = OptimizerConfig::Rmsprop {
        lr: 1e-5,
        rho: 0.9,
        eps: 1e-7,
    };
    let mut trainer = Trainer::new(m, optimizer.build(vars), None);
    let mut masks = SeededMasks(rng(1, Stream::Dropout));
    g.bench_function("train_step", |b| {
        b.iter(|| black_box(trainer.step(&x, &labels, &mut masks).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
