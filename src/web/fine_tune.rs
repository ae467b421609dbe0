//! Phase 2 in the browser: drives the core's [`FineTuner`] with images that the worker decodes
//! again a batch at a time, so memory stays bounded whatever the number of images (only files
//! are kept, in the worker; never every decoded image).

use std::cell::Cell;

use burn::tensor::Device;
use js_sys::Function;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::interop::{js_error, load_images, to_js, yield_to_event_loop};
use crate::data::EFFICIENTNET_LITE;
use crate::model::{ClassifierHead, EfficientNetLite0};
use crate::predict::class_probabilities;
use crate::train::{EpochReport, FineTunePlan, FineTuned, FineTuner, Part};

/// Images per batch when only predicting (the validation images with the final model).
const PREDICT_BATCH: usize = 16;

/// One example as the worker knows it: its class (in the engine's order) and its position
/// among that class's images; `label` is the class index the model learns.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    pub class: u32,
    pub position: u32,
    pub label: usize,
}

/// What phase 2 did, for the JavaScript report.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FineTuneReport {
    pub plan: FineTunePlan,
    /// What the plan does and what was picked, one line each.
    pub notes: Vec<String>,
    /// The head alone (phase 1) on the validation images, before any fine-tuning step.
    pub baseline: Option<EpochReport>,
    pub history: Vec<EpochReport>,
    /// 0 when no epoch beat phase 1 on validation loss (the model is then head-only).
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub cancelled: bool,
    pub seconds_per_epoch: Vec<f64>,
    /// Device memory held by cached frozen-backbone activations at the end.
    pub cache_megabytes: f64,
}

/// Where progress goes: `on_epoch(report)` after each epoch, `on_step(progress)` after each
/// optimiser step; `cancel` is checked between steps.
pub struct Callbacks<'a> {
    pub on_epoch: &'a Function,
    pub on_step: &'a Function,
    pub load: &'a Function,
    pub cancel: &'a Cell<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StepProgress {
    phase: &'static str,
    epoch: usize,
    epochs: usize,
    step: usize,
    total_steps: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhaseEpoch<'a> {
    phase: &'static str,
    #[serde(flatten)]
    report: &'a EpochReport,
    seconds: f64,
}

fn now_seconds() -> f64 {
    js_sys::Date::now() / 1000.0
}

async fn batch_images(
    tuner: &FineTuner,
    part: Part,
    batch: &[usize],
    examples: &[Example],
    load: &Function,
) -> Result<Vec<image::RgbaImage>, JsError> {
    if !tuner.needs_images(part, batch) {
        return Ok(Vec::new());
    }
    let pairs: Vec<u32> = batch
        .iter()
        .flat_map(|&i| [examples[i].class, examples[i].position])
        .collect();
    load_images(load, &pairs).await
}

async fn validation_pass(
    tuner: &mut FineTuner,
    validation: &[Example],
    load: &Function,
) -> Result<(), JsError> {
    for batch in tuner.validation_batches() {
        let images = batch_images(tuner, Part::Validation, &batch, validation, load).await?;
        tuner.validate_batch(&batch, &images).map_err(js_error)?;
        yield_to_event_loop().await;
    }
    Ok(())
}

/// Runs phase 2 from phase 1's `head`. Returns the best weights, or `None` when it was
/// cancelled before anything could be compared with phase 1.
pub async fn fine_tune(
    backbone: &EfficientNetLite0,
    head: &ClassifierHead,
    (train, validation): (&[Example], &[Example]),
    num_classes: usize,
    plan: &FineTunePlan,
    callbacks: Callbacks<'_>,
    device: &Device,
) -> Result<(Option<FineTuned>, FineTuneReport), JsError> {
    let labels = |examples: &[Example]| examples.iter().map(|e| e.label).collect::<Vec<_>>();
    let mut counts = vec![0; num_classes];
    for example in train {
        counts[example.label] += 1;
    }
    let mut tuner = FineTuner::new(
        backbone.clone(),
        head.clone(),
        labels(train),
        labels(validation),
        num_classes,
        plan,
        device,
    )
    .map_err(js_error)?;
    let mut report = FineTuneReport {
        plan: plan.clone(),
        notes: plan.describe(&counts),
        baseline: None,
        history: Vec::new(),
        best_epoch: 0,
        stopped_early: false,
        cancelled: false,
        seconds_per_epoch: Vec::new(),
        cache_megabytes: 0.0,
    };
    if !validation.is_empty() {
        validation_pass(&mut tuner, validation, callbacks.load).await?;
        let baseline = tuner.finish_baseline().await.map_err(js_error)?;
        let _ = callbacks.on_epoch.call1(
            &JsValue::NULL,
            &to_js(&PhaseEpoch {
                phase: "fineTune",
                report: &baseline,
                seconds: 0.0,
            })?,
        );
        report.baseline = Some(baseline);
    }
    'epochs: while !tuner.is_done() {
        let started = now_seconds();
        let epoch = tuner.next_epoch();
        let batches = tuner.train_batches();
        for (done, batch) in batches.iter().enumerate() {
            let images = batch_images(&tuner, Part::Train, batch, train, callbacks.load).await?;
            tuner.train_step(batch, &images).map_err(js_error)?;
            let progress = StepProgress {
                phase: "fineTune",
                epoch,
                epochs: plan.epochs,
                step: (epoch - 1) * batches.len() + done + 1,
                total_steps: plan.epochs * batches.len(),
            };
            let _ = callbacks.on_step.call1(&JsValue::NULL, &to_js(&progress)?);
            yield_to_event_loop().await;
            if callbacks.cancel.get() {
                report.cancelled = true;
                break 'epochs;
            }
        }
        validation_pass(&mut tuner, validation, callbacks.load).await?;
        let epoch_report = tuner.finish_epoch().await.map_err(js_error)?;
        let seconds = now_seconds() - started;
        report.seconds_per_epoch.push(seconds);
        let _ = callbacks.on_epoch.call1(
            &JsValue::NULL,
            &to_js(&PhaseEpoch {
                phase: "fineTune",
                report: &epoch_report,
                seconds,
            })?,
        );
    }
    report.history = tuner.history().to_vec();
    let tuned = match tuner.finish() {
        Ok(tuned) => tuned,
        // Cancelled before the baseline or the first epoch: phase 1's model stands.
        Err(_) if report.cancelled => return Ok((None, report)),
        Err(error) => return Err(js_error(error)),
    };
    report.best_epoch = tuned.best_epoch;
    report.stopped_early = tuned.stopped_early && !report.cancelled;
    report.cache_megabytes = tuned.cache_bytes as f64 / 1e6;
    Ok((Some(tuned), report))
}

/// Class probabilities of `examples` with a (fine-tuned) backbone and head, loading the images
/// from the worker a batch at a time.
pub async fn probabilities_of(
    backbone: &EfficientNetLite0,
    head: &ClassifierHead,
    examples: &[Example],
    load: &Function,
    device: &Device,
) -> Result<Vec<Vec<f32>>, JsError> {
    let mut rows = Vec::with_capacity(examples.len());
    for batch in examples.chunks(PREDICT_BATCH) {
        let pairs: Vec<u32> = batch.iter().flat_map(|e| [e.class, e.position]).collect();
        let images: Vec<Vec<f32>> = load_images(load, &pairs)
            .await?
            .iter()
            .map(|rgba| EFFICIENTNET_LITE.prepare(rgba))
            .collect();
        rows.extend(
            class_probabilities(backbone, head, &images, device)
                .await
                .map_err(js_error)?,
        );
        yield_to_event_loop().await;
    }
    Ok(rows)
}
