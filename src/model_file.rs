//! The trained model file: the head's weights plus everything needed to use them.
//!
//! A safetensors file, so anyone can open it (Python's `safetensors`, burn, our CLI and the
//! browser). Its metadata holds the class labels, the head's shape, the preprocessing and the
//! backbone it was trained on, as JSON under `graft.model`.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::data::{EFFICIENTNET_LITE, Preprocessing};
use crate::error::{GraftError, Result};
use crate::model::{ClassifierHead, HeadConfig};
use crate::train::TrainedHead;
use crate::weights::{
    BACKBONE_ID, BACKBONE_KEY, KIND_KEY, apply_safetensors, read_metadata, to_safetensors,
};

/// [`KIND_KEY`] value of a trained model.
pub const MODEL_KIND: &str = "model";
/// Metadata key of the JSON-encoded [`ModelInfo`].
pub const INFO_KEY: &str = "graft.model";
/// Version of the [`ModelInfo`] layout; bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;
const EXPECTED: &str = "Graft model file";

/// Where the validation images came from, so `graft eval --split val` can rebuild the split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SplitInfo {
    pub seed: u64,
    pub validation_fraction: f64,
}

/// How the model was trained and how well it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingSummary {
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub train_images: usize,
    pub validation_images: usize,
    pub val_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    /// Present when the validation set was drawn from the training folder.
    pub split: Option<SplitInfo>,
}

impl TrainingSummary {
    /// Summarises a finished run: its best epoch's validation numbers and the data it saw.
    pub fn of(
        trained: &TrainedHead,
        train_images: usize,
        validation_images: usize,
        split: Option<SplitInfo>,
    ) -> Self {
        let best = &trained.history[trained.best_epoch - 1];
        Self {
            epochs_run: trained.history.len(),
            best_epoch: trained.best_epoch,
            train_images,
            validation_images,
            val_accuracy: best.val_accuracy,
            val_loss: best.val_loss,
            split,
        }
    }
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

    /// Reads a model file, checking that it is one and that it belongs to our backbone.
    pub fn from_bytes(bytes: Vec<u8>, origin: &str, device: &Device) -> Result<Self> {
        let bad = |reason: String| GraftError::BadWeights {
            origin: origin.to_string(),
            expected: EXPECTED,
            reason,
        };
        let metadata = read_metadata(&bytes, origin, EXPECTED)?;
        match metadata.get(KIND_KEY).map(String::as_str) {
            Some(MODEL_KIND) => {}
            Some(kind) => return Err(bad(format!("it is a '{kind}' file, not a trained model"))),
            None => return Err(bad("its metadata has no 'graft.kind' entry".into())),
        }
        let info_json = metadata
            .get(INFO_KEY)
            .ok_or_else(|| bad(format!("its metadata has no '{INFO_KEY}' entry")))?;
        let info: ModelInfo =
            serde_json::from_str(info_json).map_err(|e| bad(format!("metadata: {e}")))?;
        if info.format_version > FORMAT_VERSION {
            return Err(bad(format!(
                "format version {} is newer than this Graft understands ({FORMAT_VERSION}); upgrade Graft",
                info.format_version
            )));
        }
        if info.backbone != BACKBONE_ID {
            return Err(GraftError::WrongBackbone {
                origin: origin.into(),
                found: info.backbone,
                expected: BACKBONE_ID,
            });
        }
        if info.preprocessing != EFFICIENTNET_LITE {
            return Err(bad(format!(
                "unsupported preprocessing {:?}",
                info.preprocessing
            )));
        }
        if info.labels.len() < 2 {
            return Err(bad(format!(
                "{} class label(s); a model needs at least 2",
                info.labels.len()
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

    /// Writes through a temporary file, so a crash never leaves half a model behind.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        let partial = path.with_extension("partial");
        std::fs::write(&partial, bytes).map_err(|e| GraftError::io(&partial, e))?;
        std::fs::rename(&partial, path).map_err(|e| GraftError::io(path, e))
    }
}
