//! One-off conversion of the original PyTorch checkpoint to the safetensors the app serves.
//!
//! The checkpoint is a legacy (pre-1.6) `torch.save` stream whose conv and fc weights are
//! strided views in TensorFlow order; burn's `PytorchStore` reads the strides, and the parity
//! test proves the result. The browser cannot read `.pth`, so this runs natively, once.

use std::path::Path;

use burn::store::{ModuleSnapshot, PytorchStore};
use burn::tensor::Device;

use crate::error::{GraftError, Result};
use crate::model::EfficientNetLite0;
use crate::weights::backbone_to_bytes;

/// Reads the original checkpoint into the burn backbone.
pub fn backbone_from_pth(path: &Path, device: &Device) -> Result<EfficientNetLite0> {
    let bad = |reason: String| GraftError::BadWeights {
        origin: path.display().to_string(),
        expected: "EfficientNet-Lite0 PyTorch checkpoint (efficientnet-lite0-57934424.pth)",
        reason,
    };
    if !path.is_file() {
        return Err(GraftError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let mut store = PytorchStore::from_file(path)
        // `_blocks.3._bn1.weight` -> `blocks.3.bn1.weight`; the adapter then maps BN
        // weight/bias to gamma/beta and transposes the fc weight.
        .with_key_remapping(r"(^|\.)_", "$1")
        .allow_partial(true);
    let mut backbone = EfficientNetLite0::new(device);
    let result = backbone
        .load_from(&mut store)
        .map_err(|e| bad(format!("{e}")))?;
    if !result.missing.is_empty() || !result.errors.is_empty() {
        return Err(bad(format!("{result}")));
    }
    // Only the BN step counters, which burn does not keep, may be left over.
    if let Some(extra) = result
        .unused
        .iter()
        .find(|n| !n.ends_with("num_batches_tracked"))
    {
        return Err(bad(format!("unexpected tensor '{extra}'")));
    }
    Ok(backbone)
}

/// Converts `pth` to safetensors at `out`, writing through a temporary file so an interrupted
/// run never leaves a truncated file behind.
pub fn convert_weights(pth: &Path, out: &Path) -> Result<usize> {
    let device = Device::flex();
    let backbone = backbone_from_pth(pth, &device)?;
    let bytes = backbone_to_bytes(&backbone)?;
    let partial = out.with_extension("safetensors.partial");
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| GraftError::io(dir, e))?;
    }
    std::fs::write(&partial, &bytes).map_err(|e| GraftError::io(&partial, e))?;
    std::fs::rename(&partial, out).map_err(|e| GraftError::io(out, e))?;
    Ok(bytes.len())
}
