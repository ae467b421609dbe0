//! Files on disk into the recipe, for the CLI: read, hash, decode and embed in batches,
//! reporting (never hiding) the files that could not be used; and the images again, on demand,
//! when fine-tuning asks for them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::data::EFFICIENTNET_LITE;
use crate::data::content_hash;
use crate::data::decode::{decode_file, decode_image, read_image_file};
use crate::data::folder::{DatasetLayout, ImageFolder, LabelledFile};
use crate::error::{GraftError, Result};
use crate::train::{Embedder, Example, ImageSource, SkippedImage, TrainingSet};

/// Images per forward pass: large enough to keep the CPU busy, small enough to bound memory
/// (16 x 3 x 224 x 224 floats plus activations, well under 1 GiB).
pub const EMBED_BATCH: usize = 16;

/// The usable files of a folder, embedded: examples (id = path under the dataset root), their
/// embeddings and files, and what was skipped.
#[derive(Debug, Default)]
pub struct EmbeddedFiles {
    pub examples: Vec<Example>,
    /// `examples.len() x 1280`.
    pub embeddings: Vec<f32>,
    /// The file of each example.
    pub paths: Vec<PathBuf>,
    pub skipped: Vec<SkippedImage>,
}

/// How a file is named in messages and reports: its path under the dataset root.
pub fn relative_name(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Reads, hashes, decodes and embeds `files` in batches. A file that cannot be read or decoded,
/// or that repeats an image already seen, is skipped and reported; a device failure aborts.
/// `on_progress(done, total)` is called after every batch.
pub fn embed_files(
    embedder: &Embedder,
    files: &[LabelledFile],
    root: &Path,
    mut on_progress: impl FnMut(usize, usize),
) -> Result<EmbeddedFiles> {
    let mut out = EmbeddedFiles::default();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (chunk_index, chunk) in files.chunks(EMBED_BATCH).enumerate() {
        let mut prepared = Vec::with_capacity(chunk.len());
        for file in chunk {
            let name = relative_name(&file.path, root);
            let skip = |reason: String| SkippedImage {
                name: name.clone(),
                reason,
            };
            let bytes = match read_image_file(&file.path) {
                Ok(bytes) => bytes,
                Err(GraftError::BadImage { reason, .. }) => {
                    out.skipped.push(skip(reason));
                    continue;
                }
                Err(error) => {
                    out.skipped.push(skip(error.to_string()));
                    continue;
                }
            };
            let hash = content_hash(&bytes);
            if let Some(first) = seen.get(&hash) {
                out.skipped.push(skip(format!("the same image as {first}")));
                continue;
            }
            match decode_image(&bytes, &name) {
                Ok(rgba) => {
                    prepared.push(EFFICIENTNET_LITE.prepare(&rgba));
                    seen.insert(hash.clone(), name.clone());
                    out.examples.push(Example {
                        id: name,
                        hash,
                        label: file.label,
                    });
                    out.paths.push(file.path.clone());
                }
                Err(GraftError::BadImage { reason, .. }) => out.skipped.push(skip(reason)),
                Err(other) => out.skipped.push(skip(other.to_string())),
            }
        }
        let features = futures_lite::future::block_on(embedder.features(&prepared))?;
        out.embeddings.extend(features);
        on_progress(
            (chunk_index * EMBED_BATCH + chunk.len()).min(files.len()),
            files.len(),
        );
    }
    Ok(out)
}

/// A dataset folder embedded into a [`TrainingSet`], with the file behind each example. With
/// `train/` and `val/`, the validation folder's images are the held-out ones.
pub fn training_set(
    layout: &DatasetLayout,
    root: &Path,
    embedder: &Embedder,
    mut on_progress: impl FnMut(usize, usize),
) -> Result<(TrainingSet, Vec<PathBuf>)> {
    let (files, validation_files): (Vec<LabelledFile>, usize) = match layout {
        DatasetLayout::Flat(folder) => (folder.files.clone(), 0),
        DatasetLayout::PreSplit { train, validation } => (
            validation
                .files
                .iter()
                .chain(&train.files)
                .cloned()
                .collect(),
            validation.files.len(),
        ),
    };
    let embedded = embed_files(embedder, &files, root, &mut on_progress)?;
    let fixed_validation = match layout {
        DatasetLayout::Flat(_) => None,
        DatasetLayout::PreSplit { .. } => {
            let val_paths: std::collections::HashSet<&Path> = files[..validation_files]
                .iter()
                .map(|f| f.path.as_path())
                .collect();
            Some(
                embedded
                    .paths
                    .iter()
                    .map(|p| val_paths.contains(p.as_path()))
                    .collect(),
            )
        }
    };
    let set = TrainingSet {
        labels: layout.classes().to_vec(),
        examples: embedded.examples,
        embeddings: embedded.embeddings,
        fixed_validation,
        skipped: embedded.skipped,
    };
    for (label, class) in set.labels.iter().enumerate() {
        if !set.examples.iter().any(|e| e.label == label) {
            return Err(GraftError::BadDataset {
                path: root.to_path_buf(),
                reason: format!("class '{class}' has no usable images"),
            });
        }
    }
    Ok((set, embedded.paths))
}

/// The images of a training set's examples, decoded from their files when fine-tuning asks.
pub struct FileImages {
    pub paths: Vec<PathBuf>,
}

impl ImageSource for FileImages {
    async fn load(&mut self, examples: &[usize]) -> Result<Vec<image::RgbaImage>> {
        // The files decoded before (when embedding), so a failure now means the file changed
        // underneath us, and it is an error.
        examples
            .iter()
            .map(|&i| decode_file(&self.paths[i]))
            .collect()
    }
}

/// The files of a folder to evaluate on, with labels renumbered to the model's label order:
/// every image (`val` only with a train/ and val/ layout), or only those whose content hash is
/// in `held_out`. Returns the files and how many of `held_out` were not found.
pub fn evaluation_files(
    layout: &DatasetLayout,
    root: &Path,
    model_labels: &[String],
    held_out: Option<&[String]>,
) -> Result<(Vec<LabelledFile>, usize)> {
    let folder: &ImageFolder = match layout {
        DatasetLayout::Flat(folder) => folder,
        DatasetLayout::PreSplit { validation, .. } => validation,
    };
    let mut files = Vec::with_capacity(folder.files.len());
    for file in &folder.files {
        let class = &folder.classes[file.label];
        let label = model_labels
            .iter()
            .position(|l| l == class)
            .ok_or_else(|| GraftError::BadDataset {
                path: root.to_path_buf(),
                reason: format!(
                    "class '{class}' is not one of the model's classes {model_labels:?}"
                ),
            })?;
        files.push(LabelledFile {
            path: file.path.clone(),
            label,
        });
    }
    let Some(held_out) = held_out else {
        return Ok((files, 0));
    };
    let wanted: std::collections::HashSet<&str> = held_out.iter().map(String::as_str).collect();
    let mut found = std::collections::HashSet::new();
    let mut kept = Vec::new();
    for file in files {
        // Unreadable or refused files cannot be held-out images of this folder; skipped here.
        let Ok(bytes) = read_image_file(&file.path) else {
            continue;
        };
        let hash = content_hash(&bytes);
        if wanted.contains(hash.as_str()) && found.insert(hash) {
            kept.push(file);
        }
    }
    Ok((kept, wanted.len() - found.len()))
}
