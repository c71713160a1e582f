//! Numerics against onnxruntime on the real Keras weights (goldens from
//! scripts/dev/make_vgg16_goldens.py), through every loader, and proof that the comparison
//! catches the classic faults: transposed kernels, BGR/RGB swap, HWC/CHW mix-up, wrong pooling.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use common::{Goldens, compare, nchw_tensor, nhwc_shape};
use convbase_vgg16::fast::Isa;
use convbase_vgg16::{GlobalPool, Layer, Preprocess, SourceFormat, Vgg16, Weights, flatten_hwc};

fn goldens() -> &'static Goldens {
    static G: OnceLock<Goldens> = OnceLock::new();
    G.get_or_init(Goldens::load)
}

fn converted() -> &'static Weights {
    static W: OnceLock<Weights> = OnceLock::new();
    W.get_or_init(|| {
        Weights::load(common::converted_weights().to_str().unwrap(), &Device::Cpu).unwrap()
    })
}

/// Images `idx` of the goldens, preprocessed, as (n, 3, 150, 150).
fn input(p: Preprocess, idx: &[usize]) -> Tensor {
    let g = goldens();
    let rgb: Vec<f32> = idx.iter().flat_map(|&i| g.image(i).to_vec()).collect();
    p.batch(&rgb, idx.len(), g.size, &Device::Cpu).unwrap()
}

/// The golden for `name` restricted to images `idx` (NHWC shape, values).
fn golden(name: &str, idx: &[usize]) -> (Vec<usize>, Vec<f32>) {
    let (mut shape, v) = goldens().output(name);
    let per: usize = shape[1..].iter().product();
    let sel = idx
        .iter()
        .flat_map(|&i| v[i * per..(i + 1) * per].to_vec())
        .collect();
    shape[0] = idx.len();
    (shape, sel)
}

/// Runs `w` to block5_pool on images `idx`, checks block4_pool (image 0) and block5_pool.
fn check_weights(w: &Weights, p: Preprocess, idx: &[usize]) {
    let mode = p.to_string();
    let model = Vgg16::new(w, Layer::Block5Pool, GlobalPool::None, &Device::Cpu).unwrap();
    let x = input(p, idx);
    let b4 = model
        .forward_range(&x, Layer::Block1Conv1, Layer::Block4Pool)
        .unwrap();
    let b5 = model
        .forward_range(&b4, Layer::Block5Conv1, Layer::Block5Pool)
        .unwrap();
    let (ws, wv) = golden(&format!("{mode}.block5_pool"), idx);
    let rel = compare(&nhwc_shape(&b5), &flatten_hwc(&b5).unwrap(), &ws, &wv)
        .unwrap_or_else(|e| panic!("{} {mode} block5_pool: {e}", w.format));
    eprintln!("{} {mode} block5_pool: max rel diff {rel:.2e}", w.format);
    // The CPU inference path of `forward` (NHWC im2col + gemm) against the same golden.
    let fast = model.forward(&x).unwrap();
    let rel = compare(&nhwc_shape(&fast), &flatten_hwc(&fast).unwrap(), &ws, &wv)
        .unwrap_or_else(|e| panic!("{} {mode} block5_pool, forward: {e}", w.format));
    eprintln!(
        "{} {mode} block5_pool via forward: max rel diff {rel:.2e}",
        w.format
    );
    if idx[0] == 0 {
        let b4_0 = b4.narrow(0, 0, 1).unwrap();
        let (ws, wv) = golden(&format!("{mode}.block4_pool"), &[0]);
        let rel = compare(&nhwc_shape(&b4_0), &flatten_hwc(&b4_0).unwrap(), &ws, &wv)
            .unwrap_or_else(|e| panic!("{} {mode} block4_pool: {e}", w.format));
        eprintln!("{} {mode} block4_pool: max rel diff {rel:.2e}", w.format);
    }
}

#[test]
fn converted_safetensors_match_onnxruntime_in_caffe_mode() {
    let w = converted();
    assert_eq!(
        w.preprocess,
        Preprocess::Caffe,
        "converted Keras weights expect caffe"
    );
    check_weights(w, Preprocess::Caffe, &[0, 1, 2]);
}

#[test]
fn converted_safetensors_match_onnxruntime_in_rescale_mode() {
    check_weights(converted(), Preprocess::Rescale, &[0, 1, 2]);
}

#[test]
fn onnx_loader_matches_onnxruntime() {
    let w = Weights::load(common::onnx_weights().to_str().unwrap(), &Device::Cpu).unwrap();
    assert_eq!(
        (w.format, w.preprocess),
        (SourceFormat::KerasOnnx, Preprocess::Caffe)
    );
    check_weights(&w, Preprocess::Caffe, &[0, 2]);
}

#[test]
fn h5_loader_matches_onnxruntime() {
    let w = Weights::load(common::h5_weights().to_str().unwrap(), &Device::Cpu).unwrap();
    assert_eq!(
        (w.format, w.preprocess),
        (SourceFormat::KerasH5, Preprocess::Caffe)
    );
    check_weights(&w, Preprocess::Caffe, &[0, 1]);
}

#[test]
fn every_instruction_set_matches_onnxruntime() {
    // `forward` with the kernels of each instruction set this CPU runs (the default run above
    // uses the widest), and a pooled block output (block3_pool, fused into block3_conv3).
    let x = input(Preprocess::Caffe, &[2]);
    let (ws, wv) = golden("caffe.block5_pool", &[2]);
    for isa in Isa::available() {
        let model = Vgg16::with_isa(converted(), Layer::Block5Pool, GlobalPool::None, isa).unwrap();
        let y = model.forward(&x).unwrap();
        let rel = compare(&nhwc_shape(&y), &flatten_hwc(&y).unwrap(), &ws, &wv)
            .unwrap_or_else(|e| panic!("{isa}: {e}"));
        eprintln!("{isa} kernels, block5_pool via forward: max rel diff {rel:.2e}");
        let b3 = Vgg16::with_isa(converted(), Layer::Block3Pool, GlobalPool::None, isa).unwrap();
        let fast = b3.forward(&x).unwrap();
        let ops = b3
            .forward_range(&x, Layer::Block1Conv1, Layer::Block3Pool)
            .unwrap();
        let rel = compare(
            &nhwc_shape(&fast),
            &flatten_hwc(&fast).unwrap(),
            &nhwc_shape(&ops),
            &flatten_hwc(&ops).unwrap(),
        )
        .unwrap_or_else(|e| panic!("{isa} block3_pool: {e}"));
        eprintln!("{isa} kernels, block3_pool vs candle ops: max rel diff {rel:.2e}");
    }
}

#[test]
fn global_pooling_and_output_shapes() {
    let w = converted();
    let x = input(Preprocess::Caffe, &[1]);
    let (ws, wv) = golden("caffe.block5_pool", &[1]);
    let golden = nchw_tensor(&ws, &wv);
    for (pool, want) in [
        (
            GlobalPool::Avg,
            golden.mean(D::Minus1).unwrap().mean(D::Minus1).unwrap(),
        ),
        (
            GlobalPool::Max,
            golden.max(D::Minus1).unwrap().max(D::Minus1).unwrap(),
        ),
    ] {
        let model = Vgg16::new(w, Layer::Block5Pool, pool, &Device::Cpu).unwrap();
        assert_eq!(model.output_shape(150), [512]);
        let got = model.forward(&x).unwrap();
        assert_eq!(got.dims(), [1, 512]);
        let want: Vec<f32> = want.flatten_all().unwrap().to_vec1().unwrap();
        compare(&[512], &flatten_hwc(&got).unwrap(), &[512], &want)
            .unwrap_or_else(|e| panic!("{pool} pooling: {e}"));
    }
    let model = Vgg16::new(w, Layer::Block4Pool, GlobalPool::None, &Device::Cpu).unwrap();
    assert_eq!(model.output_shape(150), [9, 9, 512]);
    assert_eq!(model.output_shape(224), [14, 14, 512]);
    // Smallest accepted input, and the refusal below it.
    let small = Vgg16::new(w, Layer::Block5Pool, GlobalPool::None, &Device::Cpu).unwrap();
    let y = small
        .forward(&Tensor::zeros((2, 3, 32, 40), DType::F32, &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(y.dims(), [2, 512, 1, 1]);
    assert!(
        small
            .forward(&Tensor::zeros((1, 3, 31, 64), DType::F32, &Device::Cpu).unwrap())
            .is_err()
    );
    assert!(
        model
            .forward_range(&x, Layer::Block5Conv1, Layer::Block5Pool)
            .is_err()
    );
}

#[test]
fn block5_alone_on_golden_block4_output_matches() {
    // The fine-tuning path: block5 run from onnxruntime's own block4_pool output.
    let model = Vgg16::new(
        converted(),
        Layer::Block5Pool,
        GlobalPool::None,
        &Device::Cpu,
    )
    .unwrap();
    let (s4, v4) = golden("caffe.block4_pool", &[0]);
    let y = model
        .forward_range(
            &nchw_tensor(&s4, &v4),
            Layer::Block5Conv1,
            Layer::Block5Pool,
        )
        .unwrap();
    let (ws, wv) = golden("caffe.block5_pool", &[0]);
    compare(&nhwc_shape(&y), &flatten_hwc(&y).unwrap(), &ws, &wv).unwrap();
}

// ---- planted faults: each must make the comparison fail ----

/// Block5_pool of image 0 in caffe mode, compared with the golden.
fn compare_b5(y: &Tensor) -> Result<f32, String> {
    let (ws, wv) = golden("caffe.block5_pool", &[0]);
    compare(&nhwc_shape(y), &flatten_hwc(y).unwrap(), &ws, &wv)
}

fn assert_fault_caught(what: &str, r: Result<f32, String>) {
    match r {
        Ok(rel) => panic!("planted fault `{what}` passed the comparison (rel {rel:.2e})"),
        Err(e) => eprintln!("planted fault `{what}` caught: {e}"),
    }
}

#[test]
fn planted_transposed_kernels_are_caught() {
    let tensors: HashMap<String, Tensor> = converted()
        .tensors()
        .iter()
        .map(|(k, t)| {
            let t = if t.rank() == 4 {
                t.transpose(2, 3).unwrap().contiguous().unwrap()
            } else {
                t.clone()
            };
            (k.clone(), t)
        })
        .collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let model = Vgg16::from_varbuilder(vb, Layer::Block5Pool, GlobalPool::None).unwrap();
    let y = model.forward(&input(Preprocess::Caffe, &[0])).unwrap();
    assert_fault_caught("kernels with H and W swapped", compare_b5(&y));
}

#[test]
fn planted_bgr_rgb_swap_is_caught() {
    let model = Vgg16::new(
        converted(),
        Layer::Block5Pool,
        GlobalPool::None,
        &Device::Cpu,
    )
    .unwrap();
    let correct = input(Preprocess::Caffe, &[0]);
    // RGB fed where BGR is expected: reverse the channel axis (means then land on the wrong colour too).
    let swapped = Tensor::cat(
        &[
            correct.narrow(1, 2, 1).unwrap(),
            correct.narrow(1, 1, 1).unwrap(),
            correct.narrow(1, 0, 1).unwrap(),
        ],
        1,
    )
    .unwrap();
    assert_fault_caught(
        "channels in RGB order",
        compare_b5(&model.forward(&swapped).unwrap()),
    );
    // Control: the same model on the correct input passes.
    compare_b5(&model.forward(&correct).unwrap()).unwrap();
}

#[test]
fn planted_chw_flatten_is_caught() {
    let model = Vgg16::new(
        converted(),
        Layer::Block5Pool,
        GlobalPool::None,
        &Device::Cpu,
    )
    .unwrap();
    let y = model.forward(&input(Preprocess::Caffe, &[0])).unwrap();
    let chw: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
    let (ws, wv) = golden("caffe.block5_pool", &[0]);
    assert_fault_caught(
        "output read in CHW order",
        compare(&nhwc_shape(&y), &chw, &ws, &wv),
    );
    compare(&nhwc_shape(&y), &flatten_hwc(&y).unwrap(), &ws, &wv).unwrap();
}

/// Runs the base layer by layer with a replacement pooling.
fn forward_with_pool(model: &Vgg16, x: &Tensor, pool: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let mut x = x.clone();
    for l in Layer::ALL {
        x = if l.is_conv() {
            model.forward_range(&x, l, l).unwrap()
        } else {
            pool(&x)
        };
    }
    x
}

#[test]
fn planted_pool_rounding_faults_are_caught() {
    let model = Vgg16::new(
        converted(),
        Layer::Block5Pool,
        GlobalPool::None,
        &Device::Cpu,
    )
    .unwrap();
    let x = input(Preprocess::Caffe, &[0]);
    // Ceil mode: odd sizes keep their last row/column (75 -> 38, 37 -> 19, 9 -> 5).
    let ceil = forward_with_pool(&model, &x, |t| {
        let (_, _, h, w) = t.dims4().unwrap();
        t.pad_with_zeros(2, 0, h % 2)
            .unwrap()
            .pad_with_zeros(3, 0, w % 2)
            .unwrap()
            .max_pool2d(2)
            .unwrap()
    });
    assert_fault_caught("ceil pooling", compare_b5(&ceil));
    // Padding in the pool: one zero row/column in front (the last one dropped to keep the
    // size) shifts every window by one pixel; the output keeps the right shape.
    let padded = forward_with_pool(&model, &x, |t| {
        let (_, _, h, w) = t.dims4().unwrap();
        let t = t
            .pad_with_zeros(2, 1, 0)
            .unwrap()
            .pad_with_zeros(3, 1, 0)
            .unwrap();
        t.narrow(2, 0, h)
            .unwrap()
            .narrow(3, 0, w)
            .unwrap()
            .max_pool2d(2)
            .unwrap()
    });
    assert_eq!(padded.dims(), [1, 512, 4, 4]);
    assert_fault_caught("pool padded by one in front", compare_b5(&padded));
    // Control: the same layer-by-layer run with the right pooling passes.
    let right = forward_with_pool(&model, &x, |t| t.max_pool2d(2).unwrap());
    compare_b5(&right).unwrap();
}

#[test]
fn inference_path_agrees_with_candle_ops_on_odd_non_square_input() {
    // Sizes that exercise floor pooling at every pool (45 -> 22 -> 11 -> 5 -> 2 -> 1) and a
    // batch of 3, for every output layer kind (a conv and a pool).
    let x = Tensor::randn(0f32, 60.0, (3, 3, 45, 61), &Device::Cpu).unwrap();
    for layer in [Layer::Block3Conv2, Layer::Block5Pool] {
        let model = Vgg16::new(converted(), layer, GlobalPool::None, &Device::Cpu).unwrap();
        let fast = model.forward(&x).unwrap();
        let ops = model.forward_range(&x, Layer::Block1Conv1, layer).unwrap();
        assert_eq!(fast.dims(), ops.dims());
        let (f, o) = (flatten_hwc(&fast).unwrap(), flatten_hwc(&ops).unwrap());
        let rel = compare(&nhwc_shape(&fast), &f, &nhwc_shape(&ops), &o)
            .unwrap_or_else(|e| panic!("{layer}: {e}"));
        eprintln!("{layer}: inference path vs candle ops {rel:.2e}");
    }
}
