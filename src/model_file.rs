//! The trained model file: the head's weights plus everything needed to use them.
//!
//! A safetensors file, so anyone can open it (Python's `safetensors`, burn, our CLI and the
//! browser). Its metadata holds the class labels, the head's shape, the preprocessing and the
//! backbone it was trained on, as JSON under `graft.model`.
//!
//! A fine-tuned model (phase 2) also holds the backbone tail it trained, its tensors named
//! `backbone.blocks.{i}.*` (backbone block `firstBlock + i`), `backbone.conv_head.weight` and
//! `backbone.bn1.*`, and says so in `fineTuned`; loading grafts them onto the pretrained
//! backbone. A head-only file is exactly what it was before, and stays small.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::data::{Augmentation, EFFICIENTNET_LITE, Preprocessing};
use crate::error::{GraftError, Result};
use crate::model::{BackboneTail, ClassifierHead, EfficientNetLite0, HeadConfig};
use crate::train::options::MAX_HIDDEN_UNITS;
use crate::train::{FineTunePlan, FineTuned};
use crate::weights::{
    BACKBONE_ID, BACKBONE_KEY, CheckedFile, KIND_KEY, apply_safetensors, check_file,
    copy_module_to, to_safetensors,
};

/// [`KIND_KEY`] value of a trained model.
pub const MODEL_KIND: &str = "model";
/// Metadata key of the JSON-encoded [`ModelInfo`].
pub const INFO_KEY: &str = "graft.model";
/// Version of the [`ModelInfo`] layout of head-only files; bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;
/// Version written by fine-tuned files, so that a Graft which would ignore their backbone tail
/// refuses them instead of predicting with the wrong backbone.
pub const FINE_TUNED_FORMAT_VERSION: u32 = 2;
/// Name prefix of the backbone tail's tensors in a fine-tuned file.
pub const TAIL_PREFIX: &str = "backbone.";
const EXPECTED: &str = "Graft model file";
/// The most classes a model file may declare: its head (1280 x classes floats) is allocated
/// before its tensors are read, so the number is checked first.
pub const MAX_CLASSES: usize = 10_000;

/// Which images were held out for validation, so `graft eval --split val` scores exactly
/// them, on any machine and whatever order the images were added in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SplitInfo {
    /// How the held-out images were drawn: `None` when the data came split (train/ and val/).
    pub seed: Option<u64>,
    pub validation_fraction: Option<f64>,
    /// Content hashes ([`crate::data::content_hash`]) of the held-out images, sorted. Absent
    /// from files written before Graft recorded it.
    #[serde(default)]
    pub held_out: Vec<String>,
}

/// How the saved model was trained and how well it did on its held-out images. Unknown keys
/// are ignored, so files from earlier versions still load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingSummary {
    pub train_images: usize,
    pub validation_images: usize,
    pub val_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    /// The head's L2 penalty.
    #[serde(default)]
    pub l2: Option<f64>,
    pub split: Option<SplitInfo>,
}

/// Everything about a model except its tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    pub format_version: u32,
    pub backbone: String,
    pub labels: Vec<String>,
    pub hidden_units: Option<usize>,
    pub preprocessing: Preprocessing,
    pub training: Option<TrainingSummary>,
    /// Present when the backbone's tail was fine-tuned and is stored in the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tuned: Option<FineTuneInfo>,
}

/// What phase 2 changed and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FineTuneInfo {
    /// The trailing MBConv blocks stored (the head conv and its BatchNorm always are).
    #[serde(flatten)]
    pub stored: StoredBlocks,
    pub batch_norm_trained: bool,
    pub backbone_lr_factor: f64,
    pub augment: Augmentation,
    pub epochs_run: usize,
    /// 1-based epoch whose weights the file holds.
    pub best_epoch: usize,
    pub val_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
}

impl FineTuneInfo {
    /// Describes a fine-tuning run whose best epoch is 1 or later.
    pub fn of(tuned: &FineTuned, plan: &FineTunePlan) -> Self {
        let best = tuned.history.get(tuned.best_epoch.wrapping_sub(1));
        Self {
            stored: StoredBlocks::last(tuned.tail.blocks.len()),
            batch_norm_trained: plan.train_batch_norm,
            backbone_lr_factor: plan.backbone_lr_factor,
            augment: plan.augment,
            epochs_run: tuned.history.len(),
            best_epoch: tuned.best_epoch,
            val_accuracy: best.and_then(|b| b.val_accuracy),
            val_loss: best.and_then(|b| b.val_loss),
        }
    }
}

impl ModelInfo {
    pub fn new(labels: Vec<String>, hidden_units: Option<usize>) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            backbone: BACKBONE_ID.to_string(),
            labels,
            hidden_units,
            preprocessing: EFFICIENTNET_LITE,
            training: None,
            fine_tuned: None,
        }
    }

    pub fn with_training(mut self, summary: TrainingSummary) -> Self {
        self.training = Some(summary);
        self
    }

    pub fn head_config(&self) -> HeadConfig {
        HeadConfig::new(self.labels.len()).with_hidden_units(self.hidden_units)
    }
}

/// A head ready for inference and its description.
#[derive(Debug)]
pub struct TrainedModel {
    pub info: ModelInfo,
    pub head: ClassifierHead,
}

impl TrainedModel {
    /// The model file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let info = serde_json::to_string(&self.info).map_err(|e| GraftError::BadWeights {
            origin: "model being saved".into(),
            expected: EXPECTED,
            reason: e.to_string(),
        })?;
        to_safetensors(
            &self.head,
            &[
                (KIND_KEY, MODEL_KIND),
                (BACKBONE_KEY, &self.info.backbone),
                (INFO_KEY, &info),
            ],
        )
    }
}

/// The tensors of a fine-tuned file: the head's under their usual names, the tail under
/// [`TAIL_PREFIX`].
#[derive(Module, Debug)]
struct FineTunedTensors {
    hidden: Option<Linear>,
    output: Linear,
    backbone: BackboneTail,
}

/// Everything a model file holds: the head, and the backbone tail when it was fine-tuned.
#[derive(Debug)]
pub struct ModelFile {
    pub model: TrainedModel,
    /// Present exactly when `model.info.fine_tuned` is.
    pub tail: Option<BackboneTail>,
}

impl ModelFile {
    /// A head-only model.
    pub fn head_only(model: TrainedModel) -> Self {
        Self { model, tail: None }
    }

    /// A fine-tuned model; `info.fine_tuned` is set from `tail` and `details`.
    pub fn fine_tuned(mut model: TrainedModel, tail: BackboneTail, details: FineTuneInfo) -> Self {
        model.info.fine_tuned = Some(details);
        Self {
            model,
            tail: Some(tail),
        }
    }

    /// A copy on `device`, read without blocking: save a model trained on WebGPU through a
    /// CPU copy, because the file writer reads tensors synchronously.
    pub async fn copy_to(&self, device: &Device) -> Result<Self> {
        let head = self.model.head.copy_to(device).await?;
        let tail = match &self.tail {
            Some(tail) => Some(copy_module_to(tail, device).await?),
            None => None,
        };
        Ok(Self {
            model: TrainedModel {
                info: self.model.info.clone(),
                head,
            },
            tail,
        })
    }

    /// The backbone this model predicts with: the pretrained one, with the fine-tuned tail
    /// grafted on when there is one.
    pub fn backbone(&self, pretrained: EfficientNetLite0) -> EfficientNetLite0 {
        match &self.tail {
            Some(tail) => tail.graft_onto(pretrained),
            None => pretrained,
        }
    }

    /// The file's bytes: exactly [`TrainedModel::to_bytes`] when only the head was trained.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let Some(tail) = &self.tail else {
            return self.model.to_bytes();
        };
        let mut info = self.model.info.clone();
        info.format_version = FINE_TUNED_FORMAT_VERSION;
        let info_json = serde_json::to_string(&info).map_err(|e| GraftError::BadWeights {
            origin: "model being saved".into(),
            expected: EXPECTED,
            reason: e.to_string(),
        })?;
        let tensors = FineTunedTensors {
            hidden: self.model.head.hidden.clone(),
            output: self.model.head.output.clone(),
            backbone: tail.clone(),
        };
        to_safetensors(
            &tensors,
            &[
                (KIND_KEY, MODEL_KIND),
                (BACKBONE_KEY, &info.backbone),
                (INFO_KEY, &info_json),
            ],
        )
    }

    /// Reads any model file, checking that it is one and that it belongs to our backbone.
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
        let info: ModelInfo = read_info(
            &metadata,
            origin,
            EXPECTED,
            MODEL_KIND,
            FINE_TUNED_FORMAT_VERSION,
        )?;
        if info.preprocessing != EFFICIENTNET_LITE {
            return Err(bad(format!(
                "unsupported preprocessing {:?}",
                info.preprocessing
            )));
        }
        if !(2..=MAX_CLASSES).contains(&info.labels.len()) {
            return Err(bad(format!(
                "{} class label(s); a model has 2 to {MAX_CLASSES}",
                info.labels.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(label) = info.labels.iter().find(|l| !seen.insert(l.as_str())) {
            return Err(bad(format!("the class label '{label}' appears twice")));
        }
        if let Some(units) = info
            .hidden_units
            .filter(|u| !(1..=MAX_HIDDEN_UNITS).contains(u))
        {
            return Err(bad(format!(
                "hiddenUnits {units} is outside 1 to {MAX_HIDDEN_UNITS}"
            )));
        }
        StoredBlocks::check(info.fine_tuned.as_ref().map(|t| &t.stored), &names).map_err(bad)?;
        let head = info.head_config().init(device, 0);
        let Some(tuned) = &info.fine_tuned else {
            let mut head = head;
            apply_safetensors(&mut head, bytes, origin, EXPECTED)?;
            return Ok(Self::head_only(TrainedModel { info, head }));
        };
        let mut tensors = FineTunedTensors {
            hidden: head.hidden,
            output: head.output,
            backbone: BackboneTail::untrained(tuned.stored.blocks, device)
                .map_err(|e| bad(e.to_string()))?,
        };
        apply_safetensors(&mut tensors, bytes, origin, EXPECTED)?;
        let head = ClassifierHead {
            hidden: tensors.hidden,
            output: tensors.output,
        };
        Ok(Self {
            model: TrainedModel { info, head },
            tail: Some(tensors.backbone),
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &std::path::Path, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| GraftError::io(path, e))?;
        Self::from_bytes(bytes, &path.display().to_string(), device)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        write_atomically(path, self.to_bytes()?)
    }
}

/// Which of the backbone's blocks a fine-tuned file holds (always its last ones), and under
/// which name: in a classifier's `fineTuned` and a detector's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredBlocks {
    pub blocks: usize,
    /// Backbone index of the first stored block.
    pub first_block: usize,
    pub tensor_prefix: String,
}

impl StoredBlocks {
    /// The backbone's last `blocks` blocks, under [`TAIL_PREFIX`].
    pub fn last(blocks: usize) -> Self {
        Self {
            blocks,
            first_block: crate::model::NUM_BLOCKS - blocks,
            tensor_prefix: TAIL_PREFIX.into(),
        }
    }

    /// Checks that a file's tensors (`names`) and metadata (`described`) agree about
    /// fine-tuned blocks: tensors under [`TAIL_PREFIX`] exactly when the metadata describes
    /// blocks, and those end the backbone. The reason when not: a file with a wrong backbone is
    /// refused, never run.
    pub(crate) fn check(
        described: Option<&StoredBlocks>,
        names: &[String],
    ) -> std::result::Result<(), String> {
        let holds_blocks = names.iter().any(|n| n.starts_with(TAIL_PREFIX));
        match described {
            None if holds_blocks => Err(format!(
                "it holds fine-tuned backbone tensors ({TAIL_PREFIX}*) but its metadata has no \
                 'fineTuned' entry"
            )),
            Some(_) if !holds_blocks => {
                Err("its metadata says it was fine-tuned, but it holds no backbone tensors".into())
            }
            Some(stored) if *stored != Self::last(stored.blocks) || stored.blocks == 0 => {
                Err(format!(
                    "fine-tuned blocks {}..{} under '{}' do not end the backbone",
                    stored.first_block,
                    stored.first_block.saturating_add(stored.blocks),
                    stored.tensor_prefix
                ))
            }
            _ => Ok(()),
        }
    }
}

/// What every trained file's description tells about itself, for [`read_info`].
pub(crate) trait FileInfo {
    fn format_version(&self) -> u32;
    fn backbone(&self) -> &str;
}

impl FileInfo for ModelInfo {
    fn format_version(&self) -> u32 {
        self.format_version
    }
    fn backbone(&self) -> &str {
        &self.backbone
    }
}

/// What a file of each trained kind is, for messages.
fn kind_name(kind: &str) -> Option<&'static str> {
    match kind {
        MODEL_KIND => Some("an image classifier"),
        crate::detect::model_file::DETECTOR_KIND => Some("an object detection model"),
        _ => None,
    }
}

/// A checked file's description under [`INFO_KEY`], once what every trained kind shares holds:
/// the file is of `kind` (another of Graft's kinds is named), its format version is at most
/// `newest`, and it was built on this backbone.
pub(crate) fn read_info<T: FileInfo + serde::de::DeserializeOwned>(
    metadata: &std::collections::HashMap<String, String>,
    origin: &str,
    expected: &'static str,
    kind: &str,
    newest: u32,
) -> Result<T> {
    let bad = |reason: String| GraftError::BadWeights {
        origin: origin.to_string(),
        expected,
        reason,
    };
    let wanted = kind_name(kind).unwrap_or("a trained model");
    match metadata.get(KIND_KEY).map(String::as_str) {
        Some(found) if found == kind => {}
        Some(found) => {
            return Err(bad(match kind_name(found) {
                Some(name) => format!("it is {name}, not {wanted}"),
                None => format!("it is a '{found}' file, not a trained model"),
            }));
        }
        None => return Err(bad(format!("its metadata has no '{KIND_KEY}' entry"))),
    }
    let json = metadata
        .get(INFO_KEY)
        .ok_or_else(|| bad(format!("its metadata has no '{INFO_KEY}' entry")))?;
    let info: T = serde_json::from_str(json).map_err(|e| bad(format!("metadata: {e}")))?;
    if info.format_version() > newest {
        return Err(bad(format!(
            "format version {} is newer than this Graft understands ({newest}); upgrade Graft",
            info.format_version()
        )));
    }
    if info.backbone() != BACKBONE_ID {
        return Err(GraftError::WrongBackbone {
            origin: origin.into(),
            found: info.backbone().to_string(),
            expected: BACKBONE_ID,
        });
    }
    Ok(info)
}

/// Writes through a temporary file, so a crash never leaves half a model behind.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_atomically(path: &std::path::Path, bytes: Vec<u8>) -> Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes).map_err(|e| GraftError::io(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| GraftError::io(path, e))
}
