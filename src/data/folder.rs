//! A dataset on disk: one sub-folder per class, or `train/` and `val/` each holding them.

use std::path::{Path, PathBuf};

use crate::error::{GraftError, Result};

/// One image file and the index of its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledFile {
    pub path: PathBuf,
    pub label: usize,
}

/// Labelled image files found under a dataset folder.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// Class names, sorted; a label is an index into this list.
    pub classes: Vec<String>,
    /// Files sorted by class, then by name, so listings (and seeded splits) are reproducible.
    pub files: Vec<LabelledFile>,
}

/// How a dataset folder is laid out.
#[derive(Debug, Clone)]
pub enum DatasetLayout {
    /// Class folders directly under the root: the validation split is drawn from them.
    Flat(ImageFolder),
    /// `train/` and `val/` (or `validation/`) with the same class folders in each.
    PreSplit {
        train: ImageFolder,
        validation: ImageFolder,
    },
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| GraftError::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| GraftError::io(dir, e))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl ImageFolder {
    /// Lists `root/<class>/<file>`. Every regular file is taken; files that are not images are
    /// reported when decoding, not silently dropped here.
    pub fn scan(root: &Path) -> Result<Self> {
        let bad = |reason: String| GraftError::BadDataset {
            path: root.to_path_buf(),
            reason,
        };
        if !root.is_dir() {
            return Err(bad("not a folder".into()));
        }
        let class_dirs: Vec<PathBuf> = read_dir_sorted(root)?
            .into_iter()
            .filter(|p| p.is_dir())
            .collect();
        if class_dirs.is_empty() {
            return Err(bad(
                "no class folders found; put each class's images in its own sub-folder \
                 (e.g. DATA/cats/*.jpg, DATA/dogs/*.jpg)"
                    .into(),
            ));
        }
        let mut classes = Vec::new();
        let mut files = Vec::new();
        for dir in &class_dirs {
            let label = classes.len();
            let images: Vec<PathBuf> = read_dir_sorted(dir)?
                .into_iter()
                .filter(|p| p.is_file())
                .collect();
            if images.is_empty() {
                return Err(bad(format!(
                    "class '{}' ({}) has no images",
                    file_name(dir),
                    dir.display()
                )));
            }
            files.extend(images.into_iter().map(|path| LabelledFile { path, label }));
            classes.push(file_name(dir));
        }
        if classes.len() < 2 {
            return Err(bad(format!(
                "only one class ('{}') found; a classifier needs at least two",
                classes[0]
            )));
        }
        Ok(Self { classes, files })
    }
}

impl DatasetLayout {
    /// Detects the layout: `train/` plus `val/` (or `validation/`) means pre-split.
    pub fn scan(root: &Path) -> Result<Self> {
        let train = root.join("train");
        let val = ["val", "validation"]
            .iter()
            .map(|name| root.join(name))
            .find(|p| p.is_dir());
        match val {
            Some(val) if train.is_dir() => {
                let train = ImageFolder::scan(&train)?;
                let validation = ImageFolder::scan(&val)?;
                if validation.classes != train.classes {
                    return Err(GraftError::BadDataset {
                        path: root.to_path_buf(),
                        reason: format!(
                            "train/ has classes {:?} but {} has {:?}",
                            train.classes,
                            val.display(),
                            validation.classes
                        ),
                    });
                }
                Ok(Self::PreSplit { train, validation })
            }
            _ => Ok(Self::Flat(ImageFolder::scan(root)?)),
        }
    }

    pub fn classes(&self) -> &[String] {
        match self {
            Self::Flat(folder) | Self::PreSplit { train: folder, .. } => &folder.classes,
        }
    }

    /// Files found, in training and validation folders alike.
    pub fn file_count(&self) -> usize {
        match self {
            Self::Flat(folder) => folder.files.len(),
            Self::PreSplit { train, validation } => train.files.len() + validation.files.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn flat_layout_lists_classes_and_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("b/2.jpg"));
        touch(&dir.path().join("b/1.jpg"));
        touch(&dir.path().join("a/x.png"));
        touch(&dir.path().join("a/.DS_Store"));
        let DatasetLayout::Flat(folder) = DatasetLayout::scan(dir.path()).unwrap() else {
            panic!("expected a flat layout");
        };
        assert_eq!(folder.classes, ["a", "b"]);
        let names: Vec<(String, usize)> = folder
            .files
            .iter()
            .map(|f| (file_name(&f.path), f.label))
            .collect();
        assert_eq!(
            names,
            [
                ("x.png".into(), 0),
                ("1.jpg".into(), 1),
                ("2.jpg".into(), 1)
            ]
        );
    }

    #[test]
    fn train_val_layout_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        for split in ["train", "val"] {
            touch(&dir.path().join(format!("{split}/cat/1.jpg")));
            touch(&dir.path().join(format!("{split}/dog/1.jpg")));
        }
        assert!(matches!(
            DatasetLayout::scan(dir.path()).unwrap(),
            DatasetLayout::PreSplit { .. }
        ));
    }

    #[test]
    fn empty_class_and_single_class_are_named() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("cat/1.jpg"));
        let err = DatasetLayout::scan(dir.path()).unwrap_err().to_string();
        assert!(err.contains("only one class ('cat')"), "{err}");
        std::fs::create_dir_all(dir.path().join("dog")).unwrap();
        let err = DatasetLayout::scan(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("class 'dog'") && err.contains("has no images"),
            "{err}"
        );
    }

    #[test]
    fn missing_folder_is_an_error() {
        let err = DatasetLayout::scan(Path::new("/nonexistent/graft")).unwrap_err();
        assert!(err.to_string().contains("not a folder"));
    }
}
