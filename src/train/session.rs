//! The training recipe, written once for every front end: examples in, model file and report
//! out.
//!
//! 1. The examples are put in a canonical order (class, then content hash), so the split, the
//!    cross-validation folds and the training order do not depend on the order a front end
//!    listed them in: a folder on disk and the same images dropped into a browser train the
//!    same model.
//! 2. Validation examples are held out (`validationSplit` of each class, seeded, or the split
//!    the data came with).
//! 3. Phase 1 solves the head on the cached embeddings ([`super::head_fit`]).
//! 4. Phase 2, when `fineTuneBlocks` > 0, fine-tunes the backbone's last blocks with the head
//!    on the images, which it asks the [`ImageSource`] for a batch at a time ([`FineTuner`]);
//!    when no fine-tuning epoch beats phase 1 on validation, phase 1's model is kept.
//! 5. The kept model is evaluated on the held-out images; the model file records which ones
//!    they were (content hashes), so `graft eval --split val` rebuilds exactly this set.
//!
//! Front ends supply the images ([`ImageSource`]: files natively, the worker's loader in the
//! browser) and an [`Observer`] that prints or posts progress and says when to stop.

use burn::tensor::Device;
use image::RgbaImage;
use serde::Serialize;
use web_time::Instant;

use super::embeddings::Embeddings;
use super::finetune::{EpochReport, FineTuner, Part};
use super::head_fit::{HeadFit, HeadFitOptions, HeadPenalty, L2Trial, fit_head};
use super::limits::check_training_size;
use super::metrics::{Evaluation, FULL_DETAIL_MAX_CLASSES, evaluate};
use super::options::TrainOptions;
use super::plan::{FineTunePlan, class_weights};
use crate::data::stratified_split;
use crate::error::{GraftError, Result};
use crate::model::{ClassifierHead, EfficientNetLite0, FEATURE_DIM};
use crate::model_file::{
    FineTuneInfo, ModelFile, ModelInfo, SplitInfo, TrainedModel, TrainingSummary,
};
use crate::predict::head_probabilities;

/// One image to learn from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Unique among the set's examples: a file's path natively, the app's image id in the
    /// browser. Reports name examples by it.
    pub id: String,
    /// [`crate::data::content_hash`] of the image file's bytes: what identifies the image
    /// across machines and front ends.
    pub hash: String,
    /// Index of its class in [`TrainingSet::labels`].
    pub label: usize,
}

/// A file that was left out, and why (reported, never hidden).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedImage {
    pub name: String,
    pub reason: String,
}

/// Everything the recipe trains on: classes, examples and their embeddings.
#[derive(Debug, Clone, Default)]
pub struct TrainingSet {
    pub labels: Vec<String>,
    pub examples: Vec<Example>,
    /// `examples.len() x 1280`, row `i` for example `i`.
    pub embeddings: Vec<f32>,
    /// Examples held out by the data's own layout (train/ and val/ folders); `None` holds out
    /// `validationSplit` of each class.
    pub fixed_validation: Option<Vec<bool>>,
    /// Files the front end could not use; carried into the report.
    pub skipped: Vec<SkippedImage>,
}

impl TrainingSet {
    fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(GraftError::option("training set", reason));
        if self.labels.len() < 2 {
            return bad(format!(
                "training needs at least 2 classes with images; there {} {}",
                if self.labels.len() == 1 { "is" } else { "are" },
                self.labels.len()
            ));
        }
        if self.embeddings.len() != self.examples.len() * FEATURE_DIM {
            return bad("embeddings and examples differ in number".into());
        }
        if let Some(bad_label) = self.examples.iter().find(|e| e.label >= self.labels.len()) {
            return bad(format!(
                "example '{}' has no class {}",
                bad_label.id, bad_label.label
            ));
        }
        if let Some(flags) = &self.fixed_validation
            && flags.len() != self.examples.len()
        {
            return bad("the fixed validation flags and examples differ in number".into());
        }
        let mut seen = std::collections::HashMap::new();
        for example in &self.examples {
            if let Some(other) = seen.insert(example.hash.as_str(), example.id.as_str()) {
                return bad(format!("'{}' and '{other}' are the same image", example.id));
            }
        }
        if self.embeddings.iter().any(|v| !v.is_finite()) {
            return bad("an embedding holds NaN or infinite values".into());
        }
        Ok(())
    }
}

/// Decoded images of examples, on demand: phase 2 asks for a batch at a time, so memory does
/// not grow with the number of images.
#[allow(async_fn_in_trait)] // driven in one task; never sent between threads
pub trait ImageSource {
    /// The decoded images of `examples` (indices into [`TrainingSet::examples`]), in order.
    async fn load(&mut self, examples: &[usize]) -> Result<Vec<RgbaImage>>;
}

/// Progress, as it happens. Serialised (for the browser's `onProgress`) as one object told
/// apart by `status`.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum TrainEvent<'a> {
    /// A line describing a choice made (what was picked, what an option did).
    Note { text: &'a str },
    /// One L2 strength cross-validated (`index` of at most `of`).
    #[serde(rename = "search")]
    HeadSearch {
        #[serde(flatten)]
        trial: &'a L2Trial,
        index: usize,
        of: usize,
    },
    /// Phase 1 is done.
    #[serde(rename = "head")]
    HeadSolved(&'a HeadReport),
    /// Phase 2's baseline: the head alone on the validation images (epoch 0).
    Baseline(&'a EpochReport),
    /// A fine-tuning step.
    Step {
        epoch: usize,
        epochs: usize,
        step: usize,
        #[serde(rename = "totalSteps")]
        total_steps: usize,
    },
    /// A fine-tuning epoch ended, after `seconds` (training and validation).
    Epoch {
        #[serde(flatten)]
        report: &'a EpochReport,
        seconds: f64,
    },
}

/// Where progress goes, and who decides to stop.
#[allow(async_fn_in_trait)] // driven in one task; never sent between threads
pub trait Observer {
    fn on_event(&mut self, event: TrainEvent<'_>);
    /// Checked between solver fits and fine-tuning steps. Stopping keeps the best model so
    /// far (the head is always solved; fine-tuning keeps its best epoch).
    fn should_stop(&mut self) -> bool {
        false
    }
    /// Called between units of work: the browser yields to its event loop here, so that
    /// messages (a cancel) get through.
    async fn pause(&mut self) {}
}

/// Phase 1 in the report: how the head was solved and how it did on the held-out images.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadReport {
    #[serde(flatten)]
    pub fit: HeadFit,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
}

/// Phase 2 in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FineTuneReport {
    pub plan: FineTunePlan,
    /// What the plan does and what was picked, one line each.
    pub notes: Vec<String>,
    /// The head alone (phase 1) on the validation images, before any fine-tuning step.
    pub baseline: Option<EpochReport>,
    pub history: Vec<EpochReport>,
    /// 0 when no epoch beat phase 1 on validation (the model is then head-only).
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub seconds_per_epoch: Vec<f64>,
    /// Device memory held by cached frozen-backbone activations at the end.
    pub cache_megabytes: f64,
}

/// One held-out image and what the kept model said of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationExample {
    pub id: String,
    /// Its class's index in `labels`.
    pub label: usize,
    /// The predicted class's index in `labels`.
    pub predicted: usize,
    /// The predicted class's probability.
    pub score: f32,
    /// The probability of each class, in `labels` order, up to
    /// [`FULL_DETAIL_MAX_CLASSES`](super::metrics::FULL_DETAIL_MAX_CLASSES) classes.
    pub probabilities: Option<Vec<f32>>,
}

/// What training did, the same for the CLI (`--json`) and the browser (`train()`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainReport {
    pub labels: Vec<String>,
    pub train_images: usize,
    pub validation_images: usize,
    pub skipped: Vec<SkippedImage>,
    /// Every choice made, as printed.
    pub notes: Vec<String>,
    pub head: HeadReport,
    pub fine_tune: Option<FineTuneReport>,
    /// The kept model on the held-out images; `None` without any.
    pub validation: Option<Evaluation>,
    /// Every held-out image with the kept model's verdict, in the canonical order.
    pub validation_examples: Vec<ValidationExample>,
    /// True when the observer stopped training before it finished.
    pub stopped: bool,
    /// Wall time of the whole recipe (embeddings excluded: front ends compute them).
    pub seconds: f64,
}

/// A trained model and its report.
#[derive(Debug)]
pub struct Trained {
    pub model: ModelFile,
    pub report: TrainReport,
}

/// The examples in canonical order (class, then content hash), and which positions train and
/// which are held out. Positions index `order` (the example each holds) and `all`.
struct CanonicalSplit {
    order: Vec<usize>,
    train: Vec<usize>,
    validation: Vec<usize>,
    all: Embeddings,
}

impl CanonicalSplit {
    fn of(set: &TrainingSet, options: &TrainOptions) -> Self {
        let mut order: Vec<usize> = (0..set.examples.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&set.examples[a], &set.examples[b]);
            (a.label, &a.hash, &a.id).cmp(&(b.label, &b.hash, &b.id))
        });
        let held_out: Vec<bool> = match &set.fixed_validation {
            Some(flags) => order.iter().map(|&i| flags[i]).collect(),
            None => {
                let labels: Vec<usize> = order.iter().map(|&i| set.examples[i].label).collect();
                let split = stratified_split(&labels, options.validation_split, options.seed);
                let mut flags = vec![false; order.len()];
                split.validation.iter().for_each(|&i| flags[i] = true);
                flags
            }
        };
        let (validation, train) = (0..order.len()).partition(|&position| held_out[position]);
        let all = Embeddings {
            features: order
                .iter()
                .flat_map(|&i| {
                    set.embeddings[i * FEATURE_DIM..(i + 1) * FEATURE_DIM]
                        .iter()
                        .copied()
                })
                .collect(),
            labels: order.iter().map(|&i| set.examples[i].label).collect(),
        };
        Self {
            order,
            train,
            validation,
            all,
        }
    }
}

/// Images for a batch of canonical positions, unless the tuner has them cached.
async fn batch_images(
    tuner: &FineTuner,
    part: Part,
    batch: &[usize],
    examples: &[usize],
    images: &mut impl ImageSource,
) -> Result<Vec<RgbaImage>> {
    if !tuner.needs_images(part, batch) {
        return Ok(Vec::new());
    }
    let wanted: Vec<usize> = batch.iter().map(|&i| examples[i]).collect();
    images.load(&wanted).await
}

async fn validation_pass(
    tuner: &mut FineTuner,
    validation: &[usize],
    images: &mut impl ImageSource,
    observer: &mut impl Observer,
) -> Result<()> {
    for batch in tuner.validation_batches() {
        let loaded = batch_images(tuner, Part::Validation, &batch, validation, images).await?;
        tuner.validate_batch(&batch, &loaded)?;
        observer.pause().await;
    }
    Ok(())
}

/// The fine-tuned result, when an epoch beat phase 1, with its report.
struct PhaseTwo {
    tuned: Option<super::finetune::FineTuned>,
    report: FineTuneReport,
}

#[allow(clippy::too_many_arguments)] // one call site; each argument is a different input
async fn fine_tune(
    backbone: &EfficientNetLite0,
    head: &ClassifierHead,
    penalty: &HeadPenalty,
    plan: FineTunePlan,
    (train, validation): (&[usize], &[usize]),
    labels: &[usize],
    classes: usize,
    images: &mut impl ImageSource,
    observer: &mut impl Observer,
    device: &Device,
) -> Result<PhaseTwo> {
    let labels_of = |rows: &[usize]| rows.iter().map(|&i| labels[i]).collect::<Vec<_>>();
    let mut counts = vec![0; classes];
    train.iter().for_each(|&i| counts[labels[i]] += 1);
    let notes = plan.describe(&counts);
    notes
        .iter()
        .for_each(|text| observer.on_event(TrainEvent::Note { text }));
    let mut tuner = FineTuner::new(
        backbone.clone(),
        head.clone(),
        labels_of(train),
        labels_of(validation),
        classes,
        &plan,
        device,
    )?
    .with_head_penalty(penalty);
    let mut report = FineTuneReport {
        plan: plan.clone(),
        notes,
        baseline: None,
        history: Vec::new(),
        best_epoch: 0,
        stopped_early: false,
        seconds_per_epoch: Vec::new(),
        cache_megabytes: 0.0,
    };
    if !validation.is_empty() {
        validation_pass(&mut tuner, validation, images, observer).await?;
        let baseline = tuner.finish_baseline().await?;
        observer.on_event(TrainEvent::Baseline(&baseline));
        report.baseline = Some(baseline);
    }
    let mut stopped = false;
    'epochs: while !tuner.is_done() {
        let started = Instant::now();
        let epoch = tuner.next_epoch();
        let batches = tuner.train_batches();
        for (done, batch) in batches.iter().enumerate() {
            let loaded = batch_images(&tuner, Part::Train, batch, train, images).await?;
            tuner.train_step(batch, &loaded)?;
            observer.on_event(TrainEvent::Step {
                epoch,
                epochs: plan.epochs,
                step: (epoch - 1) * batches.len() + done + 1,
                total_steps: plan.epochs * batches.len(),
            });
            observer.pause().await;
            if observer.should_stop() {
                stopped = true;
                break 'epochs;
            }
        }
        validation_pass(&mut tuner, validation, images, observer).await?;
        let epoch_report = tuner.finish_epoch().await?;
        let seconds = started.elapsed().as_secs_f64();
        report.seconds_per_epoch.push(seconds);
        observer.on_event(TrainEvent::Epoch {
            report: &epoch_report,
            seconds,
        });
    }
    report.history = tuner.history().to_vec();
    let tuned = match tuner.finish() {
        Ok(tuned) => tuned,
        // Stopped before the baseline or the first epoch: phase 1's model stands.
        Err(_) if stopped => {
            return Ok(PhaseTwo {
                tuned: None,
                report,
            });
        }
        Err(error) => return Err(error),
    };
    report.best_epoch = tuned.best_epoch;
    report.stopped_early = tuned.stopped_early && !stopped;
    report.cache_megabytes = tuned.cache_bytes as f64 / 1e6;
    Ok(PhaseTwo {
        tuned: Some(tuned),
        report,
    })
}

/// Runs the recipe. `backbone` (pretrained, on `device`) is the one the embeddings came from.
pub async fn train(
    set: &TrainingSet,
    options: &TrainOptions,
    images: &mut impl ImageSource,
    observer: &mut impl Observer,
    backbone: &EfficientNetLite0,
    device: &Device,
) -> Result<Trained> {
    options.validate()?;
    set.check()?;
    check_training_size(set.examples.len(), set.labels.len(), options.hidden_units)?;
    let started = Instant::now();
    let classes = set.labels.len();
    let mut notes = Vec::new();

    // 1-2. Canonical order, then the held-out examples.
    let CanonicalSplit {
        order,
        train,
        validation,
        all,
    } = CanonicalSplit::of(set, options);
    let train_set = all.subset(&train);
    let validation_set = all.subset(&validation);
    let mut counts = vec![0usize; classes];
    train_set.labels.iter().for_each(|&l| counts[l] += 1);
    if let Some(empty) = counts.iter().position(|&n| n == 0) {
        return Err(GraftError::option(
            "training set",
            format!("class '{}' has no training images", set.labels[empty]),
        ));
    }

    // 3. Phase 1: the head.
    let head_started = Instant::now();
    let weights = class_weights(options.balance, &counts);
    if options.epochs.is_some() && options.fine_tune_blocks == 0 {
        note(
            &mut notes,
            observer,
            "epochs count fine-tuning passes over the images, and fine-tuning is off \
             (fineTuneBlocks 0): the head is solved to convergence, without epochs"
                .into(),
        );
    }
    let fit_options = HeadFitOptions {
        classes,
        hidden_units: options.hidden_units,
        l2: options.l2,
        class_weights: weights.clone(),
        seed: options.seed,
    };
    let (head, fit, penalty) = fit_head(&train_set, &fit_options, observer, device).await?;
    note(&mut notes, observer, describe_head(&fit, &counts));
    let head_rows = head_probabilities(&head, &validation_set, device).await?;
    let head_evaluation =
        (!head_rows.is_empty()).then(|| evaluate(&set.labels, &validation_set.labels, &head_rows));
    let head_report = HeadReport {
        val_loss: head_evaluation
            .as_ref()
            .map(|_| mean_cross_entropy(&head_rows, &validation_set.labels)),
        val_accuracy: head_evaluation.as_ref().map(|e| e.accuracy),
        fit,
        seconds: head_started.elapsed().as_secs_f64(),
    };
    observer.on_event(TrainEvent::HeadSolved(&head_report));

    let held_out_hashes = {
        let mut hashes: Vec<String> = validation
            .iter()
            .map(|&p| set.examples[order[p]].hash.clone())
            .collect();
        hashes.sort();
        hashes
    };
    let summary = |val_accuracy: Option<f64>, val_loss: Option<f64>| TrainingSummary {
        train_images: train.len(),
        validation_images: validation.len(),
        val_accuracy,
        val_loss,
        l2: Some(head_report.fit.l2),
        split: Some(SplitInfo {
            seed: set.fixed_validation.is_none().then_some(options.seed),
            validation_fraction: set
                .fixed_validation
                .is_none()
                .then_some(options.validation_split),
            held_out: held_out_hashes.clone(),
        }),
    };
    let info = ModelInfo::new(set.labels.clone(), options.hidden_units);
    let mut model = ModelFile::head_only(TrainedModel {
        info: info
            .clone()
            .with_training(summary(head_report.val_accuracy, head_report.val_loss)),
        head: head.clone(),
    });
    let mut kept_rows = head_rows;

    // 4. Phase 2: the backbone's tail with the head, on the images.
    let mut fine_tune_report = None;
    let mut stopped = observer.should_stop();
    if options.fine_tune_blocks > 0 && !stopped {
        let plan = FineTunePlan::for_data(options, &counts);
        let canonical: Vec<usize> = order.clone();
        let mut by_position = PositionSource {
            order: &canonical,
            inner: images,
        };
        let phase = fine_tune(
            backbone,
            &head,
            &penalty,
            plan.clone(),
            (&train, &validation),
            &all.labels,
            classes,
            &mut by_position,
            observer,
            device,
        )
        .await?;
        stopped = observer.should_stop();
        if let Some(tuned) = phase.tuned.filter(|t| t.best_epoch > 0) {
            let best = &tuned.history[tuned.best_epoch - 1];
            let details = FineTuneInfo::of(&tuned, &plan);
            model = ModelFile::fine_tuned(
                TrainedModel {
                    info: info.with_training(summary(best.val_accuracy, best.val_loss)),
                    head: tuned.head,
                },
                tuned.tail,
                details,
            );
            kept_rows = tuned.validation_probabilities;
        }
        let report = phase.report;
        let outcome = match report.best_epoch {
            0 => "no fine-tuning epoch beat the head alone on validation: keeping the head-only model".to_string(),
            best => format!("fine-tuned: keeping epoch {best}{}", if report.stopped_early { " (stopped early)" } else { "" }),
        };
        note(&mut notes, observer, outcome);
        fine_tune_report = Some(report);
    }

    // 5. The kept model on the held-out images.
    let validation_labels = &validation_set.labels;
    let evaluation =
        (!kept_rows.is_empty()).then(|| evaluate(&set.labels, validation_labels, &kept_rows));
    let validation_examples = validation
        .iter()
        .zip(kept_rows)
        .map(|(&position, probabilities)| {
            let predicted = argmax(&probabilities);
            ValidationExample {
                id: set.examples[order[position]].id.clone(),
                label: all.labels[position],
                predicted,
                score: probabilities[predicted],
                probabilities: (probabilities.len() <= FULL_DETAIL_MAX_CLASSES)
                    .then_some(probabilities),
            }
        })
        .collect();
    let report = TrainReport {
        labels: set.labels.clone(),
        train_images: train.len(),
        validation_images: validation.len(),
        skipped: set.skipped.clone(),
        notes,
        head: head_report,
        fine_tune: fine_tune_report,
        validation: evaluation,
        validation_examples,
        stopped,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(Trained { model, report })
}

/// Maps the tuner's canonical positions back to the front end's example indices.
struct PositionSource<'a, S> {
    order: &'a [usize],
    inner: &'a mut S,
}

impl<S: ImageSource> ImageSource for PositionSource<'_, S> {
    async fn load(&mut self, positions: &[usize]) -> Result<Vec<RgbaImage>> {
        let examples: Vec<usize> = positions.iter().map(|&p| self.order[p]).collect();
        self.inner.load(&examples).await
    }
}

/// Tells the observer about a choice and keeps it for the report.
fn note(notes: &mut Vec<String>, observer: &mut impl Observer, text: String) {
    observer.on_event(TrainEvent::Note { text: &text });
    notes.push(text);
}

fn describe_head(fit: &HeadFit, counts: &[usize]) -> String {
    let shape = match fit.hidden_units {
        Some(units) => format!("head with a hidden layer of {units}"),
        None => "linear head".to_string(),
    };
    let penalty = match fit.l2_source.as_str() {
        "crossValidation" => format!(
            "L2 {:.3e}, picked by {}-fold cross-validation",
            fit.l2, fit.folds
        ),
        "given" => format!("L2 {:.3e}, as given", fit.l2),
        _ => format!(
            "L2 {:.3e} (too few images per class to cross-validate)",
            fit.l2
        ),
    };
    let balance = match &fit.class_weights {
        Some(weights) => format!("; classes weighted {weights:.2?} (class sizes {counts:?})"),
        None => String::new(),
    };
    format!(
        "{shape}: {penalty}{balance}; solved in {} iterations{}",
        fit.iterations,
        if fit.converged {
            ""
        } else {
            " (stopped at the limit)"
        }
    )
}

fn mean_cross_entropy(probabilities: &[Vec<f32>], labels: &[usize]) -> f64 {
    let total: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(row, &label)| -(row[label].max(f32::MIN_POSITIVE) as f64).ln())
        .sum();
    total / labels.len().max(1) as f64
}

/// Index of the largest value (the first on ties).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > values[best] { i } else { best })
}
