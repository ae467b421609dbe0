//! The embeddings export (`graft embed`): every image's 1280 backbone features with its class,
//! file and content hash, as a safetensors file any tool reads (Python's `safetensors`,
//! NumPy), so users can analyse or train on the features themselves.
//!
//! Tensors: `features` (F32, `[n, 1280]`) and `labels` (I64, `[n]`, indices into the class
//! list). Header metadata: `graft.kind` = `embeddings`, `graft.backbone`, and `graft.embeddings`,
//! a JSON object `{ "labels": [...], "files": [...], "hashes": [...] }`.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};
use serde::Serialize;

use crate::error::{GraftError, Result};
use crate::model::FEATURE_DIM;
use crate::train::Example;
use crate::weights::{BACKBONE_ID, BACKBONE_KEY, KIND_KEY};

/// [`KIND_KEY`] value of an embeddings export.
pub const EMBEDDINGS_KIND: &str = "embeddings";
/// Metadata key of the JSON description.
pub const EMBEDDINGS_KEY: &str = "graft.embeddings";

#[derive(Serialize)]
struct Description<'a> {
    labels: &'a [String],
    files: Vec<&'a str>,
    hashes: Vec<&'a str>,
}

/// The export's bytes: `examples[i]` (its id is the file name) has features row `i`.
pub fn embeddings_to_bytes(
    labels: &[String],
    examples: &[Example],
    embeddings: &[f32],
) -> Result<Vec<u8>> {
    let failed = |reason: String| GraftError::BadWeights {
        origin: "embeddings being saved".into(),
        expected: "embeddings file",
        reason,
    };
    if embeddings.len() != examples.len() * FEATURE_DIM {
        return Err(failed("embeddings and examples differ in number".into()));
    }
    let description = Description {
        labels,
        files: examples.iter().map(|e| e.id.as_str()).collect(),
        hashes: examples.iter().map(|e| e.hash.as_str()).collect(),
    };
    let json = serde_json::to_string(&description).map_err(|e| failed(e.to_string()))?;
    let metadata = HashMap::from([
        (KIND_KEY.to_string(), EMBEDDINGS_KIND.to_string()),
        (BACKBONE_KEY.to_string(), BACKBONE_ID.to_string()),
        (EMBEDDINGS_KEY.to_string(), json),
    ]);
    let features: Vec<u8> = embeddings.iter().flat_map(|v| v.to_le_bytes()).collect();
    let label_bytes: Vec<u8> = examples
        .iter()
        .flat_map(|e| (e.label as i64).to_le_bytes())
        .collect();
    let tensors = [
        (
            "features",
            TensorView::new(Dtype::F32, vec![examples.len(), FEATURE_DIM], &features)
                .map_err(|e| failed(e.to_string()))?,
        ),
        (
            "labels",
            TensorView::new(Dtype::I64, vec![examples.len()], &label_bytes)
                .map_err(|e| failed(e.to_string()))?,
        ),
    ];
    safetensors::serialize(tensors, Some(metadata)).map_err(|e| failed(e.to_string()))
}
