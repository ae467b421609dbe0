//! The detector file: a safetensors file like the classifier's (see [`crate::model_file`]),
//! with [`DETECTOR_KIND`] as its kind, the head's tensors, and what is needed to use them
//! (class names, input size, the head's shape) as JSON under [`INFO_KEY`].
//!
//! A detector whose backbone blocks were fine-tuned also holds them, named
//! `backbone.blocks.{i}.*` (backbone block `firstBlock + i`) as in a fine-tuned classifier, and
//! says so in `fineTuned`; using it grafts them onto the pretrained backbone.

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::head::{DetectionHead, GROUPS, HeadConfig};
use crate::error::{GraftError, Result};
use crate::model::{EfficientNetLite0, PyramidTail};
use crate::model_file::{FileInfo, INFO_KEY, MAX_CLASSES, StoredBlocks, read_info};
use crate::weights::{
    BACKBONE_ID, BACKBONE_KEY, CheckedFile, KIND_KEY, apply_safetensors, check_file,
    copy_module_to, to_safetensors,
};

/// [`KIND_KEY`] value of a trained detector.
pub const DETECTOR_KIND: &str = "detector";
/// Version of head-only files.
pub const FORMAT_VERSION: u32 = 1;
/// Version of files with fine-tuned blocks, so that a Graft which would ignore them refuses
/// the file instead of detecting with the wrong backbone.
pub const FINE_TUNED_FORMAT_VERSION: u32 = 2;
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
    /// Present when the backbone's last blocks were fine-tuned and are stored in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tuned: Option<StoredBlocks>,
}

/// A trained detection head, the backbone blocks tuned with it, and their description.
#[derive(Debug)]
pub struct DetectorFile {
    pub info: DetectorInfo,
    pub head: DetectionHead,
    /// Present exactly when `info.fine_tuned` is.
    pub tail: Option<PyramidTail>,
}

/// The tensors of a file with fine-tuned blocks: the head's under their usual names, the
/// blocks under [`crate::model_file::TAIL_PREFIX`].
#[derive(Module, Debug)]
struct FineTunedTensors {
    laterals: Vec<Conv2d>,
    tower: Vec<Conv2d>,
    norms: Vec<GroupNorm>,
    classes: Conv2d,
    sides: Conv2d,
    centredness: Conv2d,
    backbone: PyramidTail,
}

impl FineTunedTensors {
    fn new(head: DetectionHead, backbone: PyramidTail) -> Self {
        let DetectionHead {
            laterals,
            tower,
            norms,
            classes,
            sides,
            centredness,
        } = head;
        Self {
            laterals,
            tower,
            norms,
            classes,
            sides,
            centredness,
            backbone,
        }
    }

    fn into_parts(self) -> (DetectionHead, PyramidTail) {
        let head = DetectionHead {
            laterals: self.laterals,
            tower: self.tower,
            norms: self.norms,
            classes: self.classes,
            sides: self.sides,
            centredness: self.centredness,
        };
        (head, self.backbone)
    }
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
    /// A detector of `input_size` pixels; `tail`: the backbone blocks tuned with the head.
    pub fn new(
        labels: Vec<String>,
        input_size: usize,
        head: DetectionHead,
        tail: Option<PyramidTail>,
    ) -> Self {
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
                fine_tuned: tail
                    .as_ref()
                    .map(|tail| StoredBlocks::last(tail.blocks.len())),
            },
            head,
            tail,
        }
    }

    /// The backbone this detector sees: the pretrained one, with the fine-tuned blocks
    /// grafted on when there are any.
    pub fn backbone(&self, pretrained: EfficientNetLite0) -> EfficientNetLite0 {
        match &self.tail {
            Some(tail) => tail.graft_onto(pretrained),
            None => pretrained,
        }
    }

    /// A copy on `device`, read without blocking (a head trained on WebGPU is saved through a
    /// CPU copy).
    pub async fn copy_to(&self, device: &Device) -> Result<Self> {
        let tail = match &self.tail {
            Some(tail) => Some(copy_module_to(tail, device).await?),
            None => None,
        };
        Ok(Self {
            info: self.info.clone(),
            head: copy_module_to(&self.head, device).await?,
            tail,
        })
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut info = self.info.clone();
        if self.tail.is_some() {
            info.format_version = FINE_TUNED_FORMAT_VERSION;
        }
        let info_json = serde_json::to_string(&info).expect("the info serialises");
        let metadata = [
            (KIND_KEY, DETECTOR_KIND),
            (BACKBONE_KEY, info.backbone.as_str()),
            (INFO_KEY, info_json.as_str()),
        ];
        match &self.tail {
            Some(tail) => to_safetensors(
                &FineTunedTensors::new(self.head.clone(), tail.clone()),
                &metadata,
            ),
            None => to_safetensors(&self.head, &metadata),
        }
    }

    /// Reads a detector file, refusing anything else by name (a classifier, the backbone).
    pub fn from_bytes(bytes: Vec<u8>, origin: &str, device: &Device) -> Result<Self> {
        let bad = |reason: String| GraftError::BadWeights {
            origin: origin.to_string(),
            expected: EXPECTED,
            reason,
        };
        let CheckedFile {
            bytes,
            metadata,
            names,
        } = check_file(bytes, origin, EXPECTED)?;
        let info: DetectorInfo = read_info(
            &metadata,
            origin,
            EXPECTED,
            DETECTOR_KIND,
            FINE_TUNED_FORMAT_VERSION,
        )?;
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
        StoredBlocks::check(info.fine_tuned.as_ref(), &names).map_err(bad)?;
        let head = info.head_config().init(device, 0);
        let Some(tuned) = &info.fine_tuned else {
            let mut head = head;
            apply_safetensors(&mut head, bytes, origin, EXPECTED)?;
            return Ok(Self {
                info,
                head,
                tail: None,
            });
        };
        let tail = PyramidTail::untrained(tuned.blocks, device).map_err(|e| bad(e.to_string()))?;
        let mut tensors = FineTunedTensors::new(head, tail);
        apply_safetensors(&mut tensors, bytes, origin, EXPECTED)?;
        let (head, tail) = tensors.into_parts();
        Ok(Self {
            info,
            head,
            tail: Some(tail),
        })
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
        DetectorFile::new(vec!["cat".into(), "dog".into()], 320, head, None)
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

    /// The tuned blocks travel in the file, and a file whose metadata and tensors disagree
    /// about them is refused rather than run on the wrong backbone.
    #[test]
    fn a_fine_tuned_detector_carries_its_blocks() {
        let device = Device::flex();
        let tail = PyramidTail::of(&EfficientNetLite0::new(&device), 2).unwrap();
        let tuned = || {
            let head = HeadConfig::new(2).init(&device, 3);
            DetectorFile::new(
                vec!["cat".into(), "dog".into()],
                320,
                head,
                Some(tail.clone()),
            )
        };
        let file = tuned();
        let read = DetectorFile::from_bytes(file.to_bytes().unwrap(), "det", &device).unwrap();
        assert_eq!(
            read.info.fine_tuned,
            Some(StoredBlocks {
                blocks: 2,
                first_block: 14,
                tensor_prefix: "backbone.".into()
            })
        );
        let weights = |t: &PyramidTail| {
            t.blocks[1]
                .project_conv
                .weight
                .val()
                .into_data()
                .try_into_vec::<f32>()
                .unwrap()
        };
        assert_eq!(weights(read.tail.as_ref().unwrap()), weights(&tail));
        assert_eq!(
            read.backbone(EfficientNetLite0::new(&device)).blocks.len(),
            16
        );

        let mut no_tensors = tuned();
        no_tensors.tail = None;
        let mut no_metadata = tuned();
        no_metadata.info.fine_tuned = None;
        let mut misplaced = tuned();
        misplaced.info.fine_tuned.as_mut().unwrap().first_block = 13;
        for (file, says) in [
            (no_tensors, "holds no backbone tensors"),
            (no_metadata, "no 'fineTuned' entry"),
            (misplaced, "do not end the backbone"),
        ] {
            let error = DetectorFile::from_bytes(file.to_bytes().unwrap(), "det", &device)
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{error}");
        }
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
        let file = DetectorFile::new(
            labels.clone(),
            320,
            HeadConfig::new(600).init(&device, 0),
            None,
        );
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
