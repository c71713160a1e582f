//! The seed's head at the seed's sizes: one training step (forward, backward, RMSprop update)
//! on a batch of 20 rows of 8192 features (block5_pool, 4x4x512), Dense(256) + Dropout(0.5) +
//! Dense(1). 100 such steps are one epoch of the seed's 2000 training images. Features are
//! ReLU'd normals: about half are zero, like the conv base's (the gradients of their weights
//! are then zero, and RMSprop's second moments of those weights decay towards subnormals).
//!
//! Run: `cargo bench -p convbase-head-dense --bench step`

use std::time::Duration;

use candle_core::{Device, Tensor};
use convbase_head_dense::{DenseConfig, DenseHead};
use convbase_train::rng::{Stream, rng};
use convbase_train::{Model, OptimizerConfig, SeededMasks, Trainer};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::Rng;

const BATCH: usize = 20;
const DIM: usize = 8192;

fn step(c: &mut Criterion) {
    convbase_cli::process::flush_denormals_to_zero();
    convbase_cli::process::retain_freed_memory();
    let mut noise = rng(7, Stream::Shuffle);
    let x: Vec<f32> = (0..BATCH * DIM)
        .map(|_| noise.random::<f32>() * 2.0 - 1.0)
        .map(|v: f32| v.max(0.0))
        .collect();
    let x = Tensor::from_vec(x, (BATCH, DIM), &Device::Cpu).unwrap();
    let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % 2).collect();
    let config = DenseConfig {
        width: 256,
        depth: 1,
        dropout: 0.5,
    };
    let model = Model::<DenseHead>::init(&config, DIM, 2, 1).unwrap();
    let optimizer = OptimizerConfig::Rmsprop {
        lr: 2e-5,
        rho: 0.9,
        eps: 1e-7,
    }
    .build(model.vars());
    let mut trainer = Trainer::new(model, optimizer, None);
    let mut masks = SeededMasks(rng(1, Stream::Dropout));

    let mut group = c.benchmark_group("dense_head_step_b20_8192");
    group
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("rmsprop", |b| {
        b.iter(|| trainer.step(&x, &labels, &mut masks).unwrap())
    });
    group.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
