//! Each of the 13 conv layers of the conv base at the seed's shape (batch 20, 150x150 input), as
//! `Vgg16::forward` runs it (Winograd F(4x4, 3x3), or im2col for block1_conv1; the following
//! max-pool fused), so that a regression shows which layer it is in. Throughput is in
//! direct-convolution FLOP (2 x multiply-adds of a plain 3x3 conv): "Gelem/s" reads as effective
//! GFLOP/s. Random weights (speed does not depend on their values); the widest instruction set
//! the CPU has, capped by CONVBASE_ISA=amx|avx512|avx2|portable.
//!
//! Run: `cargo bench -p convbase-vgg16 --bench layers` (add `-- block4` to run some layers only).

use std::time::Duration;

use convbase_vgg16::Layer;
use convbase_vgg16::fast::{Activations, Conv3x3, Isa, algorithm_for};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 20;
const SIZE: usize = 150;

/// Values in [-scale, scale) from a fixed xorshift sequence.
fn values(len: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn layers(c: &mut Criterion) {
    let isa = Isa::detect();
    let mut group = c.benchmark_group(format!("conv_b{BATCH}_{SIZE}px_{isa}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (i, layer) in Layer::ALL.iter().enumerate() {
        if !layer.is_conv() {
            continue;
        }
        let (cin, cout) = (layer.in_channels(), layer.channels());
        // Spatial size at this conv's input: the pools before it halve it.
        let s = if i == 0 {
            SIZE
        } else {
            Layer::ALL[i - 1].spatial_size(SIZE)
        };
        let pool = Layer::ALL.get(i + 1).is_some_and(|l| !l.is_conv());
        let conv = Conv3x3::new(
            &values(cout * cin * 9, 0.05, i as u64 + 1),
            &values(cout, 0.1, 99),
            [cout, cin],
            algorithm_for(cin),
            isa,
        );
        let x = Activations::from_nhwc(&values(BATCH * s * s * cin, 1.0, 7), [BATCH, s, s, cin]);
        let mut y = Activations::default();
        let flop = 2 * 9 * (BATCH * s * s * cin * cout) as u64;
        group.throughput(Throughput::Elements(flop));
        let name = format!(
            "{layer}_{s}x{s}x{cin}_to_{cout}{}",
            if pool { "_pool" } else { "" }
        );
        group.bench_function(name, |b| b.iter(|| conv.forward(&x, pool, &mut y)));
    }
    group.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);
