//! `train()` options as the JavaScript API names them, turned into the core's plans.

use serde::Deserialize;

use crate::data::Augmentation;
use crate::error::GraftError;
use crate::train::{Balance, FineTunePlan, HeadTraining};

/// Unknown names are refused (the JavaScript wrapper lists the valid ones first).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub validation_split: f64,
    pub seed: u64,
    pub hidden_units: Option<usize>,
    pub dropout: f64,
    /// Phase 2: how many of the backbone's last blocks to fine-tune; 0 = head only.
    pub fine_tune_blocks: usize,
    pub fine_tune_epochs: Option<usize>,
    pub fine_tune_batch_size: Option<usize>,
    pub fine_tune_learning_rate: Option<f64>,
    pub backbone_lr_factor: Option<f64>,
    pub train_batch_norm: bool,
    pub augment: Option<Augmentation>,
    pub augment_variants: Option<usize>,
    pub label_smoothing: f32,
    pub balance: Option<Balance>,
    /// Epochs without a lower validation loss before fine-tuning stops; 0 never stops early.
    pub patience: Option<usize>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        let head = HeadTraining::default();
        Self {
            epochs: head.epochs,
            batch_size: head.batch_size,
            learning_rate: head.learning_rate,
            validation_split: 0.15,
            seed: head.seed,
            hidden_units: head.hidden_units,
            dropout: head.dropout,
            fine_tune_blocks: 0,
            fine_tune_epochs: None,
            fine_tune_batch_size: None,
            fine_tune_learning_rate: None,
            backbone_lr_factor: None,
            train_batch_norm: false,
            augment: None,
            augment_variants: None,
            label_smoothing: 0.0,
            balance: None,
            patience: None,
        }
    }
}

impl TrainOptions {
    pub fn head(&self) -> Result<HeadTraining, GraftError> {
        if !(0.0..1.0).contains(&self.validation_split) {
            return Err(GraftError::option(
                "validationSplit",
                format!("{} (use 0 to <1, e.g. 0.15)", self.validation_split),
            ));
        }
        let head = HeadTraining {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            seed: self.seed,
            hidden_units: self.hidden_units,
            dropout: self.dropout,
        };
        head.validate()?;
        Ok(head)
    }

    /// The fine-tuning plan, picked from the training set's class sizes with every given
    /// option applied; `None` when `fineTuneBlocks` is 0.
    pub fn fine_tune(
        &self,
        train_class_counts: &[usize],
    ) -> Result<Option<FineTunePlan>, GraftError> {
        if self.fine_tune_blocks == 0 {
            return Ok(None);
        }
        let mut plan = FineTunePlan::for_data(self.fine_tune_blocks, train_class_counts, self.seed);
        if let Some(epochs) = self.fine_tune_epochs {
            plan.epochs = epochs;
        }
        if let Some(batch_size) = self.fine_tune_batch_size {
            plan.batch_size = batch_size;
        }
        if let Some(rate) = self.fine_tune_learning_rate {
            plan.learning_rate = rate;
        }
        if let Some(factor) = self.backbone_lr_factor {
            plan.backbone_lr_factor = factor;
        }
        if let Some(augment) = self.augment {
            plan.augment = augment;
        }
        if let Some(balance) = self.balance {
            plan.balance = balance;
        }
        if let Some(patience) = self.patience {
            plan.patience = (patience > 0).then_some(patience);
        }
        plan.train_batch_norm = self.train_batch_norm;
        plan.augment_variants = self.augment_variants;
        plan.label_smoothing = self.label_smoothing;
        plan.dropout = self.dropout;
        plan.validate()?;
        Ok(Some(plan))
    }
}
