//! The GEMM conv for fine-tuning (`conv3x3`, `Vgg16::forward_range_gemm`) against candle's own
//! conv2d and its autograd: same output, same gradients for the input and the weights, on odd
//! shapes and on block5 with the real weights.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use convbase_vgg16::{GlobalPool, Layer, Vgg16, Weights, conv3x3};

/// Largest |a - b| over the largest |b|.
fn rel(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    let s = b.abs().unwrap().max_all().unwrap();
    (d / s).unwrap().to_scalar::<f32>().unwrap()
}

/// Output and gradients of sum(conv(x, w) * r) for both implementations.
fn check(n: usize, c: usize, h: usize, w: usize, o: usize) {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, h, w), &dev).unwrap()).unwrap();
    let wt = Var::from_tensor(&Tensor::randn(0f32, 0.2, (o, c, 3, 3), &dev).unwrap()).unwrap();
    let r = Tensor::randn(0f32, 1.0, (n, o, h, w), &dev).unwrap();
    let ours = conv3x3(x.as_tensor(), wt.as_tensor()).unwrap();
    let theirs = x.as_tensor().conv2d(wt.as_tensor(), 1, 1, 1, 1).unwrap();
    let go = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let gt = (&theirs * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let shape = format!("({n}, {c}, {h}, {w}) -> {o}");
    let checks = [
        ("output", ours, theirs),
        (
            "input gradient",
            go.get(&x).unwrap().clone(),
            gt.get(&x).unwrap().clone(),
        ),
        (
            "weight gradient",
            go.get(&wt).unwrap().clone(),
            gt.get(&wt).unwrap().clone(),
        ),
    ];
    for (what, a, b) in checks {
        let e = rel(&a, &b);
        eprintln!("{shape} {what}: {e:.2e}");
        // f32 sums of up to 9 x 300 (or N x H x W) terms in another order: about 1e-7 of the
        // largest value; a wrong tap or a transposed kernel is off by order 1.
        assert!(e < 1e-5, "{shape} {what}: {e:.3e}");
    }
}

#[test]
fn gemm_conv_matches_candle_on_odd_shapes() {
    check(1, 3, 1, 1, 4);
    check(2, 5, 7, 6, 11);
    check(3, 13, 9, 9, 17);
    check(2, 300, 3, 4, 33);
}

#[test]
fn block5_gemm_matches_candle_ops_with_gradients() {
    // The fine-tuning path: block5 on a block4_pool-shaped batch, trainable variables.
    let w = Weights::load(common::converted_weights().to_str().unwrap(), &Device::Cpu).unwrap();
    let varmap = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Vgg16::from_varbuilder(vb, Layer::Block5Pool, GlobalPool::None).unwrap();
    {
        let data = varmap.data().lock().unwrap();
        for (name, var) in data.iter() {
            var.set(&w.tensors()[name]).unwrap();
        }
    }
    let x = Tensor::randn(0f32, 20.0, (2, 512, 9, 9), &Device::Cpu)
        .unwrap()
        .relu()
        .unwrap();
    let ours = model
        .forward_range_gemm(&x, Layer::Block5Conv1, Layer::Block5Pool)
        .unwrap();
    let theirs = model
        .forward_range(&x, Layer::Block5Conv1, Layer::Block5Pool)
        .unwrap();
    let e = rel(&ours, &theirs);
    eprintln!("block5 output: {e:.2e}");
    assert!(e < 1e-5, "block5 output {e:.3e}");
    let go = ours.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let gt = theirs.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let data = varmap.data().lock().unwrap();
    let block5 = ["features.24.", "features.26.", "features.28."];
    let mut checked = 0;
    for (name, var) in data.iter() {
        if !block5.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        checked += 1;
        let e = rel(go.get(var).unwrap(), gt.get(var).unwrap());
        eprintln!("block5 gradient of {name}: {e:.2e}");
        assert!(e < 1e-5, "gradient of {name}: {e:.3e}");
    }
    assert_eq!(checked, 6, "three weights and three biases");
}
