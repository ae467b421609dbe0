//! Embeddings: each image goes through the frozen backbone once, and training reuses the result.

use burn::tensor::Device;

use crate::data::preprocess::batch_tensor;
use crate::error::Result;
use crate::model::{CpuBackbone, EfficientNetLite0};

/// The frozen backbone as embedding and prediction run it: on the CPU, the folded inference
/// path ([`CpuBackbone`]: BatchNorm folded, NHWC, fused; several times faster than the general
/// one); on any other device, burn's module there. Training, fine-tuning and explanations use
/// the module itself.
pub enum Embedder {
    Cpu(CpuBackbone),
    Device {
        backbone: Box<EfficientNetLite0>,
        device: Device,
    },
}

impl Embedder {
    /// The embedder for `backbone` (the pretrained one, or a fine-tuned model's) on `device`.
    pub fn new(backbone: &EfficientNetLite0, device: &Device) -> Result<Self> {
        Ok(if *device == Device::flex() {
            Self::Cpu(CpuBackbone::new(backbone)?)
        } else {
            Self::Device {
                backbone: Box::new(backbone.clone()),
                device: device.clone(),
            }
        })
    }

    /// Runs preprocessed images (`[3, 224, 224]` each) through the backbone and returns their
    /// pooled features, `images.len() x 1280` row-major.
    pub async fn features(&self, images: &[Vec<f32>]) -> Result<Vec<f32>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Self::Cpu(backbone) => Ok(backbone.features(images)),
            Self::Device { backbone, device } => {
                let features = backbone.features(batch_tensor(images, device));
                Ok(features.into_data_async().await?.try_into_vec::<f32>()?)
            }
        }
    }
}
