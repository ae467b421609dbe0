//! The training loop for the grafted head, on embeddings computed once per image.
//!
//! It is `async` because the browser can only read GPU results asynchronously; natively it is
//! driven by a trivial executor. Results are read back once per epoch, not once per step, so
//! the GPU is never stalled waiting on the host.

use std::ops::ControlFlow;

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::data::SeededRng;
use crate::error::{GraftError, Result};
use crate::model::{ClassifierHead, FEATURE_DIM, HeadConfig};

/// Embeddings `[n, 1280]` (row-major) with their labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embeddings {
    pub features: Vec<f32>,
    pub labels: Vec<usize>,
}

impl Embeddings {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn push(&mut self, embedding: &[f32], label: usize) {
        debug_assert_eq!(embedding.len(), FEATURE_DIM);
        self.features.extend_from_slice(embedding);
        self.labels.push(label);
    }

    /// The rows at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Self {
        let mut out = Self::default();
        for &i in indices {
            out.push(
                &self.features[i * FEATURE_DIM..(i + 1) * FEATURE_DIM],
                self.labels[i],
            );
        }
        out
    }

    /// The embeddings as one `[n, 1280]` tensor.
    pub fn features_tensor(&self, device: &Device) -> Tensor<2> {
        let x = TensorData::new(self.features.clone(), [self.len(), FEATURE_DIM]);
        Tensor::from_data(x, device)
    }

    fn tensors(&self, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
        let labels: Vec<i64> = self.labels.iter().map(|&l| l as i64).collect();
        let y = TensorData::new(labels, [self.len()]);
        (self.features_tensor(device), Tensor::from_data(y, device))
    }
}

/// Hyper-parameters of head training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadTraining {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub seed: u64,
    pub hidden_units: Option<usize>,
    pub dropout: f64,
}

impl Default for HeadTraining {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            learning_rate: 1e-3,
            seed: 42,
            hidden_units: None,
            dropout: 0.2,
        }
    }
}

impl HeadTraining {
    /// Rejects values that cannot train, naming the option and what would work.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.epochs > 10_000 {
            return Err(GraftError::option(
                "epochs",
                format!("{} (use 1 to 10000)", self.epochs),
            ));
        }
        if self.batch_size == 0 || self.batch_size > 65_536 {
            return Err(GraftError::option(
                "batch size",
                format!("{} (use 1 to 65536)", self.batch_size),
            ));
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 1.0)
        {
            return Err(GraftError::option(
                "learning rate",
                format!("{} (use a value in (0, 1], e.g. 0.001)", self.learning_rate),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(GraftError::option(
                "dropout",
                format!("{} (use 0 to <1)", self.dropout),
            ));
        }
        if self.hidden_units == Some(0) {
            return Err(GraftError::option(
                "hidden units",
                "0 (omit it for no hidden layer)",
            ));
        }
        Ok(())
    }
}

/// Loss and accuracy of one epoch; validation values are absent without a validation set.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
}

impl EpochReport {
    /// Higher validation accuracy wins; equal accuracy is broken by lower validation loss.
    pub(crate) fn better_than(&self, other: &EpochReport) -> bool {
        match (
            self.val_accuracy,
            other.val_accuracy,
            self.val_loss,
            other.val_loss,
        ) {
            (Some(a), Some(b), Some(la), Some(lb)) => a > b || (a == b && la < lb),
            _ => true, // without validation the latest epoch is the best we know
        }
    }
}

/// A trained head (for inference) and how it got there.
#[derive(Debug)]
pub struct TrainedHead {
    pub head: ClassifierHead,
    pub config: HeadConfig,
    pub history: Vec<EpochReport>,
    /// 1-based epoch whose weights `head` holds.
    pub best_epoch: usize,
    /// True when the caller stopped training early.
    pub stopped_early: bool,
}

/// Mean cross-entropy and accuracy of `head` (inference mode) on a labelled set.
pub async fn evaluate_head(
    head: &ClassifierHead,
    data: &Embeddings,
    device: &Device,
) -> Result<(f64, f64)> {
    let (x, y) = data.tensors(device);
    evaluate_tensors(head, x, y, device).await
}

/// [`evaluate_head`] on tensors already on the device (the trainer uploads its validation set
/// once, not every epoch).
async fn evaluate_tensors(
    head: &ClassifierHead,
    x: Tensor<2>,
    y: Tensor<1, Int>,
    device: &Device,
) -> Result<(f64, f64)> {
    let [count] = y.dims();
    let logits = head.forward(x);
    let loss = CrossEntropyLossConfig::new()
        .init(device)
        .forward(logits.clone(), y.clone());
    let correct = logits.argmax(1).flatten::<1>(0, 1).equal(y).int().sum();
    let loss = read_scalar(loss).await?;
    let correct = read_scalar(correct.float()).await?;
    Ok((loss, correct / count as f64))
}

pub(crate) async fn read_scalar(tensor: Tensor<1>) -> Result<f64> {
    let data = tensor.into_data_async().await?;
    data.iter::<f64>().next().ok_or_else(|| GraftError::Device {
        reason: "the device returned an empty result".into(),
    })
}

/// Inverted dropout as a multiplicative mask: each value is kept with probability `1 - p` and
/// scaled by `1 / (1 - p)`. Drawn on the host from the run's seeded generator.
fn dropout_mask(rows: usize, p: f64, rng: &mut SeededRng, device: &Device) -> Tensor<2> {
    let keep = 1.0 - p as f32;
    let mask: Vec<f32> = (0..rows * FEATURE_DIM)
        .map(|_| if rng.unit() < keep { 1.0 / keep } else { 0.0 })
        .collect();
    Tensor::from_data(TensorData::new(mask, [rows, FEATURE_DIM]), device)
}

/// Head training one epoch at a time, so that a caller (the browser's worker) can report,
/// yield to its event loop and stop between epochs. [`train_head`] drives it to the end.
pub struct HeadTrainer {
    options: HeadTraining,
    config: HeadConfig,
    device: Device,
    autodiff: Device,
    /// `None` only while the optimizer owns it during a step.
    head: Option<ClassifierHead>,
    optimizer: ModuleOptimizer,
    loss_fn: CrossEntropyLoss,
    train_x: Tensor<2>,
    train_y: Tensor<1, Int>,
    /// The validation set on the (non-autodiff) device, uploaded once.
    validation: Option<(Tensor<2>, Tensor<1, Int>)>,
    rng: SeededRng,
    order: Vec<usize>,
    history: Vec<EpochReport>,
    best: Option<(ClassifierHead, usize)>,
}

impl HeadTrainer {
    /// Checks the options and data and sets up a new head with Adam and cross-entropy.
    pub fn new(
        train: &Embeddings,
        validation: Option<&Embeddings>,
        num_classes: usize,
        options: &HeadTraining,
        device: &Device,
    ) -> Result<Self> {
        options.validate()?;
        if num_classes < 2 {
            return Err(GraftError::option(
                "classes",
                format!("{num_classes} (need at least 2)"),
            ));
        }
        if train.is_empty() {
            return Err(GraftError::option("training set", "no images to train on"));
        }
        if let Some(&bad) = train.labels.iter().find(|&&l| l >= num_classes) {
            return Err(GraftError::option(
                "labels",
                format!("label {bad} >= {num_classes} classes"),
            ));
        }
        let config = HeadConfig::new(num_classes).with_hidden_units(options.hidden_units);
        let autodiff = device.clone().autodiff();
        let (train_x, train_y) = train.tensors(&autodiff);
        Ok(Self {
            head: Some(config.init(&autodiff, options.seed)),
            optimizer: AdamConfig::new().init(),
            loss_fn: CrossEntropyLossConfig::new().init(&autodiff),
            train_x,
            train_y,
            validation: validation
                .filter(|v| !v.is_empty())
                .map(|v| v.tensors(device)),
            rng: SeededRng::new(options.seed),
            order: (0..train.len()).collect(),
            history: Vec::new(),
            best: None,
            options: options.clone(),
            config,
            device: device.clone(),
            autodiff,
        })
    }

    /// True once every requested epoch has run.
    pub fn is_done(&self) -> bool {
        self.history.len() >= self.options.epochs
    }

    /// Runs one epoch of shuffled mini-batches, then evaluates on the validation set.
    /// Results are read back once per epoch, not per step.
    pub async fn run_epoch(&mut self) -> Result<EpochReport> {
        let epoch = self.history.len() + 1;
        let autodiff = &self.autodiff;
        self.rng.shuffle(&mut self.order);
        let mut loss_sum = Tensor::<1>::zeros([1], autodiff);
        let mut correct = Tensor::<1, Int>::zeros([1], autodiff);
        let mut head = self.head.take().expect("head present between steps");
        for batch in self.order.chunks(self.options.batch_size) {
            let indices: Vec<i64> = batch.iter().map(|&i| i as i64).collect();
            let indices =
                Tensor::<1, Int>::from_data(TensorData::new(indices, [batch.len()]), autodiff);
            let x = self.train_x.clone().select(0, indices.clone());
            let y = self.train_y.clone().select(0, indices);
            let x = match self.options.dropout {
                0.0 => x,
                p => x * dropout_mask(batch.len(), p, &mut self.rng, autodiff),
            };

            let logits = head.forward(x);
            let loss = self.loss_fn.forward(logits.clone(), y.clone());
            loss_sum = loss_sum + loss.clone().detach() * batch.len() as f64;
            correct = correct
                + logits
                    .detach()
                    .argmax(1)
                    .flatten::<1>(0, 1)
                    .equal(y)
                    .int()
                    .sum();

            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = self.optimizer.step(self.options.learning_rate, head, grads);
        }
        let snapshot = head.valid();
        self.head = Some(head);

        let n = self.order.len() as f64;
        let mut report = EpochReport {
            epoch,
            loss: read_scalar(loss_sum).await? / n,
            accuracy: read_scalar(correct.float()).await? / n,
            val_loss: None,
            val_accuracy: None,
        };
        if !report.loss.is_finite() {
            return Err(GraftError::option(
                "learning rate",
                format!(
                    "{} made the loss diverge (NaN); try a smaller one",
                    self.options.learning_rate
                ),
            ));
        }
        if let Some((x, y)) = &self.validation {
            let (loss, accuracy) =
                evaluate_tensors(&snapshot, x.clone(), y.clone(), &self.device).await?;
            report.val_loss = Some(loss);
            report.val_accuracy = Some(accuracy);
        }
        let improved = match &self.best {
            None => true,
            Some((_, best_epoch)) => report.better_than(&self.history[best_epoch - 1]),
        };
        if improved {
            self.best = Some((snapshot, epoch));
        }
        self.history.push(report.clone());
        Ok(report)
    }

    /// The best epoch's head. Fails if no epoch has run yet.
    pub fn finish(self) -> Result<TrainedHead> {
        let (head, best_epoch) = self.best.ok_or_else(|| {
            GraftError::option("epochs", "training stopped before the first epoch ended")
        })?;
        Ok(TrainedHead {
            head,
            config: self.config,
            stopped_early: self.history.len() < self.options.epochs,
            history: self.history,
            best_epoch,
        })
    }
}

/// Trains a new head to the end (or until `on_epoch` returns `ControlFlow::Break(())`), and
/// returns the best epoch's weights.
pub async fn train_head(
    train: &Embeddings,
    validation: Option<&Embeddings>,
    num_classes: usize,
    options: &HeadTraining,
    device: &Device,
    mut on_epoch: impl FnMut(&EpochReport) -> ControlFlow<()>,
) -> Result<TrainedHead> {
    let mut trainer = HeadTrainer::new(train, validation, num_classes, options, device)?;
    while !trainer.is_done() {
        let report = trainer.run_epoch().await?;
        if on_epoch(&report).is_break() {
            break;
        }
    }
    trainer.finish()
}
