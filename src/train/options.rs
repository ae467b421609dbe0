//! Every training option, once: names, defaults, meaning and validation.
//!
//! The same type is the CLI's flags (clap derives them natively: `--validation-split`,
//! `--fine-tune-blocks`, ...) and the JavaScript `train()` options (serde, camelCase, unknown
//! names refused), so an option means the same thing wherever it is given.

use serde::{Deserialize, Serialize};

use super::plan::Balance;
use crate::data::Augmentation;
use crate::error::{GraftError, Result};
use crate::model::NUM_BLOCKS;

/// How to train. Phase 1 (the head) is solved to convergence on cached embeddings and has no
/// epochs; `epochs`, `batchSize` and `learningRate` belong to phase 2, fine-tuning the
/// backbone's last `fineTuneBlocks` blocks on the images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::Args))]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TrainOptions {
    /// Fraction of each class held out for validation (ignored when the data comes split in
    /// train/ and val/).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = TrainOptions::default().validation_split))]
    pub validation_split: f64,
    /// Seeds the split, the cross-validation folds, the fine-tuning order and augmentation.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = TrainOptions::default().seed))]
    pub seed: u64,
    /// Add a hidden layer of this width (ReLU) to the head.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub hidden_units: Option<usize>,
    /// The head's L2 penalty on standardised embeddings (default: picked by 5-fold
    /// cross-validation on the training images).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub l2: Option<f64>,
    /// Weight the loss so every class counts equally, in both phases: `auto` does when the
    /// largest class has more than 1.5 times the smallest's images.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, value_enum, default_value_t = Balance::Auto))]
    pub balance: Balance,
    /// Phase 2: fine-tune the backbone's last K MBConv blocks and its head conv with the head,
    /// on the images (0 = the head only). A detector's last K blocks train with its head from
    /// the first step.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = 0))]
    pub fine_tune_blocks: usize,
    /// Fine-tuning epochs, i.e. passes over the training images (default: picked from their
    /// number). The head itself is solved to convergence and has no epochs. A detector's
    /// epochs (default 20).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub epochs: Option<usize>,
    /// Fine-tuning batch size (default: picked from the number of images; a detector's: 8).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub batch_size: Option<usize>,
    /// The head's learning rate (Adam) while fine-tuning (default 3e-4), or training a
    /// detector (default 3e-3).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub learning_rate: Option<f64>,
    /// The backbone's learning rate as a fraction of the head's.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = TrainOptions::default().backbone_lr_factor))]
    pub backbone_lr_factor: f64,
    /// Update BatchNorm statistics while fine-tuning (frozen by default).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long = "train-bn"))]
    pub train_batch_norm: bool,
    #[cfg_attr(not(target_arch = "wasm32"), command(flatten))]
    pub augment: Augmentation,
    /// Cycle each image through N fixed augmentations and cache the frozen backbone's output
    /// for each: epochs after the first N run several times faster, for less variety (needs
    /// an augmentation turned on).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub augment_variants: Option<usize>,
    /// Label smoothing of the fine-tuning loss (0 = off).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = 0.0))]
    pub label_smoothing: f32,
    /// Stop fine-tuning after this many epochs without a better validation result (higher
    /// accuracy, or equal accuracy and lower loss; 0 = never stop early).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = TrainOptions::default().patience))]
    pub patience: usize,
    /// Dropout on the pooled features before the head while fine-tuning.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = TrainOptions::default().dropout))]
    pub dropout: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            validation_split: 0.2,
            seed: 42,
            hidden_units: None,
            l2: None,
            balance: Balance::Auto,
            fine_tune_blocks: 0,
            epochs: None,
            batch_size: None,
            learning_rate: None,
            backbone_lr_factor: 0.1,
            train_batch_norm: false,
            augment: Augmentation::default(),
            augment_variants: None,
            label_smoothing: 0.0,
            patience: 2,
            // The configuration measured to beat the head alone (bench/README.md): plain
            // images, no dropout, the best validation epoch kept.
            dropout: 0.0,
        }
    }
}

/// Largest hidden layer accepted: wider adds cost, not accuracy, on 1280 features.
pub const MAX_HIDDEN_UNITS: usize = 4096;

impl TrainOptions {
    /// Rejects values that cannot train, naming the option (as the JavaScript API spells it)
    /// and what would work.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, reason: String| Err(GraftError::option(name, reason));
        if !(0.0..1.0).contains(&self.validation_split) {
            return bad(
                "validationSplit",
                format!("{} (use 0 to <1, e.g. 0.2)", self.validation_split),
            );
        }
        if let Some(units) = self
            .hidden_units
            .filter(|u| !(1..=MAX_HIDDEN_UNITS).contains(u))
        {
            return bad(
                "hiddenUnits",
                format!("{units} (use 1 to {MAX_HIDDEN_UNITS}, or leave it out for a linear head)"),
            );
        }
        if let Some(l2) = self
            .l2
            .filter(|l| !(l.is_finite() && *l > 0.0 && *l <= 1e6))
        {
            return bad(
                "l2",
                format!(
                    "{l2} (use a positive value such as 0.01, or leave it out to cross-validate)"
                ),
            );
        }
        if self.fine_tune_blocks > NUM_BLOCKS {
            return bad(
                "fineTuneBlocks",
                format!(
                    "{} (use 0 for the head only, up to {NUM_BLOCKS})",
                    self.fine_tune_blocks
                ),
            );
        }
        if let Some(epochs) = self.epochs.filter(|e| !(1..=1000).contains(e)) {
            return bad("epochs", format!("{epochs} (use 1 to 1000)"));
        }
        if let Some(batch) = self.batch_size.filter(|b| !(2..=1024).contains(b)) {
            return bad("batchSize", format!("{batch} (use 2 to 1024)"));
        }
        let rate_ok = |r: f64| r.is_finite() && r > 0.0 && r <= 1.0;
        if let Some(rate) = self.learning_rate.filter(|&r| !rate_ok(r)) {
            return bad(
                "learningRate",
                format!("{rate} (use a value in (0, 1], e.g. 0.0003)"),
            );
        }
        if !rate_ok(self.backbone_lr_factor) {
            return bad(
                "backboneLrFactor",
                format!(
                    "{} (use a value in (0, 1], e.g. 0.1)",
                    self.backbone_lr_factor
                ),
            );
        }
        if self.augment_variants == Some(0) {
            return bad(
                "augmentVariants",
                "0 (use 1 or more, or leave it out for a fresh augmentation every epoch)".into(),
            );
        }
        if self.augment_variants.is_some() && !self.augment.is_enabled() {
            return bad(
                "augmentVariants",
                "given without augmentation, which is off by default (turn on flip, crop, \
                 rotate, brightness or contrast)"
                    .into(),
            );
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(
                "labelSmoothing",
                format!("{} (use 0 to <1, e.g. 0.1)", self.label_smoothing),
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", format!("{} (use 0 to <1)", self.dropout));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_javascript_names_are_camel_case() {
        TrainOptions::default().validate().unwrap();
        let json = serde_json::to_value(TrainOptions::default()).unwrap();
        for name in [
            "validationSplit",
            "fineTuneBlocks",
            "backboneLrFactor",
            "trainBatchNorm",
            "augmentVariants",
        ] {
            assert!(json.get(name).is_some(), "{name} missing from {json}");
        }
    }

    #[test]
    fn unknown_names_are_refused_and_missing_ones_take_the_default() {
        let error = serde_json::from_str::<TrainOptions>(r#"{"epoch": 3}"#).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `epoch`"),
            "{error}"
        );
        let options: TrainOptions =
            serde_json::from_str(r#"{"fineTuneBlocks": 2, "augment": {"flip": true}}"#).unwrap();
        assert_eq!(options.fine_tune_blocks, 2);
        assert!(options.augment.flip && !options.augment.crop);
        assert_eq!(
            options.validation_split,
            TrainOptions::default().validation_split
        );
    }

    #[test]
    fn invalid_values_name_the_option() {
        type Spoiler = fn(&mut TrainOptions);
        let cases: [(&str, Spoiler); 8] = [
            ("validationSplit", |o| o.validation_split = 1.0),
            ("hiddenUnits", |o| o.hidden_units = Some(0)),
            ("l2", |o| o.l2 = Some(-1.0)),
            ("fineTuneBlocks", |o| o.fine_tune_blocks = 17),
            ("epochs", |o| o.epochs = Some(0)),
            ("backboneLrFactor", |o| o.backbone_lr_factor = 0.0),
            ("labelSmoothing", |o| o.label_smoothing = 1.0),
            ("augmentVariants", |o| o.augment_variants = Some(2)),
        ];
        for (name, spoil) in cases {
            let mut options = TrainOptions::default();
            spoil(&mut options);
            let error = options.validate().unwrap_err().to_string();
            assert!(error.contains(name), "{name}: {error}");
        }
    }
}
