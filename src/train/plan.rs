//! Phase 2 of the training plan: what to fine-tune and how, with defaults chosen from the data.
//!
//! Phase 1 trains the head on cached embeddings ([`super::HeadTraining`]). Phase 2, optional,
//! unfreezes the backbone's last K blocks and head conv and trains them with the head, end to
//! end on (augmented) images, the backbone at a fraction of the head's learning rate.

use serde::{Deserialize, Serialize};

use crate::data::Augmentation;
use crate::error::{GraftError, Result};
use crate::model::tail::check_tail_blocks;

/// Whether to weight the loss so every class counts equally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Balance {
    /// On when the largest class has more than [`IMBALANCE_RATIO`] times the smallest's images.
    Auto,
    On,
    Off,
}

/// Class-size ratio above which [`Balance::Auto`] weights the loss.
pub const IMBALANCE_RATIO: f64 = 1.5;

/// Hyper-parameters of fine-tuning (phase 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
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
    /// Stop after this many epochs without a lower validation loss; `None` never stops early.
    pub patience: Option<usize>,
    /// Dropout on the pooled features before the head, as in phase 1.
    pub dropout: f64,
    pub seed: u64,
    /// Device memory allowed for cached frozen-prefix activations (validation images, and
    /// training images when augmentation is off), in bytes.
    pub cache_bytes: usize,
}

impl Default for FineTunePlan {
    fn default() -> Self {
        Self {
            blocks: 2,
            epochs: 5,
            batch_size: 16,
            // Lower than phase 1's 1e-3: the head is trained already, and on the X-rays 1e-3
            // undid phase 1 in the first epoch (validation accuracy 97% -> 79%) before it
            // recovered, where 3e-4 improved from the first epoch on.
            learning_rate: 3e-4,
            backbone_lr_factor: 0.1,
            train_batch_norm: false,
            augment: Augmentation::default(),
            augment_variants: None,
            label_smoothing: 0.0,
            balance: Balance::Auto,
            patience: Some(2),
            dropout: 0.2,
            seed: 42,
            cache_bytes: 256 << 20,
        }
    }
}

impl FineTunePlan {
    /// A plan for `blocks` blocks whose epochs and batch size suit a training set with these
    /// per-class image counts (fewer epochs for more images; smaller batches for tiny sets).
    pub fn for_data(blocks: usize, class_counts: &[usize], seed: u64) -> Self {
        let images: usize = class_counts.iter().sum();
        let epochs = match images {
            0..=1000 => 5,
            1001..=10_000 => 3,
            _ => 2,
        };
        let batch_size = (images / 10).clamp(4, 16);
        Self {
            blocks,
            epochs,
            batch_size,
            seed,
            ..Self::default()
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
                "early stopping on validation loss, patience {}; class weights {} (class sizes {:?})",
                plan.patience.map_or("off".into(), |p| p.to_string()),
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

    /// Loss weights `n / (classes * n_c)` when balancing applies, else `None`.
    pub fn class_weights(&self, class_counts: &[usize]) -> Option<Vec<f32>> {
        let largest = *class_counts.iter().max()? as f64;
        let smallest = *class_counts.iter().min()? as f64;
        let apply = match self.balance {
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

    /// Rejects values that cannot train, naming the option and what would work.
    pub fn validate(&self) -> Result<()> {
        check_tail_blocks(self.blocks)?;
        if self.epochs == 0 || self.epochs > 1000 {
            return Err(GraftError::option(
                "fine-tune epochs",
                format!("{} (use 1 to 1000)", self.epochs),
            ));
        }
        if self.batch_size < 2 || self.batch_size > 1024 {
            return Err(GraftError::option(
                "fine-tune batch size",
                format!("{} (use 2 to 1024)", self.batch_size),
            ));
        }
        let rate_ok = |r: f64| r.is_finite() && r > 0.0 && r <= 1.0;
        if !rate_ok(self.learning_rate) {
            return Err(GraftError::option(
                "fine-tune learning rate",
                format!("{} (use a value in (0, 1], e.g. 0.001)", self.learning_rate),
            ));
        }
        if !rate_ok(self.backbone_lr_factor) {
            return Err(GraftError::option(
                "backbone learning-rate factor",
                format!(
                    "{} (use a value in (0, 1], e.g. 0.1)",
                    self.backbone_lr_factor
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(GraftError::option(
                "label smoothing",
                format!("{} (use 0 to <1, e.g. 0.1)", self.label_smoothing),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(GraftError::option(
                "dropout",
                format!("{} (use 0 to <1)", self.dropout),
            ));
        }
        if self.augment_variants == Some(0) {
            return Err(GraftError::option(
                "augmentation variants",
                "0 (use 1 or more, or leave it out for a fresh augmentation every epoch)",
            ));
        }
        if self.patience == Some(0) {
            return Err(GraftError::option(
                "patience",
                "0 (use 1 or more, or leave it out to never stop early)",
            ));
        }
        Ok(())
    }
}

/// Early stopping on validation loss: remembers the best epoch and counts epochs since.
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStopping {
    patience: Option<usize>,
    best: Option<(usize, f64)>,
    epochs_since_best: usize,
}

impl EarlyStopping {
    pub fn new(patience: Option<usize>) -> Self {
        Self {
            patience,
            best: None,
            epochs_since_best: 0,
        }
    }

    /// Records an epoch's validation loss; true when it is the best so far.
    pub fn observe(&mut self, epoch: usize, val_loss: f64) -> bool {
        let improved = self.best.is_none_or(|(_, best)| val_loss < best);
        if improved {
            self.best = Some((epoch, val_loss));
            self.epochs_since_best = 0;
        } else {
            self.epochs_since_best += 1;
        }
        improved
    }

    /// The best epoch and its validation loss.
    pub fn best(&self) -> Option<(usize, f64)> {
        self.best
    }

    pub fn should_stop(&self) -> bool {
        self.patience
            .is_some_and(|patience| self.epochs_since_best >= patience)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_data() {
        let small = FineTunePlan::for_data(2, &[240, 240], 42);
        let notes = small.describe(&[240, 240]);
        assert_eq!((small.blocks, small.epochs, small.batch_size), (2, 5, 16));
        assert_eq!(small.backbone_learning_rate(), small.learning_rate * 0.1);
        assert!(!small.train_batch_norm);
        assert!(small.augment.flip && small.augment.crop);
        assert_eq!(small.class_weights(&[240, 240]), None);
        assert!(notes.iter().any(|n| n.contains("class weights off")));
        small.validate().unwrap();

        let tiny = FineTunePlan::for_data(1, &[12, 8], 1);
        assert_eq!(tiny.batch_size, 4);
        let large = FineTunePlan::for_data(3, &[9000, 3000], 1);
        assert!(
            large
                .describe(&[9000, 3000])
                .iter()
                .any(|n| n.contains("class weights on"))
        );
        assert_eq!(large.epochs, 2);
        let weights = large.class_weights(&[9000, 3000]).unwrap();
        assert!((weights[0] - 12000.0 / 18000.0).abs() < 1e-6);
        assert!((weights[1] - 2.0).abs() < 1e-6);
    }

    #[test]
    fn invalid_plans_name_the_option() {
        let bad = |plan: FineTunePlan| plan.validate().unwrap_err().to_string();
        assert!(
            bad(FineTunePlan {
                blocks: 0,
                ..Default::default()
            })
            .contains("blocks")
        );
        assert!(
            bad(FineTunePlan {
                blocks: 17,
                ..Default::default()
            })
            .contains("blocks")
        );
        assert!(
            bad(FineTunePlan {
                backbone_lr_factor: 0.0,
                ..Default::default()
            })
            .contains("factor")
        );
        assert!(
            bad(FineTunePlan {
                label_smoothing: 1.0,
                ..Default::default()
            })
            .contains("smoothing")
        );
    }

    #[test]
    fn early_stopping_waits_for_patience_epochs() {
        let mut stop = EarlyStopping::new(Some(2));
        assert!(stop.observe(1, 0.5));
        assert!(stop.observe(2, 0.4));
        assert!(!stop.observe(3, 0.45));
        assert!(!stop.should_stop());
        assert!(!stop.observe(4, 0.41));
        assert!(stop.should_stop());
        assert_eq!(stop.best(), Some((2, 0.4)));
        let mut never = EarlyStopping::new(None);
        never.observe(1, 0.1);
        for epoch in 2..10 {
            never.observe(epoch, 1.0);
        }
        assert!(!never.should_stop());
    }
}
