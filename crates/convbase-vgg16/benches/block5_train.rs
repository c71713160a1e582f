//! Fine-tuning's step through block5: forward and backward (gradients of the block5 weights and
//! biases, not of the constant input) on a block4_pool-shaped batch (20 x 9 x 9 x 512), through
//! the NHWC Winograd ops fine-tuning uses (`forward_range_nhwc`), the NCHW whole-batch GEMM op
//! (`forward_range_gemm`) and candle's conv2d (`forward_range`); and the forward pass alone.
//! Throughput in images. Random weights (speed does not depend on their values). The widest
//! instruction set the CPU has, capped by CONVBASE_ISA=amx|avx512|avx2|portable.
//!
//! Run: `cargo bench -p convbase-vgg16 --bench block5_train` (`-- winograd` for one path).
//! `scripts/bench-peers.sh --torch` times the same step against PyTorch.

use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use convbase_vgg16::{GlobalPool, Layer, Vgg16};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 20;

fn block5_train(c: &mut Criterion) {
    // As the fine-tuning binary runs.
    convbase_cli::process::retain_freed_memory();
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let model = Vgg16::from_varbuilder(vb, Layer::Block5Pool, GlobalPool::None).unwrap();
    let nhwc = Tensor::randn(0f32, 1.0, (BATCH, 9, 9, 512), &dev)
        .unwrap()
        .relu()
        .unwrap();
    let x = nhwc.permute((0, 3, 1, 2)).unwrap().contiguous().unwrap();
    let (from, to) = (Layer::Block5Conv1, Layer::Block5Pool);
    let mut group = c.benchmark_group("block5_forward_backward_b20_9x9x512");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("winograd_nhwc", |b| {
        b.iter(|| {
            let y = model.forward_range_nhwc(&nhwc, from, to).unwrap();
            y.sum_all().unwrap().backward().unwrap()
        })
    });
    group.bench_function("candle_conv2d", |b| {
        b.iter(|| {
            let y = model
                .forward_range(&x, Layer::Block5Conv1, Layer::Block5Pool)
                .unwrap();
            y.sum_all().unwrap().backward().unwrap()
        })
    });
    group.bench_function("gemm_conv3x3", |b| {
        b.iter(|| {
            let y = model
                .forward_range_gemm(&x, Layer::Block5Conv1, Layer::Block5Pool)
                .unwrap();
            y.sum_all().unwrap().backward().unwrap()
        })
    });
    group.finish();
    let mut group = c.benchmark_group("block5_forward_b20_9x9x512");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("winograd_nhwc", |b| {
        b.iter(|| model.forward_range_nhwc(&nhwc, from, to).unwrap())
    });
    group.bench_function("gemm_conv3x3", |b| {
        b.iter(|| model.forward_range_gemm(&x, from, to).unwrap())
    });
    group.finish();
}

criterion_group!(benches, block5_train);
criterion_main!(benches);
