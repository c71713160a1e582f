//! Forward pass of the conv base at the seed's shape: batch 20, 150x150, to block5_pool.
//! Weights are random (speed does not depend on their values), so the bench needs no download.
//! Run: `cargo bench -p convbase-vgg16 --bench forward`; compare with
//! `scripts/dev/bench_vgg16_onnxruntime.py` in the same sitting.

use std::collections::HashMap;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use convbase_vgg16::{GlobalPool, Layer, Vgg16, conv_tensor_names};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 20;
const SIZE: usize = 150;

fn forward(c: &mut Criterion) {
    let device = Device::Cpu;
    let tensors: HashMap<String, Tensor> = conv_tensor_names()
        .into_iter()
        .map(|(name, shape)| {
            let t = Tensor::randn(0f32, 0.02, shape, &device).unwrap();
            (name, t)
        })
        .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
    let model = Vgg16::from_varbuilder(vb, Layer::Block5Pool, GlobalPool::None).unwrap();
    let x = Tensor::randn(0f32, 50.0, (BATCH, 3, SIZE, SIZE), &device).unwrap();

    let mut group = c.benchmark_group("vgg16");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(5))
        .measurement_time(Duration::from_secs(60))
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("forward_b20_150px_block5_pool", |b| {
        b.iter(|| {
            let y = model.forward(&x).unwrap();
            device.synchronize().unwrap();
            y
        })
    });
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
