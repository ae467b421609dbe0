//! Choosing where tensors live: the CPU everywhere, a GPU where the build and machine allow.

use burn::tensor::Device;

use crate::error::{GraftError, Result};

/// Devices a user can ask for by name.
pub const DEVICE_NAMES: &str = "cpu, wgpu";

/// Resolves `cpu` (burn's flex backend) or `wgpu` (Vulkan/Metal/DX12 through wgpu), checking
/// that the device can actually run a kernel so that a missing GPU is a clear error, not a
/// panic halfway through training.
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
    use burn::tensor::{DeviceKind, Tensor};
    let probe = std::panic::catch_unwind(|| {
        let device = Device::wgpu(DeviceKind::default());
        let sum = Tensor::<1>::ones([4], &device).sum().into_scalar::<f32>();
        (sum == 4.0).then_some(device)
    });
    match probe {
        Ok(Some(device)) => Ok(device),
        Ok(None) => Err(GraftError::DeviceUnavailable {
            name: name.into(),
            reason: "the GPU returned a wrong result for a test kernel".into(),
        }),
        Err(_) => Err(GraftError::DeviceUnavailable {
            name: name.into(),
            reason: "no Vulkan, Metal or DX12 adapter was found (on Linux without a GPU, \
                     install mesa-vulkan-drivers for a software one)"
                .into(),
        }),
    }
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
