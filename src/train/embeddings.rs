//! Embeddings: the backbone's 1280 pooled features per image, computed once and reused by
//! every step that trains or evaluates the head.

use burn::tensor::{Device, Tensor, TensorData};

use crate::model::FEATURE_DIM;

/// Embeddings `[n, 1280]` (row-major) with their labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embeddings {
    pub features: Vec<f32>,
    pub labels: Vec<usize>,
}

impl Embeddings {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn push(&mut self, embedding: &[f32], label: usize) {
        debug_assert_eq!(embedding.len(), FEATURE_DIM);
        self.features.extend_from_slice(embedding);
        self.labels.push(label);
    }

    pub fn row(&self, index: usize) -> &[f32] {
        &self.features[index * FEATURE_DIM..(index + 1) * FEATURE_DIM]
    }

    /// The rows at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Self {
        let mut out = Self::default();
        for &i in indices {
            out.push(self.row(i), self.labels[i]);
        }
        out
    }

    /// The embeddings as one `[n, 1280]` tensor.
    pub fn features_tensor(&self, device: &Device) -> Tensor<2> {
        let x = TensorData::new(self.features.clone(), [self.len(), FEATURE_DIM]);
        Tensor::from_data(x, device)
    }
}
