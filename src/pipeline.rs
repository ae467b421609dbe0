//! Files on disk to embeddings, for the CLI: decode, preprocess, embed in batches, and report
//! (never hide) the files that could not be used.

use std::path::PathBuf;

use burn::tensor::Device;

use crate::data::EFFICIENTNET_LITE;
use crate::data::decode::decode_file;
use crate::data::folder::LabelledFile;
use crate::error::{GraftError, Result};
use crate::model::EfficientNetLite0;
use crate::train::{Embeddings, embed_batch};

/// Images per forward pass: large enough to keep the CPU busy, small enough to bound memory
/// (16 x 3 x 224 x 224 floats plus activations, well under 1 GiB).
pub const EMBED_BATCH: usize = 16;

/// A file that was left out, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Embeddings of the files that decoded, which of the input files they belong to, and the
/// files that were skipped.
#[derive(Debug, Default)]
pub struct EmbeddedFiles {
    pub embeddings: Embeddings,
    /// `kept[i]` is the index in the input of embedding `i`.
    pub kept: Vec<usize>,
    pub skipped: Vec<Skipped>,
}

/// Decodes and embeds `files` in batches. A file that fails to decode is skipped and reported;
/// a device failure aborts. `on_progress(done, total)` is called after every batch.
pub fn embed_files(
    backbone: &EfficientNetLite0,
    files: &[LabelledFile],
    device: &Device,
    mut on_progress: impl FnMut(usize, usize),
) -> Result<EmbeddedFiles> {
    let mut out = EmbeddedFiles::default();
    for (chunk_index, chunk) in files.chunks(EMBED_BATCH).enumerate() {
        let mut images = Vec::with_capacity(chunk.len());
        let mut labels = Vec::with_capacity(chunk.len());
        for (offset, file) in chunk.iter().enumerate() {
            match decode_file(&file.path) {
                Ok(rgba) => {
                    images.push(EFFICIENTNET_LITE.prepare(&rgba));
                    labels.push(file.label);
                    out.kept.push(chunk_index * EMBED_BATCH + offset);
                }
                Err(GraftError::BadImage { reason, .. }) => out.skipped.push(Skipped {
                    path: file.path.clone(),
                    reason,
                }),
                Err(other) => out.skipped.push(Skipped {
                    path: file.path.clone(),
                    reason: other.to_string(),
                }),
            }
        }
        let features = futures_lite::future::block_on(embed_batch(backbone, &images, device))?;
        for (embedding, label) in features.chunks(crate::model::FEATURE_DIM).zip(labels) {
            out.embeddings.push(embedding, label);
        }
        on_progress(
            (chunk_index * EMBED_BATCH + chunk.len()).min(files.len()),
            files.len(),
        );
    }
    Ok(out)
}
