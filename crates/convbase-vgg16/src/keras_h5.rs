//! Keras' HDF5 weights layout (`vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`): one group
//! per layer (`block1_conv1`, ...) whose `weight_names` attribute lists its datasets in order,
//! kernel (H, W, I, O) then bias (O), e.g. `block1_conv1_W_1:0` and `block1_conv1_b_1:0`.
//! Read with the pure-Rust `hdf5-reader` crate: no C library to install.

use std::path::Path;

use hdf5_reader::Hdf5File;
use hdf5_reader::error::Error;

use crate::error::Vgg16Error;
use crate::layer::Layer;
use crate::weights::{RawTensor, RawTensors};

/// Reads the 13 conv layers, kernels transposed HWIO -> OIHW, under torchvision names.
pub(crate) fn read(path: &Path, bytes: &[u8]) -> Result<RawTensors, Vgg16Error> {
    let corrupt = |reason: String| Vgg16Error::Corrupt {
        path: path.to_path_buf(),
        format: "HDF5",
        reason,
    };
    let file = Hdf5File::from_bytes(bytes).map_err(|e| corrupt(e.to_string()))?;
    // The superblock records where the file ends: a shorter file was cut off.
    let eof = file.superblock().eof_address;
    if (bytes.len() as u64) < eof {
        return Err(corrupt(format!(
            "file is {} bytes, its superblock says {eof} (truncated)",
            bytes.len()
        )));
    }
    let root = file.root_group().map_err(|e| corrupt(e.to_string()))?;
    // Keras files saved by `model.save` (not `save_weights`) nest the layers under this group.
    let root = root.group("model_weights").unwrap_or(root);
    let mut out = RawTensors::new();
    for layer in Layer::convs() {
        let name = layer.keras_name();
        let missing = |what: &str| Vgg16Error::MissingTensor {
            path: path.to_path_buf(),
            tensor: format!("{name}/{what}"),
        };
        let group = root.group(name).map_err(|e| match e {
            Error::GroupNotFound(_) => missing("(layer group)"),
            e => corrupt(format!("{name}: {e}")),
        })?;
        let names = match group.attribute("weight_names") {
            Ok(attr) => attr
                .read_strings()
                .map_err(|e| corrupt(format!("{name}: weight_names: {e}")))?,
            Err(_) => vec![format!("{name}_W_1:0"), format!("{name}_b_1:0")],
        };
        let [kernel_name, bias_name] = names.as_slice() else {
            return Err(corrupt(format!(
                "{name}: weight_names lists {} weights, expected kernel and bias",
                names.len()
            )));
        };
        let (i, o) = (layer.in_channels(), layer.channels());
        let kernel = dataset(path, &group, name, kernel_name, &[3, 3, i, o])?;
        let bias = dataset(path, &group, name, bias_name, &[o])?;
        // HWIO -> OIHW: out[o][i][h][w] = in[h][w][i][o]. Keras convolves like torch
        // (cross-correlation), so no spatial flip.
        let mut oihw = vec![0f32; kernel.len()];
        for (idx, v) in kernel.iter().enumerate() {
            let (hw, io) = (idx / (i * o), idx % (i * o));
            let (ci, co) = (io / o, io % o);
            oihw[(co * i + ci) * 9 + hw] = *v;
        }
        let prefix = format!("features.{}", layer.torch_index());
        out.insert(
            format!("{prefix}.weight"),
            RawTensor {
                shape: vec![o, i, 3, 3],
                data: oihw,
            },
        );
        out.insert(
            format!("{prefix}.bias"),
            RawTensor {
                shape: vec![o],
                data: bias,
            },
        );
    }
    Ok(out)
}

fn dataset(
    path: &Path,
    group: &hdf5_reader::group::Group,
    layer: &str,
    name: &str,
    expected: &[usize],
) -> Result<Vec<f32>, Vgg16Error> {
    let tensor = format!("{layer}/{name}");
    let ds = group.dataset(name).map_err(|e| match e {
        Error::DatasetNotFound(_) => Vgg16Error::MissingTensor {
            path: path.to_path_buf(),
            tensor: tensor.clone(),
        },
        e => Vgg16Error::Corrupt {
            path: path.to_path_buf(),
            format: "HDF5",
            reason: format!("{tensor}: {e}"),
        },
    })?;
    let shape: Vec<usize> = ds.shape().iter().map(|&d| d as usize).collect();
    if shape != expected {
        return Err(Vgg16Error::WrongShape {
            path: path.to_path_buf(),
            tensor,
            expected: expected.to_vec(),
            got: shape,
        });
    }
    let mut data = vec![0f32; expected.iter().product()];
    ds.read_into(&mut data).map_err(|e| Vgg16Error::Corrupt {
        path: path.to_path_buf(),
        format: "HDF5",
        reason: format!("{tensor}: {e}"),
    })?;
    Ok(data)
}
