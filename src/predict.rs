//! Inference: class probabilities for preprocessed images, and the top classes.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use crate::error::Result;
use crate::model::{ClassifierHead, FEATURE_DIM, ImageNetClassifier};
use crate::train::{Embedder, Embeddings};

/// One class and its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    pub label: String,
    pub index: usize,
    pub score: f32,
}

async fn read_rows(tensor: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, width] = tensor.dims();
    let flat = tensor.into_data_async().await?.try_into_vec::<f32>()?;
    Ok(flat.chunks(width.max(1)).map(<[f32]>::to_vec).collect())
}

/// Softmax of `head` on the images' embeddings, one row per image.
async fn probabilities_after(
    embedder: &Embedder,
    images: &[Vec<f32>],
    device: &Device,
    head: impl FnOnce(Tensor<2>) -> Tensor<2>,
) -> Result<Vec<Vec<f32>>> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let features = embedder.features(images).await?;
    let features = Tensor::from_data(
        TensorData::new(features, [images.len(), FEATURE_DIM]),
        device,
    );
    read_rows(softmax(head(features), 1)).await
}

/// Probabilities over the user's classes, one row per image.
pub async fn class_probabilities(
    embedder: &Embedder,
    head: &ClassifierHead,
    images: &[Vec<f32>],
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    probabilities_after(embedder, images, device, |features| head.forward(features)).await
}

/// Probabilities over the user's classes for embeddings computed earlier.
pub async fn head_probabilities(
    head: &ClassifierHead,
    embeddings: &Embeddings,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    if embeddings.is_empty() {
        return Ok(Vec::new());
    }
    read_rows(softmax(head.forward(embeddings.features_tensor(device)), 1)).await
}

/// Probabilities over the 1000 ImageNet classes from the original network's classifier.
pub async fn imagenet_probabilities(
    embedder: &Embedder,
    classifier: &ImageNetClassifier,
    images: &[Vec<f32>],
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    probabilities_after(embedder, images, device, |features| {
        classifier.forward(features)
    })
    .await
}

/// The name of class `index` (its number when the labels do not reach it).
pub fn label_of(labels: &[String], index: usize) -> String {
    labels
        .get(index)
        .cloned()
        .unwrap_or_else(|| index.to_string())
}

/// The `k` most probable classes, best first (on the host: sorting on WebGPU is unreliable).
pub fn top_k(probabilities: &[f32], labels: &[String], k: usize) -> Vec<Prediction> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    order
        .into_iter()
        .take(k)
        .map(|index| Prediction {
            label: label_of(labels, index),
            index,
            score: probabilities[index],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_score() {
        let labels = vec!["a".to_string(), "b".into(), "c".into()];
        let top = top_k(&[0.2, 0.5, 0.3], &labels, 2);
        assert_eq!(
            top.iter().map(|p| p.label.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert_eq!(top[0].index, 1);
    }
}
