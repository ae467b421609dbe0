//! Choosing where tensors live: the CPU everywhere, a GPU where the build and machine allow.

use burn::tensor::Device;

use crate::error::{GraftError, Result};

/// Devices a user can ask for by name.
pub const DEVICE_NAMES: &str = "cpu, wgpu";

/// Resolves `cpu` (burn's flex backend) or `wgpu` (Vulkan/Metal/DX12 through wgpu). The GPU is
/// acquired here, so a missing adapter is a clear error rather than a panic mid-training.
pub fn device_from_name(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::flex()),
        "wgpu" | "gpu" => wgpu_device(name),
        other => Err(GraftError::option(
            "device",
            format!("'{other}' (valid devices: {DEVICE_NAMES})"),
        )),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device(name: &str) -> Result<Device> {
    Device::wgpu_options()
        .init()
        .map_err(|e| GraftError::DeviceUnavailable {
            name: name.into(),
            reason: format!(
                "{e} (on Linux without a GPU, install mesa-vulkan-drivers for a software adapter)"
            ),
        })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device(name: &str) -> Result<Device> {
    Err(GraftError::DeviceUnavailable {
        name: name.into(),
        reason: "this build of graft has no GPU support; rebuild with \
                 `cargo build --release --features wgpu`"
            .into(),
    })
}
