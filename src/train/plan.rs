//! Phase 2's plan: what to fine-tune and how, resolved from the options and the data.
//!
//! Phase 1 solves the head on cached embeddings ([`super::head_fit`]). Phase 2, optional,
//! unfreezes the backbone's last K blocks and head conv and trains them with the head, end to
//! end on the images (augmented only when asked), the backbone at a fraction of the head's learning rate.

use serde::{Deserialize, Serialize};

use super::options::TrainOptions;
use crate::data::Augmentation;

/// Whether to weight the loss so every class counts equally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
#[serde(rename_all = "camelCase")]
pub enum Balance {
    /// On when the largest class has more than [`IMBALANCE_RATIO`] times the smallest's images.
    Auto,
    On,
    Off,
}

/// Class-size ratio above which [`Balance::Auto`] weights the loss.
pub const IMBALANCE_RATIO: f64 = 1.5;

/// Loss weights `n / (classes * n_c)` when balancing applies to these class sizes, else `None`.
pub fn class_weights(balance: Balance, class_counts: &[usize]) -> Option<Vec<f32>> {
    let largest = *class_counts.iter().max()? as f64;
    let smallest = *class_counts.iter().min()? as f64;
    let apply = match balance {
        Balance::On => true,
        Balance::Off => false,
        Balance::Auto => largest > IMBALANCE_RATIO * smallest,
    };
    if !apply || smallest == 0.0 {
        return None;
    }
    let total: usize = class_counts.iter().sum();
    let classes = class_counts.len() as f64;
    Some(
        class_counts
            .iter()
            .map(|&n| (total as f64 / (classes * n as f64)) as f32)
            .collect(),
    )
}

/// Phase 2, resolved: every choice made, ready for [`super::FineTuner`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FineTunePlan {
    /// How many of the backbone's last MBConv blocks to train (with the head conv); 1..=16.
    pub blocks: usize,
    pub epochs: usize,
    pub batch_size: usize,
    /// The head's learning rate (Adam) in phase 2.
    pub learning_rate: f64,
    /// The backbone's learning rate is `learning_rate * backbone_lr_factor`.
    pub backbone_lr_factor: f64,
    /// Train BatchNorm statistics too; by default they stay frozen (inference mode), which is
    /// what small batches of a small dataset need.
    pub train_batch_norm: bool,
    pub augment: Augmentation,
    /// Draw each training image's augmentation from this many fixed variants, cycled over the
    /// epochs, so that the frozen prefix's output can be cached per image and variant: epochs
    /// after the first `n` skip the frozen prefix (and decoding) wherever the cache holds
    /// them. `None` draws a fresh augmentation every epoch and caches nothing for training.
    pub augment_variants: Option<usize>,
    /// Label smoothing in `[0, 1)`; 0 is off.
    pub label_smoothing: f32,
    pub balance: Balance,
    /// Stop after this many epochs without a new best epoch; `None` never stops early.
    pub patience: Option<usize>,
    /// Dropout on the pooled features before the head.
    pub dropout: f64,
    pub seed: u64,
    /// Device memory allowed for cached frozen-prefix activations (validation images, and
    /// training images when augmentation is off or limited to variants), in bytes.
    pub cache_bytes: usize,
}

/// The head's fine-tuning learning rate when none is given: lower than a fresh head would
/// take, because the head starts solved, and on the X-rays 1e-3 undid phase 1 in the first
/// epoch (97% -> 79%) where 3e-4 improved at once.
pub const FINE_TUNE_LEARNING_RATE: f64 = 3e-4;
/// Device memory for cached frozen-prefix activations.
pub const PREFIX_CACHE_BYTES: usize = 256 << 20;

impl FineTunePlan {
    /// The plan for `options` on a training set with these per-class image counts: epochs and
    /// batch size, unless given, suit the number of images (fewer epochs for large sets, where
    /// each costs the most; smaller batches for tiny sets).
    pub fn for_data(options: &TrainOptions, class_counts: &[usize]) -> Self {
        let images: usize = class_counts.iter().sum();
        // On Fashion-MNIST (4,800 images) the best validation epoch was the 5th of 6.
        let epochs = if images <= 10_000 { 6 } else { 3 };
        Self {
            blocks: options.fine_tune_blocks,
            epochs: options.epochs.unwrap_or(epochs),
            batch_size: options.batch_size.unwrap_or((images / 10).clamp(4, 16)),
            learning_rate: options.learning_rate.unwrap_or(FINE_TUNE_LEARNING_RATE),
            backbone_lr_factor: options.backbone_lr_factor,
            train_batch_norm: options.train_batch_norm,
            augment: options.augment,
            augment_variants: options.augment_variants,
            label_smoothing: options.label_smoothing,
            balance: options.balance,
            patience: (options.patience > 0).then_some(options.patience),
            dropout: options.dropout,
            seed: options.seed,
            cache_bytes: PREFIX_CACHE_BYTES,
        }
    }

    /// One line per choice, to tell the user what the plan does (and what was picked for them).
    pub fn describe(&self, class_counts: &[usize]) -> Vec<String> {
        let plan = self;
        let images: usize = class_counts.iter().sum();
        let weighted = plan.class_weights(class_counts).is_some();
        let on: Vec<&str> = [
            (plan.augment.flip, "flip"),
            (plan.augment.crop, "crop"),
            (plan.augment.rotate, "rotate"),
            (plan.augment.brightness, "brightness"),
            (plan.augment.contrast, "contrast"),
        ]
        .into_iter()
        .filter_map(|(enabled, name)| enabled.then_some(name))
        .collect();
        vec![
            format!(
                "fine-tune: last {} block(s) + head conv, {} epoch(s) on {images} training \
                 images, batch {}",
                plan.blocks, plan.epochs, plan.batch_size
            ),
            format!(
                "learning rates: head {:.1e}, backbone {:.1e} (x{}); BatchNorm statistics {}",
                plan.learning_rate,
                plan.backbone_learning_rate(),
                plan.backbone_lr_factor,
                if plan.train_batch_norm {
                    "trained"
                } else {
                    "frozen"
                }
            ),
            format!(
                "early stopping after {} epoch(s) without a better validation result; class weights {} (class sizes {:?})",
                plan.patience.map_or("never".into(), |p| p.to_string()),
                if weighted { "on" } else { "off" },
                class_counts
            ),
            format!(
                "augmentation: {}{}; label smoothing {}",
                if on.is_empty() {
                    "off".to_string()
                } else {
                    on.join(", ")
                },
                match plan.augment_variants {
                    Some(n) if !on.is_empty() => format!(" ({n} cached variant(s) per image)"),
                    _ => String::new(),
                },
                plan.label_smoothing
            ),
        ]
    }

    pub fn backbone_learning_rate(&self) -> f64 {
        self.learning_rate * self.backbone_lr_factor
    }

    /// Loss weights when balancing applies to these class sizes (see [`class_weights`]).
    pub fn class_weights(&self, class_counts: &[usize]) -> Option<Vec<f32>> {
        class_weights(self.balance, class_counts)
    }
}

/// Early stopping: counts the epochs since the last one that was the best so far (by
/// [`super::finetune::EpochReport`]'s rule, the one that picks the epoch kept).
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStopping {
    patience: Option<usize>,
    epochs_since_best: usize,
}

impl EarlyStopping {
    pub fn new(patience: Option<usize>) -> Self {
        Self {
            patience,
            epochs_since_best: 0,
        }
    }

    /// Records whether an epoch was the best so far.
    pub fn observe(&mut self, improved: bool) {
        self.epochs_since_best = if improved {
            0
        } else {
            self.epochs_since_best + 1
        };
    }

    pub fn should_stop(&self) -> bool {
        self.patience
            .is_some_and(|patience| self.epochs_since_best >= patience)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(blocks: usize, counts: &[usize]) -> FineTunePlan {
        let options = TrainOptions {
            fine_tune_blocks: blocks,
            ..TrainOptions::default()
        };
        FineTunePlan::for_data(&options, counts)
    }

    #[test]
    fn defaults_follow_the_data() {
        let small = plan(2, &[240, 240]);
        let notes = small.describe(&[240, 240]);
        assert_eq!((small.blocks, small.epochs, small.batch_size), (2, 6, 16));
        assert_eq!(small.backbone_learning_rate(), small.learning_rate * 0.1);
        assert!(!small.train_batch_norm);
        assert!(!small.augment.is_enabled());
        assert!(notes.iter().any(|n| n.contains("augmentation: off")));
        assert_eq!(small.class_weights(&[240, 240]), None);
        assert!(notes.iter().any(|n| n.contains("class weights off")));

        assert_eq!(plan(1, &[12, 8]).batch_size, 4);
        let large = plan(3, &[9000, 3000]);
        assert!(
            large
                .describe(&[9000, 3000])
                .iter()
                .any(|n| n.contains("class weights on"))
        );
        assert_eq!(large.epochs, 3);
        let weights = large.class_weights(&[9000, 3000]).unwrap();
        assert!((weights[0] - 12000.0 / 18000.0).abs() < 1e-6);
        assert!((weights[1] - 2.0).abs() < 1e-6);
    }

    #[test]
    fn given_options_override_the_picks() {
        let options = TrainOptions {
            fine_tune_blocks: 2,
            epochs: Some(9),
            batch_size: Some(7),
            patience: 0,
            ..TrainOptions::default()
        };
        let plan = FineTunePlan::for_data(&options, &[240, 240]);
        assert_eq!((plan.epochs, plan.batch_size, plan.patience), (9, 7, None));
    }

    #[test]
    fn early_stopping_waits_for_patience_epochs() {
        let mut stop = EarlyStopping::new(Some(2));
        stop.observe(true);
        stop.observe(false);
        assert!(!stop.should_stop());
        stop.observe(true);
        stop.observe(false);
        assert!(!stop.should_stop());
        stop.observe(false);
        assert!(stop.should_stop());
        let mut never = EarlyStopping::new(None);
        for _ in 0..10 {
            never.observe(false);
        }
        assert!(!never.should_stop());
    }
}
