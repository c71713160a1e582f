use std::collections::HashMap;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use convbase_vgg16::{GlobalPool, Layer, Vgg16, conv_tensor_names};
fn main() {
    let device = Device::Cpu;
    let tensors: HashMap<String, Tensor> = conv_tensor_names().into_iter().map(|(n, s)| (n, Tensor::randn(0f32, 0.02, s, &device).unwrap())).collect();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
    let model = Vgg16::from_varbuilder(vb, Layer::Block5Pool, GlobalPool::None).unwrap();
    let x = Tensor::randn(0f32, 50.0, (20, 3, 150, 150), &device).unwrap();
    let a = model.forward(&x).unwrap();
    unsafe { std::env::set_var("VGG_NHWC", "1") };
    let b = model.forward(&x).unwrap();
    let d = (a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    println!("max diff {d}, max {}", b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap());
    for round in 0..3 {
        for nhwc in [false, true] {
            if nhwc { unsafe { std::env::set_var("VGG_NHWC", "1") } } else { unsafe { std::env::remove_var("VGG_NHWC") } }
            let t = std::time::Instant::now();
            model.forward(&x).unwrap();
            let s = t.elapsed().as_secs_f64();
            println!("round {round} nhwc={nhwc}: {s:.2} s = {:.2} img/s", 20.0 / s);
        }
    }
}
