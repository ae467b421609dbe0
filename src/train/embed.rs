//! Embeddings: each image goes through the frozen backbone once, and training reuses the result.

use burn::tensor::Device;

use crate::data::preprocess::batch_tensor;
use crate::error::Result;
use crate::model::EfficientNetLite0;

/// Runs preprocessed images (`[3, 224, 224]` each) through the backbone and returns their
/// pooled features, `images.len() x 1280` row-major.
pub async fn embed_batch(
    backbone: &EfficientNetLite0,
    images: &[Vec<f32>],
    device: &Device,
) -> Result<Vec<f32>> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let features = backbone.features(batch_tensor(images, device));
    Ok(features.into_data_async().await?.try_into_vec::<f32>()?)
}
