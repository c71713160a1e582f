//! Loading, checking and saving the 26 conv tensors, whatever file they come in, with the
//! provenance later stages record (source, SHA-256, expected preprocessing).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use crate::error::Vgg16Error;
use crate::hub::{self, HubSpec};
use crate::layer::Layer;
use crate::preprocess::Preprocess;
use crate::{keras_h5, onnx};

/// Parameters of the VGG16 conv base (13 conv layers, weights and biases).
pub const PARAMETER_COUNT: usize = 14_714_688;

/// Header metadata keys written by [`Weights::save`].
pub mod meta {
    /// Where the weights originally came from (path, `hf:` spec, package).
    pub const SOURCE: &str = "convbase.source";
    /// Hex SHA-256 of the original file.
    pub const SOURCE_SHA256: &str = "convbase.source_sha256";
    /// `safetensors`, `keras-onnx` or `keras-h5`: the original file's format.
    pub const SOURCE_FORMAT: &str = "convbase.source_format";
    /// The preprocessing the weights expect: `caffe`, `torch` or `rescale`.
    pub const PREPROCESS: &str = "convbase.preprocess";
    /// JSON object: tensor name -> hex SHA-256 of its bytes, checked on load.
    pub const TENSOR_SHA256: &str = "convbase.tensor_sha256";
    /// The version of this crate that wrote the file.
    pub const TOOL_VERSION: &str = "convbase.tool_version";
}

/// A tensor read from a file, before it is checked and put on a device.
#[derive(Debug)]
pub(crate) struct RawTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Tensors read from a file by torchvision name.
pub(crate) type RawTensors = BTreeMap<String, RawTensor>;

/// The format a weights file was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// torchvision/timm names (`features.N.weight`), from disk or the Hub.
    Safetensors,
    /// A Keras VGG16 exported to ONNX by tf2onnx.
    KerasOnnx,
    /// Keras' HDF5 weights file.
    KerasH5,
}

impl SourceFormat {
    /// What weights in this format expect when their file does not say.
    fn default_preprocess(self) -> Preprocess {
        match self {
            Self::Safetensors => Preprocess::Torch,
            Self::KerasOnnx | Self::KerasH5 => Preprocess::Caffe,
        }
    }
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Safetensors => "safetensors",
            Self::KerasOnnx => "keras-onnx",
            Self::KerasH5 => "keras-h5",
        })
    }
}

/// The 26 tensors the base needs, in network order, with their shapes (weights OIHW).
pub fn conv_tensor_names() -> Vec<(String, Vec<usize>)> {
    Layer::convs()
        .flat_map(|l| {
            let (i, o, n) = (l.in_channels(), l.channels(), l.torch_index());
            [
                (format!("features.{n}.weight"), vec![o, i, 3, 3]),
                (format!("features.{n}.bias"), vec![o]),
            ]
        })
        .collect()
}

/// Loaded, checked conv-base weights and where they came from.
#[derive(Debug, Clone)]
pub struct Weights {
    /// What was loaded: the path, or the `hf:` spec.
    pub source: String,
    /// Hex SHA-256 of the loaded file's bytes.
    pub sha256: String,
    /// The preprocessing these weights expect (from the file's metadata, else its format).
    pub preprocess: Preprocess,
    /// The format the file was read as.
    pub format: SourceFormat,
    /// Header metadata of a safetensors file (empty for other formats).
    pub metadata: BTreeMap<String, String>,
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    /// Loads weights from a spec: `hf:OWNER/NAME[@REVISION][:FILE]` (the Hugging Face Hub) or a
    /// path to a `.safetensors`, `.onnx` or Keras `.h5` file (told apart by content). A suffix
    /// `#sha256=HEX` makes the file's checksum part of the check.
    pub fn load(spec: &str, device: &Device) -> Result<Weights, Vgg16Error> {
        let (spec, expected) = match spec.rsplit_once("#sha256=") {
            Some((s, sum)) => (s, Some(sum)),
            None => (spec, None),
        };
        if let Some(rest) = spec.strip_prefix("hf:") {
            let hub_spec = HubSpec::parse(rest)?;
            let path = hub::resolve(&hub_spec)?;
            let mut w = Self::load_file(&path, expected, device)?;
            w.source = spec.to_string();
            Ok(w)
        } else {
            Self::load_file(Path::new(spec), expected, device)
        }
    }

    /// Loads one file; `expected_sha256` (hex) is compared with the file's bytes first.
    pub fn load_file(
        path: &Path,
        expected_sha256: Option<&str>,
        device: &Device,
    ) -> Result<Weights, Vgg16Error> {
        let bytes = std::fs::read(path).map_err(|source| Vgg16Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(expected) = expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(Vgg16Error::ChecksumMismatch {
                path: path.to_path_buf(),
                expected: expected.to_string(),
                actual: sha256,
            });
        }
        let (format, raw, metadata) = if bytes.starts_with(b"\x89HDF\r\n\x1a\n") {
            (
                SourceFormat::KerasH5,
                keras_h5::read(path, &bytes)?,
                BTreeMap::new(),
            )
        } else if bytes.len() > 8 && bytes[8] == b'{' {
            let (raw, metadata) = read_safetensors(path, &bytes)?;
            (SourceFormat::Safetensors, raw, metadata)
        } else {
            (
                SourceFormat::KerasOnnx,
                read_onnx(path, &bytes)?,
                BTreeMap::new(),
            )
        };
        let preprocess = match metadata.get(meta::PREPROCESS) {
            Some(p) => p.parse().map_err(|e| Vgg16Error::Corrupt {
                path: path.to_path_buf(),
                format: "safetensors",
                reason: format!("metadata {}: {e}", meta::PREPROCESS),
            })?,
            None => format.default_preprocess(),
        };
        let tensors = to_device(path, raw, device)?;
        tracing::debug!(
            "{}: {format} weights, expect {preprocess} input",
            path.display()
        );
        Ok(Weights {
            source: path.display().to_string(),
            sha256,
            preprocess,
            format,
            metadata,
            tensors,
        })
    }

    /// The 26 tensors by torchvision name, on the device they were loaded to.
    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    /// Where the weights originally came from: the source recorded in the file's metadata
    /// (for a converted file), else what was loaded.
    pub fn origin(&self) -> &str {
        self.metadata.get(meta::SOURCE).unwrap_or(&self.source)
    }

    /// Total number of parameters (14,714,688 for VGG16's conv base).
    pub fn parameter_count(&self) -> usize {
        self.tensors.values().map(Tensor::elem_count).sum()
    }

    /// Writes the weights as float32 safetensors under torchvision names, with header metadata
    /// recording the original source, its SHA-256, its format, the preprocessing the weights
    /// expect and a SHA-256 per tensor. The bytes depend only on the weights and that metadata
    /// (so a file's SHA-256 is the same on every machine); the file appears atomically.
    pub fn save(&self, out: &Path) -> Result<(), Vgg16Error> {
        let mut tensors = BTreeMap::new();
        for (name, shape) in conv_tensor_names() {
            let values: Vec<f32> = self.tensors[&name]
                .to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1()?;
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.insert(name, (shape, bytes));
        }
        let sums: BTreeMap<&str, String> = tensors
            .iter()
            .map(|(n, (_, b))| (n.as_str(), hex::encode(Sha256::digest(b))))
            .collect();
        let source_format = self
            .metadata
            .get(meta::SOURCE_FORMAT)
            .cloned()
            .unwrap_or_else(|| self.format.to_string());
        let source_sha256 = self
            .metadata
            .get(meta::SOURCE_SHA256)
            .unwrap_or(&self.sha256)
            .clone();
        let metadata = BTreeMap::from([
            (meta::SOURCE, self.origin().to_string()),
            (meta::SOURCE_SHA256, source_sha256),
            (meta::SOURCE_FORMAT, source_format),
            (meta::PREPROCESS, self.preprocess.to_string()),
            (
                meta::TENSOR_SHA256,
                serde_json::to_string(&sums).expect("a map of strings serialises"),
            ),
            (meta::TOOL_VERSION, env!("CARGO_PKG_VERSION").to_string()),
        ]);
        let io = |source: std::io::Error| Vgg16Error::Io {
            path: out.to_path_buf(),
            source,
        };
        let file_name = out
            .file_name()
            .ok_or_else(|| io(std::io::Error::other("output path has no file name")))?;
        let tmp: PathBuf = out.with_file_name(format!(
            ".{}.tmp.{}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        write_safetensors(&tmp, &tensors, &metadata)
            .and_then(|()| std::fs::rename(&tmp, out))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io(e)
            })
    }
}

/// Writes float32 tensors as safetensors with a header in sorted key order (the safetensors
/// crate serialises metadata from a `HashMap`, whose order changes from run to run).
fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<u8>)>,
    metadata: &BTreeMap<&str, String>,
) -> std::io::Result<()> {
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        dtype: &'static str,
        shape: &'a [usize],
        data_offsets: [usize; 2],
    }
    let mut header = BTreeMap::new();
    header.insert(
        "__metadata__".to_string(),
        serde_json::to_value(metadata).map_err(std::io::Error::other)?,
    );
    let mut offset = 0;
    for (name, (shape, bytes)) in tensors {
        let entry = Entry {
            dtype: "F32",
            shape,
            data_offsets: [offset, offset + bytes.len()],
        };
        header.insert(
            name.clone(),
            serde_json::to_value(entry).map_err(std::io::Error::other)?,
        );
        offset += bytes.len();
    }
    let mut json = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    // The data must start 8-byte aligned; the format pads the header with spaces.
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    w.write_all(&(json.len() as u64).to_le_bytes())?;
    w.write_all(&json)?;
    for (_, bytes) in tensors.values() {
        w.write_all(bytes)?;
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Reads the conv tensors of a safetensors file (extra tensors such as `head.*` are ignored),
/// checking each against the per-tensor SHA-256 in the metadata when the file has one.
fn read_safetensors(
    path: &Path,
    bytes: &[u8],
) -> Result<(RawTensors, BTreeMap<String, String>), Vgg16Error> {
    let corrupt = |reason: String| Vgg16Error::Corrupt {
        path: path.to_path_buf(),
        format: "safetensors",
        reason,
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(e.to_string()))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let sums: Option<BTreeMap<String, String>> = metadata
        .get(meta::TENSOR_SHA256)
        .map(|j| serde_json::from_str(j))
        .transpose()
        .map_err(|e| corrupt(format!("metadata {}: {e}", meta::TENSOR_SHA256)))?;
    let mut out = BTreeMap::new();
    for (name, shape) in conv_tensor_names() {
        let view = st.tensor(&name).map_err(|_| Vgg16Error::MissingTensor {
            path: path.to_path_buf(),
            tensor: name.clone(),
        })?;
        if view.shape() != shape.as_slice() {
            return Err(Vgg16Error::WrongShape {
                path: path.to_path_buf(),
                tensor: name,
                expected: shape,
                got: view.shape().to_vec(),
            });
        }
        if let Some(sums) = &sums
            && sums.get(&name) != Some(&hex::encode(Sha256::digest(view.data())))
        {
            return Err(Vgg16Error::TensorChecksumMismatch {
                path: path.to_path_buf(),
                tensor: name,
            });
        }
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F64 => DType::F64,
            other => {
                return Err(Vgg16Error::UnsupportedDtype {
                    path: path.to_path_buf(),
                    tensor: name,
                    dtype: format!("{other:?}"),
                });
            }
        };
        let data = Tensor::from_raw_buffer(view.data(), dtype, &shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1())
            .map_err(|source| Vgg16Error::Candle {
                path: path.to_path_buf(),
                source,
            })?;
        out.insert(name, RawTensor { shape, data });
    }
    Ok((out, metadata))
}

/// Reads the conv layers of a tf2onnx export of a Keras VGG16: for each `blockB_convC`, the
/// 4-D and the 1-D float initializers whose name has a path component `blockB_convC` or
/// `blockB_convC_K` (tf2onnx 1.17 names them
/// `functional_1/blockB_convC_1/convolution/ReadVariableOp:0` and `.../Squeeze:0`).
fn read_onnx(path: &Path, bytes: &[u8]) -> Result<RawTensors, Vgg16Error> {
    let corrupt = |reason: String| Vgg16Error::Corrupt {
        path: path.to_path_buf(),
        format: "ONNX",
        reason,
    };
    let inits = onnx::initializers(bytes).map_err(|reason| {
        if path.extension().is_some_and(|e| e == "onnx") {
            corrupt(reason)
        } else {
            Vgg16Error::UnknownFormat {
                path: path.to_path_buf(),
                reason: format!("not safetensors, HDF5 or ONNX; as ONNX: {reason}"),
            }
        }
    })?;
    let mut out = BTreeMap::new();
    for layer in Layer::convs() {
        let key = layer.keras_name();
        let under_layer = |name: &str| {
            name.split('/').any(|part| {
                part.strip_prefix(key).is_some_and(|rest| {
                    rest.is_empty()
                        || rest
                            .strip_prefix('_')
                            .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
                })
            })
        };
        let (i, o, n) = (layer.in_channels(), layer.channels(), layer.torch_index());
        for (rank, what, torch_name) in [
            (4, "kernel", format!("features.{n}.weight")),
            (1, "bias", format!("features.{n}.bias")),
        ] {
            let found: Vec<&onnx::Initializer> = inits
                .iter()
                .filter(|t| t.dims.len() == rank && under_layer(&t.name))
                .collect();
            let t = match found.as_slice() {
                [t] => *t,
                [] => {
                    return Err(Vgg16Error::MissingTensor {
                        path: path.to_path_buf(),
                        tensor: format!("{key} {what} (a {rank}-D initializer named under {key})"),
                    });
                }
                many => {
                    return Err(Vgg16Error::Ambiguous {
                        path: path.to_path_buf(),
                        tensor: format!("{key} {what}"),
                        candidates: many.iter().map(|t| t.name.clone()).collect(),
                    });
                }
            };
            if t.external {
                return Err(corrupt(format!(
                    "{}: values stored in an external file, which this reader does not follow",
                    t.name
                )));
            }
            if t.data_type != onnx::ONNX_FLOAT {
                return Err(Vgg16Error::UnsupportedDtype {
                    path: path.to_path_buf(),
                    tensor: t.name.clone(),
                    dtype: format!("ONNX data type {}", t.data_type),
                });
            }
            let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
            let expected = if rank == 4 { vec![o, i, 3, 3] } else { vec![o] };
            if dims != expected {
                return Err(Vgg16Error::WrongShape {
                    path: path.to_path_buf(),
                    tensor: t.name.clone(),
                    expected,
                    got: dims,
                });
            }
            let data = t
                .to_f32()
                .map_err(|reason| corrupt(format!("{}: {reason}", t.name)))?;
            out.insert(torch_name, RawTensor { shape: dims, data });
        }
    }
    Ok(out)
}

/// Checks the 26 tensors (present, shaped, finite) and puts them on the device.
fn to_device(
    path: &Path,
    mut raw: RawTensors,
    device: &Device,
) -> Result<HashMap<String, Tensor>, Vgg16Error> {
    let mut out = HashMap::new();
    for (name, shape) in conv_tensor_names() {
        let t = raw.remove(&name).ok_or_else(|| Vgg16Error::MissingTensor {
            path: path.to_path_buf(),
            tensor: name.clone(),
        })?;
        if t.shape != shape {
            return Err(Vgg16Error::WrongShape {
                path: path.to_path_buf(),
                tensor: name,
                expected: shape,
                got: t.shape,
            });
        }
        if !t.data.iter().all(|v| v.is_finite()) {
            return Err(Vgg16Error::NonFinite {
                path: path.to_path_buf(),
                tensor: name,
            });
        }
        let tensor =
            Tensor::from_vec(t.data, shape, device).map_err(|source| Vgg16Error::Candle {
                path: path.to_path_buf(),
                source,
            })?;
        out.insert(name, tensor);
    }
    Ok(out)
}
