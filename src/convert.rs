//! One-off conversion of the original PyTorch checkpoint to the safetensors the app serves.
//!
//! The checkpoint is a legacy (pre-1.6) `torch.save` stream whose conv and fc weights are
//! strided views in TensorFlow order; burn's `PytorchStore` reads the strides, and the parity
//! test proves the result. The browser cannot read `.pth`, so this runs natively, once.

use std::path::Path;

use burn::module::Module;
use burn::store::{ModuleSnapshot, PytorchStore};
use burn::tensor::Device;

use crate::error::{GraftError, Result};
use crate::model::{EfficientNetLite0, ImageNetClassifier};
use crate::model_file::write_atomically;
use crate::weights::{
    backbone_to_bytes, half_precision, imagenet_classifier_path, imagenet_classifier_to_bytes,
};

/// Reads the original checkpoint: the backbone, and the ImageNet classifier on top of it.
pub fn backbone_from_pth(
    path: &Path,
    device: &Device,
) -> Result<(EfficientNetLite0, ImageNetClassifier)> {
    if !path.is_file() {
        return Err(GraftError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let mut backbone = EfficientNetLite0::new(device);
    let mut classifier = ImageNetClassifier::new(device);
    let mut unused = load_from_pth(&mut backbone, path)?;
    // The classifier takes what the backbone left: `fc.*`.
    let classifier_unused = load_from_pth(&mut classifier, path)?;
    unused.retain(|name| classifier_unused.contains(name));
    // Only the BN step counters, which burn does not keep, may be left over.
    if let Some(extra) = unused.iter().find(|n| !n.ends_with("num_batches_tracked")) {
        return Err(bad_checkpoint(path, format!("unexpected tensor '{extra}'")));
    }
    Ok((backbone, classifier))
}

fn bad_checkpoint(path: &Path, reason: String) -> GraftError {
    GraftError::BadWeights {
        origin: path.display().to_string(),
        expected: "EfficientNet-Lite0 PyTorch checkpoint (efficientnet-lite0-57934424.pth)",
        reason,
    }
}

/// Loads the checkpoint's tensors into `module`, insisting that none of the module's is
/// missing; returns the checkpoint's tensors the module does not hold.
fn load_from_pth<M: Module>(module: &mut M, path: &Path) -> Result<Vec<String>> {
    let mut store = PytorchStore::from_file(path)
        // `_blocks.3._bn1.weight` -> `blocks.3.bn1.weight`; the adapter then maps BN
        // weight/bias to gamma/beta and transposes the fc weight.
        .with_key_remapping(r"(^|\.)_", "$1")
        .allow_partial(true);
    let result = module
        .load_from(&mut store)
        .map_err(|e| bad_checkpoint(path, format!("{e}")))?;
    if !result.missing.is_empty() || !result.errors.is_empty() {
        return Err(bad_checkpoint(path, format!("{result}")));
    }
    Ok(result.unused)
}

/// Converts `pth` to the backbone at `out`, in half precision (what every front end loads and
/// the browser downloads), and the ImageNet classifier next to it
/// ([`imagenet_classifier_path`]). Returns both files' sizes.
pub fn convert_weights(pth: &Path, out: &Path) -> Result<(usize, usize)> {
    let device = Device::flex();
    let (backbone, classifier) = backbone_from_pth(pth, &device)?;
    let backbone_bytes = half_precision(&backbone_to_bytes(&backbone)?)?;
    let classifier_bytes = imagenet_classifier_to_bytes(&classifier)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| GraftError::io(dir, e))?;
    }
    let sizes = (backbone_bytes.len(), classifier_bytes.len());
    write_atomically(out, backbone_bytes)?;
    write_atomically(&imagenet_classifier_path(out), classifier_bytes)?;
    Ok(sizes)
}
