//! Forward pass of the conv base at the seed's shape: batch 20, 150x150, to block5_pool, through
//! `forward` (the CPU inference path extraction uses) and through `forward_range` (candle ops,
//! differentiable, what fine-tuning uses). Uses the real weights from scripts/fetch-weights.sh
//! (speed does not depend on their values). Run: `cargo bench -p convbase-vgg16 --bench forward`;
//! `scripts/bench-peers.sh` runs onnxruntime and `forward` side by side on the same batch.

use std::path::PathBuf;
use std::time::Duration;

use candle_core::{Device, Tensor};
use convbase_vgg16::{GlobalPool, Layer, Vgg16, Weights};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 20;
const SIZE: usize = 150;

fn forward(c: &mut Criterion) {
    let device = Device::Cpu;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/weights/vgg16-keras-imagenet.safetensors");
    let weights = Weights::load(path.to_str().unwrap(), &device)
        .unwrap_or_else(|e| panic!("{e}: run scripts/fetch-weights.sh first"));
    let model = Vgg16::new(&weights, Layer::Block5Pool, GlobalPool::None, &device).unwrap();
    let x = Tensor::randn(0f32, 50.0, (BATCH, 3, SIZE, SIZE), &device).unwrap();

    let mut group = c.benchmark_group("vgg16_b20_150px_block5_pool");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(5))
        .measurement_time(Duration::from_secs(40))
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("forward", |b| {
        b.iter(|| {
            let y = model.forward(&x).unwrap();
            device.synchronize().unwrap();
            y
        })
    });
    group.bench_function("forward_range_candle_ops", |b| {
        b.iter(|| {
            let y = model
                .forward_range(&x, Layer::Block1Conv1, Layer::Block5Pool)
                .unwrap();
            device.synchronize().unwrap();
            y
        })
    });
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
