//! The detector file: a safetensors file like the classifier's (see [`crate::model_file`]),
//! with [`DETECTOR_KIND`] as its kind, the head's tensors, and what is needed to use them
//! (class names, input size, the head's shape) as JSON under [`INFO_KEY`].

use serde::{Deserialize, Serialize};

use super::head::{DetectionHead, GROUPS, HeadConfig};
use crate::error::{GraftError, Result};
use crate::model_file::{FileInfo, INFO_KEY, MAX_CLASSES, read_info};
use crate::weights::{
    BACKBONE_ID, BACKBONE_KEY, CheckedFile, KIND_KEY, apply_safetensors, check_file,
    copy_module_to, to_safetensors,
};
use burn::tensor::Device;

/// [`KIND_KEY`] value of a trained detector.
pub const DETECTOR_KIND: &str = "detector";
pub const FORMAT_VERSION: u32 = 1;
const EXPECTED: &str = "Graft detection model";
/// Input sides a detector may declare: multiples of 32 (see
/// [`crate::model::EfficientNetLite0::pyramid`]) from 128 to 1024.
pub const INPUT_SIZES: std::ops::RangeInclusive<usize> = 128..=1024;
/// Widths a head may declare (its tensors are allocated before they are read).
const MAX_CHANNELS: usize = 1024;
/// The most weights the class convolution may declare (classes x channels x 3 x 3): it is
/// allocated before its tensor is read. 10,000 classes at the default 64 channels fit.
const MAX_CLASS_WEIGHTS: usize = 6_000_000;
const MAX_TOWER: usize = 8;

/// How a detector was trained and how well it did on its validation images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectorTraining {
    pub train_images: usize,
    pub validation_images: usize,
    pub epochs: usize,
    #[serde(rename = "valMAP50")]
    pub val_map50: Option<f64>,
    #[serde(rename = "valMAP50_95")]
    pub val_map50_95: Option<f64>,
}

/// Everything about a detector except its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectorInfo {
    pub format_version: u32,
    pub backbone: String,
    pub labels: Vec<String>,
    /// The side of the square, letterboxed input.
    pub input_size: usize,
    pub channels: usize,
    pub tower: usize,
    pub training: Option<DetectorTraining>,
}

/// A trained detection head and its description.
#[derive(Debug)]
pub struct DetectorFile {
    pub info: DetectorInfo,
    pub head: DetectionHead,
}

/// Checks an input side (an option or a file's).
pub fn check_input_size(side: usize) -> std::result::Result<(), String> {
    if !side.is_multiple_of(32) || !INPUT_SIZES.contains(&side) {
        return Err(format!(
            "{side} px: the input side is a multiple of 32 from {} to {}",
            INPUT_SIZES.start(),
            INPUT_SIZES.end()
        ));
    }
    Ok(())
}

impl DetectorFile {
    pub fn new(labels: Vec<String>, input_size: usize, head: DetectionHead) -> Self {
        let config = head.config();
        Self {
            info: DetectorInfo {
                format_version: FORMAT_VERSION,
                backbone: BACKBONE_ID.into(),
                labels,
                input_size,
                channels: config.channels,
                tower: config.tower,
                training: None,
            },
            head,
        }
    }

    /// A copy on `device`, read without blocking (a head trained on WebGPU is saved through a
    /// CPU copy).
    pub async fn copy_to(&self, device: &Device) -> Result<Self> {
        Ok(Self {
            info: self.info.clone(),
            head: copy_module_to(&self.head, device).await?,
        })
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let info = serde_json::to_string(&self.info).expect("the info serialises");
        to_safetensors(
            &self.head,
            &[
                (KIND_KEY, DETECTOR_KIND),
                (BACKBONE_KEY, &self.info.backbone),
                (INFO_KEY, &info),
            ],
        )
    }

    /// Reads a detector file, refusing anything else by name (a classifier, the backbone).
    pub fn from_bytes(bytes: Vec<u8>, origin: &str, device: &Device) -> Result<Self> {
        let bad = |reason: String| GraftError::BadWeights {
            origin: origin.to_string(),
            expected: EXPECTED,
            reason,
        };
        let CheckedFile {
            bytes, metadata, ..
        } = check_file(bytes, origin, EXPECTED)?;
        let info: DetectorInfo =
            read_info(&metadata, origin, EXPECTED, DETECTOR_KIND, FORMAT_VERSION)?;
        if !(1..=MAX_CLASSES).contains(&info.labels.len()) {
            return Err(bad(format!(
                "{} class name(s); a detector has 1 to {MAX_CLASSES}",
                info.labels.len()
            )));
        }
        check_input_size(info.input_size).map_err(bad)?;
        if !(1..=MAX_CHANNELS).contains(&info.channels)
            || !info.channels.is_multiple_of(GROUPS)
            || info.tower > MAX_TOWER
        {
            return Err(bad(format!(
                "a head of {} channels and {} tower layers; a multiple of {GROUPS} up to \
                 {MAX_CHANNELS} channels, at most {MAX_TOWER} layers",
                info.channels, info.tower
            )));
        }
        if info.labels.len() * info.channels * 9 > MAX_CLASS_WEIGHTS {
            return Err(bad(format!(
                "{} classes at {} channels: at most {MAX_CLASS_WEIGHTS} class weights",
                info.labels.len(),
                info.channels
            )));
        }
        let mut head = info.head_config().init(device, 0);
        apply_safetensors(&mut head, bytes, origin, EXPECTED)?;
        Ok(Self { info, head })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &std::path::Path, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| GraftError::io(path, e))?;
        Self::from_bytes(bytes, &path.display().to_string(), device)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        crate::model_file::write_atomically(path, self.to_bytes()?)
    }
}

impl FileInfo for DetectorInfo {
    fn format_version(&self) -> u32 {
        self.format_version
    }
    fn backbone(&self) -> &str {
        &self.backbone
    }
}

impl DetectorInfo {
    /// Each of a dataset's classes (`names`, in its order) as the model's class number: the
    /// same classes may come in another order (the browser numbers them as they first appear).
    /// A class either lacks is an error naming both lists.
    pub fn class_numbers(&self, names: &[String]) -> std::result::Result<Vec<usize>, String> {
        let mut sorted = (names.to_vec(), self.labels.clone());
        sorted.0.sort();
        sorted.1.sort();
        if sorted.0 != sorted.1 {
            return Err(format!(
                "its classes ({}) are not the model's ({})",
                names.join(", "),
                self.labels.join(", ")
            ));
        }
        Ok(names
            .iter()
            .map(|name| {
                self.labels
                    .iter()
                    .position(|l| l == name)
                    .expect("same classes")
            })
            .collect())
    }

    pub fn head_config(&self) -> HeadConfig {
        HeadConfig {
            classes: self.labels.len(),
            channels: self.channels,
            tower: self.tower,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_file::{ModelInfo, TrainedModel};

    fn detector(device: &Device) -> DetectorFile {
        let head = HeadConfig::new(2).init(device, 3);
        DetectorFile::new(vec!["cat".into(), "dog".into()], 320, head)
    }

    #[test]
    fn a_detector_file_round_trips() {
        let device = Device::flex();
        let file = detector(&device);
        let read = DetectorFile::from_bytes(file.to_bytes().unwrap(), "det", &device).unwrap();
        assert_eq!(read.info, file.info);
        let weights = |f: &DetectorFile| {
            f.head
                .classes
                .weight
                .val()
                .into_data()
                .try_into_vec::<f32>()
                .unwrap()
        };
        assert_eq!(weights(&read), weights(&file));
    }

    #[test]
    fn a_dataset_may_list_the_model_classes_in_another_order() {
        let info = detector(&Device::flex()).info;
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(info.class_numbers(&names(&["cat", "dog"])), Ok(vec![0, 1]));
        assert_eq!(info.class_numbers(&names(&["dog", "cat"])), Ok(vec![1, 0]));
        let other = info.class_numbers(&names(&["dog", "bird"])).unwrap_err();
        assert!(
            other.contains("dog, bird") && other.contains("cat, dog"),
            "{other}"
        );
        assert!(info.class_numbers(&names(&["cat"])).is_err());
    }

    /// A command picks the loader from the header alone, however large the file.
    #[test]
    fn the_kind_is_read_from_the_header_alone() {
        let device = Device::flex();
        let labels: Vec<String> = (0..600).map(|c| format!("class {c}")).collect();
        let file = DetectorFile::new(labels.clone(), 320, HeadConfig::new(600).init(&device, 0));
        let bytes = file.to_bytes().unwrap();
        assert!(
            bytes.len() > 1 << 20,
            "a file larger than any fixed prefix read"
        );
        let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(
            crate::weights::declared_kind(&bytes[..header]).as_deref(),
            Some(DETECTOR_KIND)
        );
        assert_eq!(crate::weights::declared_kind(&bytes[..header - 1]), None);
    }

    /// Each loader names what it was given instead.
    #[test]
    fn detectors_and_classifiers_refuse_each_other_by_name() {
        let device = Device::flex();
        let classifier = TrainedModel {
            info: ModelInfo::new(vec!["a".into(), "b".into()], None),
            head: crate::model::HeadConfig::new(2).init(&device, 0),
        };
        let error =
            DetectorFile::from_bytes(classifier.to_bytes().unwrap(), "cls.safetensors", &device)
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("cls.safetensors")
                && error.contains("it is an image classifier, not an object detection model"),
            "{error}"
        );
        let bytes = detector(&device).to_bytes().unwrap();
        let error = crate::model_file::ModelFile::from_bytes(bytes, "det.safetensors", &device)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("it is an object detection model, not an image classifier"),
            "{error}"
        );
    }

    /// A head shape the file declares is checked before anything is allocated for it: group
    /// normalisation would panic on a width it cannot divide, and a huge width would allocate.
    #[test]
    fn impossible_head_shapes_are_refused() {
        let device = Device::flex();
        for (channels, tower, size) in [
            (100, 2, 320),
            (1 << 20, 2, 320),
            (64, 99, 320),
            (64, 2, 300),
        ] {
            let mut file = detector(&device);
            // 1,024 channels are allowed, but not with 1,000 classes.
            file.info.labels = (0..1000).map(|c| c.to_string()).collect();
            file.info.channels = channels;
            file.info.tower = tower;
            file.info.input_size = size;
            let error = DetectorFile::from_bytes(file.to_bytes().unwrap(), "det", &device)
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("det: not a valid Graft detection model"),
                "{error}"
            );
        }
    }
}
