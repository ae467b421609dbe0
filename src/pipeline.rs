//! Files on disk to embeddings, for the CLI: decode, preprocess, embed in batches, and report
//! (never hide) the files that could not be used; and fine-tuning on files, a batch at a time.

use std::path::PathBuf;

use burn::tensor::Device;

use crate::data::EFFICIENTNET_LITE;
use crate::data::decode::decode_file;
use crate::data::folder::LabelledFile;
use crate::error::{GraftError, Result};
use crate::model::EfficientNetLite0;
use crate::train::{Embeddings, EpochReport, FineTuned, FineTuner, Part, embed_batch};

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

/// What [`fine_tune_files`] reports while it runs.
pub enum FineTuneEvent<'a> {
    /// Phase 1's validation numbers, before any fine-tuning step (epoch 0).
    Baseline(&'a EpochReport),
    /// A training batch finished: `(done, total)` batches of the current epoch.
    Batch(usize, usize),
    /// An epoch ended, after `seconds` of wall time (training and validation).
    Epoch(&'a EpochReport, f64),
}

/// Decodes the images of one batch; the files decoded before (in phase 1), so a failure now
/// means the file changed underneath us and is an error.
fn decode_batch(files: &[LabelledFile], indices: &[usize]) -> Result<Vec<image::RgbaImage>> {
    indices
        .iter()
        .map(|&i| decode_file(&files[i].path))
        .collect()
}

fn validation_pass(tuner: &mut FineTuner, files: &[LabelledFile]) -> Result<()> {
    for batch in tuner.validation_batches() {
        let images = match tuner.needs_images(Part::Validation, &batch) {
            true => decode_batch(files, &batch)?,
            false => Vec::new(),
        };
        tuner.validate_batch(&batch, &images)?;
    }
    Ok(())
}

/// Drives a [`FineTuner`] over files on disk, decoding only one batch of images at a time, so
/// memory stays bounded whatever the dataset's size. `train` and `validation` are the tuner's
/// examples in order (example `i` is file `i`).
pub fn fine_tune_files(
    mut tuner: FineTuner,
    train: &[LabelledFile],
    validation: &[LabelledFile],
    mut on_event: impl FnMut(FineTuneEvent<'_>),
) -> Result<FineTuned> {
    if !validation.is_empty() {
        validation_pass(&mut tuner, validation)?;
        let baseline = futures_lite::future::block_on(tuner.finish_baseline())?;
        on_event(FineTuneEvent::Baseline(&baseline));
    }
    while !tuner.is_done() {
        let started = std::time::Instant::now();
        let batches = tuner.train_batches();
        for (done, batch) in batches.iter().enumerate() {
            let images = match tuner.needs_images(Part::Train, batch) {
                true => decode_batch(train, batch)?,
                false => Vec::new(),
            };
            tuner.train_step(batch, &images)?;
            on_event(FineTuneEvent::Batch(done + 1, batches.len()));
        }
        validation_pass(&mut tuner, validation)?;
        let report = futures_lite::future::block_on(tuner.finish_epoch())?;
        on_event(FineTuneEvent::Epoch(
            &report,
            started.elapsed().as_secs_f64(),
        ));
    }
    tuner.finish()
}
