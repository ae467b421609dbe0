//! Phase 2: fine-tuning the backbone's last blocks with the head, end to end on images.
//!
//! The [`FineTuner`] owns no file I/O, because in the browser images arrive asynchronously from
//! a worker. It hands the driver a deterministic schedule (which examples go in which batch, per
//! epoch) and the driver hands back decoded RGBA images for each batch. Per batch, the core
//! augments when the plan asks (seeded by `(seed, epoch, index)`), runs the frozen prefix of the backbone on the
//! plain device (no autodiff, nothing kept for backward), and trains the tail (last K blocks,
//! head conv) and head on the autodiff device, with two Adam optimizers at different learning
//! rates (warmed up over the first epoch, then decayed along a cosine) and phase 1's L2 penalty
//! on the head. The driver is [`super::session`], for the CLI and the browser alike.
//!
//! Frozen-prefix outputs are cached on the device, within [`FineTunePlan::cache_bytes`], for
//! inputs that repeat: the validation images, the training images when augmentation is off,
//! and each training image's augmentation variants when [`FineTunePlan::augment_variants`]
//! limits them. A cached batch needs no images from the driver ([`FineTuner::needs_images`]).
//!
//! Driving it:
//! ```text
//! let mut tuner = FineTuner::new(backbone, head, train_labels, val_labels, classes, &plan, &device)?
//!     .with_head_penalty(&penalty);
//! for batch in tuner.validation_batches() { tuner.validate_batch(&batch, &images_of(batch))?; }
//! tuner.finish_baseline().await?;               // optional: phase 1's validation loss
//! while !tuner.is_done() {
//!     for batch in tuner.train_batches() { tuner.train_step(&batch, &images_of(batch))?; }
//!     for batch in tuner.validation_batches() { tuner.validate_batch(&batch, &images_of(batch))?; }
//!     let report = tuner.finish_epoch().await?;
//! }
//! let tuned = tuner.finish()?;
//! ```

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use image::RgbaImage;
use serde::Serialize;

use super::head_fit::HeadPenalty;
use super::plan::{EarlyStopping, FineTunePlan};
use super::prefix_cache::{CacheKey, PrefixCache};
use crate::data::augment::{augment_and_prepare, example_rng};
use crate::data::preprocess::batch_tensor;
use crate::data::{AugmentParams, EFFICIENTNET_LITE, SeededRng};
use crate::error::{GraftError, Result};
use crate::model::{BackboneTail, ClassifierHead, EfficientNetLite0, FEATURE_DIM};

/// Which set an example index refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Train,
    Validation,
}

/// The random stream that orders each epoch's batches (examples' streams are their indices).
const SHUFFLE_STREAM: u64 = u64::MAX;

/// Validation batches are larger: no gradients, so memory per image is small.
const VALIDATION_BATCH: usize = 32;

/// Loss and accuracy of one epoch; validation values are absent without a validation set.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochReport {
    /// 1-based; 0 is phase 1's head before any fine-tuning step (no training numbers).
    pub epoch: usize,
    pub loss: Option<f64>,
    pub accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
}

/// Relative change in validation loss below which two epochs count as tied: float rounding
/// differs between machines (and between the CLI and the browser), and must not change which
/// epoch is kept.
pub const LOSS_TIE: f64 = 1e-4;

impl EpochReport {
    /// Higher validation accuracy wins; equal accuracy is broken by a lower validation loss,
    /// and a tie keeps the earlier epoch.
    fn better_than(&self, other: &EpochReport) -> bool {
        match (
            self.val_accuracy,
            other.val_accuracy,
            self.val_loss,
            other.val_loss,
        ) {
            (Some(a), Some(b), Some(la), Some(lb)) => {
                a > b || (a == b && la < lb * (1.0 - LOSS_TIE))
            }
            _ => true, // without validation the latest epoch is the best we know
        }
    }
}

async fn read_scalar(tensor: Tensor<1>) -> Result<f64> {
    let data = tensor.into_data_async().await?;
    data.iter::<f64>().next().ok_or_else(|| GraftError::Device {
        reason: "the device returned an empty result".into(),
    })
}

/// A pass's numbers: mean loss, accuracy and, for validation, each example's probabilities.
struct PassResult {
    loss: f64,
    accuracy: f64,
    probabilities: Vec<Vec<f32>>,
}

/// What fine-tuning produced: the tail and head of its best epoch, on the plain device.
#[derive(Debug)]
pub struct FineTuned {
    pub tail: BackboneTail,
    pub head: ClassifierHead,
    pub history: Vec<EpochReport>,
    /// 1-based; 0 when no fine-tuning epoch beat phase 1 on validation (accuracy, then
    /// loss), in which case `tail` and `head` are phase 1's unchanged.
    pub best_epoch: usize,
    /// The best epoch's class probabilities of each validation example, in order (empty
    /// without validation examples).
    pub validation_probabilities: Vec<Vec<f32>>,
    /// True when early stopping ended training before the planned epochs.
    pub stopped_early: bool,
    /// Device memory the frozen-prefix cache held at the end, in bytes.
    pub cache_bytes: usize,
}

/// Running sums of one pass (training or validation), kept on the device until read.
struct PassTotals {
    loss_sum: Tensor<1>,
    correct: Tensor<1, Int>,
    seen: usize,
    /// Class probabilities per batch, kept for validation passes only.
    probabilities: Vec<Tensor<2>>,
}

impl PassTotals {
    fn new(device: &Device) -> Self {
        Self {
            loss_sum: Tensor::zeros([1], device),
            correct: Tensor::zeros([1], device),
            seen: 0,
            probabilities: Vec::new(),
        }
    }

    fn add(&mut self, logits: Tensor<2>, labels: Tensor<1, Int>, mean_loss: Tensor<1>) {
        let count = labels.dims()[0];
        self.loss_sum = self.loss_sum.clone() + mean_loss.detach() * count as f64;
        self.correct = self.correct.clone()
            + logits
                .detach()
                .argmax(1)
                .flatten::<1>(0, 1)
                .equal(labels)
                .int()
                .sum();
        self.seen += count;
    }

    /// Mean loss and accuracy (and the probabilities, when kept), read back without blocking.
    async fn read(self) -> Result<Option<PassResult>> {
        if self.seen == 0 {
            return Ok(None);
        }
        let n = self.seen as f64;
        let loss = read_scalar(self.loss_sum).await? / n;
        let accuracy = read_scalar(self.correct.float()).await? / n;
        let mut probabilities = Vec::new();
        if !self.probabilities.is_empty() {
            let all = Tensor::cat(self.probabilities, 0);
            let [_, classes] = all.dims();
            let flat = all.into_data_async().await?.try_into_vec::<f32>()?;
            probabilities = flat.chunks(classes).map(<[f32]>::to_vec).collect();
        }
        Ok(Some(PassResult {
            loss,
            accuracy,
            probabilities,
        }))
    }
}

/// [`HeadPenalty`] on the autodiff device.
struct PenaltyTensors {
    l2: f64,
    /// `[1280, 1]`: each embedding feature's squared scale.
    input_scale_squared: Tensor<2>,
}

impl PenaltyTensors {
    /// `l2 / 2` times the head's squared weights, the first layer's measured in standardised
    /// units (each row times its feature's scale), as phase 1 penalised them.
    fn of(&self, head: &ClassifierHead) -> Tensor<1> {
        let first = head.hidden.as_ref().unwrap_or(&head.output);
        let mut total =
            (first.weight.val().powi_scalar(2) * self.input_scale_squared.clone()).sum();
        if head.hidden.is_some() {
            total = total + head.output.weight.val().powi_scalar(2).sum();
        }
        total * (self.l2 / 2.0)
    }
}

/// Fine-tunes the backbone's tail and the head on images supplied batch by batch.
pub struct FineTuner {
    plan: FineTunePlan,
    device: Device,
    autodiff: Device,
    /// The frozen backbone on the plain device; only its first `first_block` blocks run.
    backbone: EfficientNetLite0,
    first_block: usize,
    /// `None` only while the optimizers own them during a step.
    tail: Option<BackboneTail>,
    head: Option<ClassifierHead>,
    tail_optimizer: ModuleOptimizer,
    head_optimizer: ModuleOptimizer,
    train_loss: CrossEntropyLoss,
    /// Plain cross-entropy on the plain device: validation losses stay comparable to phase 1's.
    validation_loss: CrossEntropyLoss,
    train_labels: Vec<usize>,
    validation_labels: Vec<usize>,
    cache: PrefixCache,
    dropout_rng: SeededRng,
    training: PassTotals,
    validating: PassTotals,
    /// Inference copies of the current tail and head, made once per validation pass.
    snapshot: Option<(BackboneTail, ClassifierHead)>,
    history: Vec<EpochReport>,
    /// Optimiser steps taken, for the learning-rate schedule.
    steps_done: usize,
    /// Phase 1's L2 penalty on the head, kept in phase 2.
    head_penalty: Option<PenaltyTensors>,
    stopping: EarlyStopping,
    /// The best weights so far (inference copies), their epoch's report and validation
    /// probabilities; epoch 0 is phase 1's.
    best: Option<(BackboneTail, ClassifierHead, EpochReport, Vec<Vec<f32>>)>,
}

fn labels_tensor(labels: &[usize], indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = indices.iter().map(|&i| labels[i] as i64).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}

impl FineTuner {
    /// Sets up fine-tuning of `backbone`'s last `plan.blocks` blocks with `head` (phase 1's
    /// result). Both must be on `device` (the plain, non-autodiff device). Labels are indexed by
    /// example; the driver's example `i` of each part must always be the same image.
    pub fn new(
        backbone: EfficientNetLite0,
        head: ClassifierHead,
        train_labels: Vec<usize>,
        validation_labels: Vec<usize>,
        num_classes: usize,
        plan: &FineTunePlan,
        device: &Device,
    ) -> Result<Self> {
        if plan.batch_size == 0 || plan.epochs == 0 {
            return Err(GraftError::option("plan", "zero epochs or batch size"));
        }
        if train_labels.is_empty() {
            return Err(GraftError::option("training set", "no images to train on"));
        }
        if let Some(&bad) = train_labels
            .iter()
            .chain(&validation_labels)
            .find(|&&l| l >= num_classes)
        {
            return Err(GraftError::option(
                "labels",
                format!("label {bad} >= {num_classes} classes"),
            ));
        }
        let autodiff = device.clone().autodiff();
        let tail = BackboneTail::of(&backbone, plan.blocks)?;
        // `freeze` turns BatchNorm's training flag off (inference statistics, never updated);
        // `set_require_grad(true)` then makes every weight, BN's scale and shift included,
        // trainable again.
        let tail = match plan.train_batch_norm {
            true => tail.fork(&autodiff).train(),
            false => tail.fork(&autodiff).freeze().set_require_grad(true).train(),
        };
        let head = head.fork(&autodiff).train();

        let mut counts = vec![0usize; num_classes];
        for &label in &train_labels {
            counts[label] += 1;
        }
        let smoothing = (plan.label_smoothing > 0.0).then_some(plan.label_smoothing);
        let train_loss = CrossEntropyLossConfig::new()
            .with_weights(plan.class_weights(&counts))
            .with_smoothing(smoothing)
            .init(&autodiff);

        Ok(Self {
            first_block: tail.first_block(),
            tail: Some(tail),
            head: Some(head),
            tail_optimizer: AdamConfig::new().init(),
            head_optimizer: AdamConfig::new().init(),
            train_loss,
            validation_loss: CrossEntropyLossConfig::new().init(device),
            train_labels,
            validation_labels,
            cache: PrefixCache::new(plan.cache_bytes),
            dropout_rng: SeededRng::new(plan.seed ^ 0xD40F_0A7C),
            training: PassTotals::new(&autodiff),
            validating: PassTotals::new(device),
            snapshot: None,
            history: Vec::new(),
            steps_done: 0,
            head_penalty: None,
            stopping: EarlyStopping::new(plan.patience),
            best: None,
            backbone,
            plan: plan.clone(),
            device: device.clone(),
            autodiff,
        })
    }

    /// Keeps phase 1's L2 penalty on the head while fine-tuning. Without it the head, free to
    /// fit the training images, drifts from the solved optimum in the first epoch (measured on
    /// Fashion-MNIST: validation loss 0.37 -> 0.45 whatever the backbone's learning rate).
    pub fn with_head_penalty(mut self, penalty: &HeadPenalty) -> Self {
        let scale: Vec<f32> = penalty.input_scale.iter().map(|s| s * s).collect();
        let rows = scale.len();
        self.head_penalty = Some(PenaltyTensors {
            l2: penalty.l2,
            input_scale_squared: Tensor::from_data(
                TensorData::new(scale, [rows, 1]),
                &self.autodiff,
            ),
        });
        self
    }

    /// The epoch the next training steps belong to (1-based).
    pub fn next_epoch(&self) -> usize {
        self.history.len() + 1
    }

    /// True once every planned epoch has run, or early stopping says to stop.
    pub fn is_done(&self) -> bool {
        self.history.len() >= self.plan.epochs || self.stopping.should_stop()
    }

    pub fn history(&self) -> &[EpochReport] {
        &self.history
    }

    /// Bytes of device memory held by cached prefix activations.
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// The next epoch's training batches: example indices, shuffled by `(seed, epoch)`.
    pub fn train_batches(&self) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.train_labels.len()).collect();
        example_rng(self.plan.seed, self.next_epoch() as u64, SHUFFLE_STREAM).shuffle(&mut order);
        order
            .chunks(self.plan.batch_size)
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// The validation set in batches, in order.
    pub fn validation_batches(&self) -> Vec<Vec<usize>> {
        let indices: Vec<usize> = (0..self.validation_labels.len()).collect();
        indices
            .chunks(VALIDATION_BATCH)
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// False when the frozen prefix's output of every example is cached: the driver may then
    /// pass no images for this batch.
    pub fn needs_images(&self, part: Part, indices: &[usize]) -> bool {
        match self.cache_keys(part, indices) {
            Some(keys) => self.cache.get_all(&keys).is_none(),
            None => true,
        }
    }

    /// Which augmentation draw the next epoch uses: the epoch itself, or with
    /// [`FineTunePlan::augment_variants`] one of that many, cycled (1-based).
    fn augmentation_variant(&self) -> usize {
        let epoch = self.next_epoch();
        match self.plan.augment_variants {
            Some(variants) => (epoch - 1) % variants + 1,
            None => epoch,
        }
    }

    fn is_augmented(&self, part: Part) -> bool {
        part == Part::Train && self.plan.augment.is_enabled()
    }

    /// Cache keys of a batch, or `None` when its inputs never repeat (fresh augmentation).
    fn cache_keys(&self, part: Part, indices: &[usize]) -> Option<Vec<CacheKey>> {
        let variant = match (self.is_augmented(part), self.plan.augment_variants) {
            (false, _) => 0,
            (true, Some(_)) => self.augmentation_variant(),
            (true, None) => return None,
        };
        Some(indices.iter().map(|&i| (part, i, variant)).collect())
    }

    /// The augmentation of training example `index` in the next epoch (what
    /// [`train_step`](Self::train_step) applies).
    pub fn augmentation_of(&self, index: usize) -> AugmentParams {
        self.plan
            .augment
            .sample(self.plan.seed, self.augmentation_variant(), index)
    }

    /// The frozen prefix's output for a batch, from the cache or computed on the plain device.
    fn prefix_activations(
        &mut self,
        part: Part,
        indices: &[usize],
        images: &[RgbaImage],
    ) -> Result<Tensor<4>> {
        let keys = self.cache_keys(part, indices);
        if let Some(cached) = keys.as_ref().and_then(|keys| self.cache.get_all(keys)) {
            return Ok(Tensor::cat(cached, 0));
        }
        if images.len() != indices.len() {
            return Err(GraftError::option(
                "batch",
                format!(
                    "{} image(s) for {} example(s); pass one image per index",
                    images.len(),
                    indices.len()
                ),
            ));
        }
        let augmented = self.is_augmented(part);
        let inputs: Vec<Vec<f32>> = indices
            .iter()
            .zip(images)
            .map(|(&index, image)| match augmented {
                true => {
                    augment_and_prepare(&EFFICIENTNET_LITE, image, &self.augmentation_of(index))
                }
                false => EFFICIENTNET_LITE.prepare(image),
            })
            .collect();
        let activations = self
            .backbone
            .forward_prefix(batch_tensor(&inputs, &self.device), self.first_block);
        if let Some(keys) = keys {
            self.cache.insert_batch(&keys, &activations);
        }
        Ok(activations)
    }

    fn check_indices(&self, part: Part, indices: &[usize]) -> Result<()> {
        let len = match part {
            Part::Train => self.train_labels.len(),
            Part::Validation => self.validation_labels.len(),
        };
        match indices.iter().find(|&&i| i >= len) {
            Some(bad) => Err(GraftError::option(
                "batch",
                format!("example {bad} is out of range ({len} examples)"),
            )),
            None if indices.is_empty() => Err(GraftError::option("batch", "no examples")),
            None => Ok(()),
        }
    }

    /// One optimisation step on a batch of training examples. Nothing is read back from the
    /// device. `images[i]` is the decoded image of example `indices[i]` (may be empty when
    /// [`needs_images`](Self::needs_images) says so).
    pub fn train_step(&mut self, indices: &[usize], images: &[RgbaImage]) -> Result<()> {
        self.check_indices(Part::Train, indices)?;
        self.snapshot = None;
        // A constant on the autodiff graph: no gradient flows into the frozen prefix.
        let activations = self
            .prefix_activations(Part::Train, indices, images)?
            .autodiff();
        let labels = labels_tensor(&self.train_labels, indices, &self.autodiff);
        let tail = self.tail.take().expect("tail present between steps");
        let head = self.head.take().expect("head present between steps");

        let mut features = tail.forward(activations);
        if self.plan.dropout > 0.0 {
            features = features * self.dropout_mask(indices.len());
        }
        let logits = head.forward(features);
        let loss = self.train_loss.forward(logits.clone(), labels.clone());
        self.training.add(logits, labels, loss.clone());
        let objective = match &self.head_penalty {
            Some(penalty) => loss + penalty.of(&head),
            None => loss,
        };

        let mut grads = objective.backward();
        let tail_grads = GradientsParams::from_module(&mut grads, &tail);
        let head_grads = GradientsParams::from_module(&mut grads, &head);
        let schedule = self.schedule();
        self.steps_done += 1;
        let tail = self.tail_optimizer.step(
            self.plan.backbone_learning_rate() * schedule,
            tail,
            tail_grads,
        );
        let head = self
            .head_optimizer
            .step(self.plan.learning_rate * schedule, head, head_grads);
        self.tail = Some(tail);
        self.head = Some(head);
        Ok(())
    }

    /// The learning rates' multiplier at the next step: a linear warm-up over the first
    /// epoch (Adam's first steps move every weight by about the full rate, whatever its
    /// gradient, which undid the solved head), then a cosine decay to a tenth by the last
    /// planned epoch.
    fn schedule(&self) -> f64 {
        let per_epoch = self
            .train_labels
            .len()
            .div_ceil(self.plan.batch_size)
            .max(1);
        let total = per_epoch * self.plan.epochs;
        let step = self.steps_done;
        if step < per_epoch {
            return (step + 1) as f64 / per_epoch as f64;
        }
        let progress = (step - per_epoch) as f64 / (total - per_epoch).max(1) as f64;
        0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
    }

    fn dropout_mask(&mut self, rows: usize) -> Tensor<2> {
        let keep = 1.0 - self.plan.dropout as f32;
        let mask: Vec<f32> = (0..rows * FEATURE_DIM)
            .map(|_| {
                if self.dropout_rng.unit() < keep {
                    1.0 / keep
                } else {
                    0.0
                }
            })
            .collect();
        Tensor::from_data(TensorData::new(mask, [rows, FEATURE_DIM]), &self.autodiff)
    }

    /// Accumulates validation loss and accuracy on a batch with the current weights (inference
    /// mode). Nothing is read back until [`finish_epoch`](Self::finish_epoch).
    pub fn validate_batch(&mut self, indices: &[usize], images: &[RgbaImage]) -> Result<()> {
        self.check_indices(Part::Validation, indices)?;
        let activations = self.prefix_activations(Part::Validation, indices, images)?;
        let (tail, head) = self.snapshot.get_or_insert_with(|| {
            let tail = self.tail.as_ref().expect("tail present between steps");
            let head = self.head.as_ref().expect("head present between steps");
            (tail.valid(), head.valid())
        });
        let logits = head.forward(tail.forward(activations));
        let labels = labels_tensor(&self.validation_labels, indices, &self.device);
        let loss = self.validation_loss.forward(logits.clone(), labels.clone());
        self.validating
            .probabilities
            .push(softmax(logits.clone(), 1));
        self.validating.add(logits, labels, loss);
        Ok(())
    }

    /// Reads back the validation pass run since the last call. It must cover the whole
    /// validation set, or early stopping would compare unlike numbers.
    async fn read_validation(&mut self) -> Result<Option<PassResult>> {
        let totals = std::mem::replace(&mut self.validating, PassTotals::new(&self.device));
        if totals.seen != 0 && totals.seen != self.validation_labels.len() {
            return Err(GraftError::option(
                "validation",
                format!(
                    "{} of {} validation examples were evaluated; pass every batch of \
                     validation_batches()",
                    totals.seen,
                    self.validation_labels.len()
                ),
            ));
        }
        totals.read().await
    }

    /// Keeps the current weights when they are the best so far: highest validation accuracy,
    /// then lowest validation loss, ties keeping the earlier epoch ([`EpochReport::better_than`]);
    /// early stopping counts the epochs since the best.
    /// Epoch 0 is phase 1's head, so the result is never worse than it on the validation set.
    fn track_best(&mut self, report: &EpochReport, probabilities: Vec<Vec<f32>>) {
        let improved = match &self.best {
            None => true,
            Some((_, _, best, _)) => report.better_than(best),
        };
        self.stopping.observe(improved);
        if improved {
            let (tail, head) = self.snapshot.take().unwrap_or_else(|| {
                let tail = self.tail.as_ref().expect("tail present between steps");
                let head = self.head.as_ref().expect("head present between steps");
                (tail.valid(), head.valid())
            });
            self.best = Some((tail.clone(), head.clone(), report.clone(), probabilities));
            self.snapshot = Some((tail, head));
        }
    }

    /// Records phase 1's validation loss and accuracy (call after a validation pass and
    /// before any training step), so fine-tuning keeps phase 1's weights if no epoch beats
    /// them. The report is epoch 0, with no training numbers.
    pub async fn finish_baseline(&mut self) -> Result<EpochReport> {
        if !self.history.is_empty() || self.training.seen != 0 {
            return Err(GraftError::option(
                "baseline",
                "measure it before the first training step",
            ));
        }
        let Some(validation) = self.read_validation().await? else {
            return Ok(EpochReport {
                epoch: 0,
                loss: None,
                accuracy: None,
                val_loss: None,
                val_accuracy: None,
            });
        };
        let report = EpochReport {
            epoch: 0,
            loss: None,
            accuracy: None,
            val_loss: Some(validation.loss),
            val_accuracy: Some(validation.accuracy),
        };
        self.track_best(&report, validation.probabilities);
        Ok(report)
    }

    /// Ends an epoch: reads back its training loss and accuracy and the validation pass run
    /// since the last call, updates early stopping and the best weights.
    pub async fn finish_epoch(&mut self) -> Result<EpochReport> {
        let epoch = self.next_epoch();
        let training = std::mem::replace(&mut self.training, PassTotals::new(&self.autodiff));
        let PassResult { loss, accuracy, .. } = training
            .read()
            .await?
            .ok_or_else(|| GraftError::option("epoch", "no training step ran in this epoch"))?;
        if !loss.is_finite() {
            return Err(GraftError::option(
                "learningRate",
                format!(
                    "{} made the loss diverge (NaN); try a smaller one",
                    self.plan.learning_rate
                ),
            ));
        }
        let validation = self.read_validation().await?;
        let report = EpochReport {
            epoch,
            loss: Some(loss),
            accuracy: Some(accuracy),
            val_loss: validation.as_ref().map(|v| v.loss),
            val_accuracy: validation.as_ref().map(|v| v.accuracy),
        };
        self.track_best(
            &report,
            validation.map(|v| v.probabilities).unwrap_or_default(),
        );
        self.history.push(report.clone());
        Ok(report)
    }

    /// The best epoch's tail and head (inference copies on the plain device).
    pub fn finish(self) -> Result<FineTuned> {
        let (tail, head, best, validation_probabilities) = self.best.ok_or_else(|| {
            GraftError::option("epochs", "fine-tuning stopped before the first epoch ended")
        })?;
        Ok(FineTuned {
            tail: tail.to_device(&self.device),
            head: head.to_device(&self.device),
            stopped_early: self.history.len() < self.plan.epochs,
            cache_bytes: self.cache.bytes(),
            history: self.history,
            best_epoch: best.epoch,
            validation_probabilities,
        })
    }
}
