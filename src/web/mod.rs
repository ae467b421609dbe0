//! The browser facade: a thin wasm-bindgen layer over the core, run inside a Web Worker.
//!
//! No model or training logic lives here: it converts JavaScript values, keeps the session's
//! state (the examples' embeddings and the trained model) and calls the same functions the CLI
//! does. Images arrive as RGBA pixels the browser decoded; only their embeddings are kept, so
//! memory stays at about 5 KB per image however many there are. Fine-tuning asks the worker
//! for the images again, a batch at a time ([`fine_tune`]).
//!
//! Every export returns `Result<_, JsError>` or a promise that rejects with an `Error`.

mod fine_tune;
mod interop;
mod options;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::tensor::Device;
use js_sys::{Function, Promise};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::data::stratified_split;
use crate::model::{EfficientNetLite0, FEATURE_DIM};
use crate::model_file::{
    FineTuneInfo, ModelFile, ModelInfo, SplitInfo, TrainedModel, TrainingSummary,
};
use crate::predict::head_probabilities;
use crate::train::{Embeddings, EpochReport, Evaluation, HeadTrainer, embed_batch, evaluate};
use crate::weights::load_backbone;
use fine_tune::{Callbacks, Example, FineTuneReport, probabilities_of};
use interop::{js_error, prepare_images, to_js, yield_to_event_loop};
use options::TrainOptions;

/// Images embedded per forward pass in the browser.
const EMBED_BATCH: usize = 8;

unsafe extern "C" {
    /// Runs the static constructors (cubecl's `inventory`). Called once here, otherwise wasm-ld
    /// wraps every export in a call to all constructors (measured 2.7x slower WebGPU steps).
    fn __wasm_call_ctors();
}

#[wasm_bindgen(start)]
fn start() {
    // Log panics to the console and keep the message where the worker can report it: after a
    // panic the module traps with a bare "unreachable", which tells the user nothing.
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let _ = js_sys::Reflect::set(
            &js_sys::global(),
            &JsValue::from_str("graftPanic"),
            &JsValue::from_str(&info.to_string()),
        );
    }));
    // SAFETY: called once, at module start, before any other export runs.
    unsafe { __wasm_call_ctors() };
}

/// One class the user is building, with the embeddings of its examples.
struct ClassExamples {
    label: String,
    embeddings: Vec<f32>,
}

impl ClassExamples {
    fn count(&self) -> usize {
        self.embeddings.len() / FEATURE_DIM
    }
}

/// A model ready to predict: its file, and the backbone it predicts with (the pretrained one,
/// with the fine-tuned tail grafted on when there is one).
struct SessionModel {
    file: ModelFile,
    backbone: EfficientNetLite0,
}

impl SessionModel {
    fn new(file: ModelFile, pretrained: &EfficientNetLite0) -> Self {
        let backbone = file.backbone(pretrained.clone());
        Self { file, backbone }
    }

    fn info(&self) -> &ModelInfo {
        &self.file.model.info
    }
}

struct Session {
    classes: Vec<ClassExamples>,
    model: Option<Rc<SessionModel>>,
}

impl Session {
    /// Appends embeddings to the class `label` (created if new); returns its new count.
    fn add(&mut self, label: String, embeddings: Vec<f32>) -> usize {
        let index = match self.classes.iter().position(|c| c.label == label) {
            Some(index) => index,
            None => {
                self.classes.push(ClassExamples {
                    label,
                    embeddings: Vec::new(),
                });
                self.classes.len() - 1
            }
        };
        let class = &mut self.classes[index];
        class.embeddings.extend(embeddings);
        class.count()
    }
}

/// What `classes()` returns for each class.
#[derive(Serialize)]
struct ClassCount<'a> {
    label: &'a str,
    count: usize,
}

/// What `train()` resolves to.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TrainReport<'a> {
    /// Phase 1 (the head on embeddings).
    history: &'a [EpochReport],
    best_epoch: usize,
    stopped_early: bool,
    train_images: usize,
    validation_images: usize,
    labels: &'a [String],
    /// Phase 2, when `fineTuneBlocks` asked for it.
    fine_tune: Option<FineTuneReport>,
    /// The final model on the held-out images; `None` without a validation split.
    validation: Option<Evaluation>,
    /// Every held-out image with what the final model said, so an app can show the mistakes.
    validation_examples: Vec<ValidationExample>,
}

/// One held-out image: where it is among the examples the caller added, and the verdict.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ValidationExample {
    /// Index of its class in `labels`.
    class_index: usize,
    /// Its position among that class's examples, in the order they were added.
    example_index: usize,
    /// The predicted class's index in `labels`.
    predicted: usize,
    /// The probability of each class, in `labels` order.
    probabilities: Vec<f32>,
}

/// What `on_epoch` receives in phase 1: the epoch's report and the optimiser steps so far.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HeadEpoch<'a> {
    phase: &'static str,
    #[serde(flatten)]
    report: &'a EpochReport,
    step: usize,
    total_steps: usize,
}

/// Index of the largest value (the first on ties).
fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > values[best] { i } else { best })
}

/// A Graft session: a backbone on one device, the user's classes and the trained head.
#[wasm_bindgen]
pub struct Engine {
    device: Device,
    backend: &'static str,
    backbone: Rc<EfficientNetLite0>,
    session: Rc<RefCell<Session>>,
    cancel: Rc<Cell<bool>>,
}

#[wasm_bindgen]
impl Engine {
    /// Loads the backbone from safetensors bytes on `backend` (`"webgpu"` or `"cpu"`).
    pub async fn create(weights: Vec<u8>, backend: String) -> Result<Engine, JsError> {
        let (device, backend) = match backend.as_str() {
            "webgpu" => {
                let device = Device::wgpu_options()
                    .init_async()
                    .await
                    .map_err(|e| js_error(format!("WebGPU is not available: {e}")))?;
                (device, "webgpu")
            }
            "cpu" => (Device::flex(), "cpu"),
            other => {
                return Err(js_error(format!(
                    "invalid backend '{other}' (valid: 'webgpu', 'cpu')"
                )));
            }
        };
        let backbone = load_backbone(weights, "weights", &device).map_err(js_error)?;
        Ok(Engine {
            device,
            backend,
            backbone: Rc::new(backbone),
            session: Rc::new(RefCell::new(Session {
                classes: Vec::new(),
                model: None,
            })),
            cancel: Rc::new(Cell::new(false)),
        })
    }

    /// The backend actually running: `"webgpu"` or `"cpu"`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.to_string()
    }

    /// Embeds images (concatenated RGBA `pixels`, `dims` = `[w, h, ...]`) and adds them to the
    /// class `label`, creating it if needed. Resolves to their embeddings (`images x 1280`),
    /// which [`Engine::add_embeddings`] accepts to restore a session without the backbone.
    #[wasm_bindgen(js_name = addExamples)]
    pub fn add_examples(&self, label: String, pixels: Vec<u8>, dims: Vec<u32>) -> Promise {
        let (backbone, device, session) = (
            self.backbone.clone(),
            self.device.clone(),
            self.session.clone(),
        );
        future_to_promise(async move {
            let label = label.trim().to_string();
            if label.is_empty() {
                return Err(js_error("a class label cannot be empty").into());
            }
            let images = prepare_images(&pixels, &dims).map_err(js_error)?;
            let mut embeddings = Vec::with_capacity(images.len() * FEATURE_DIM);
            for batch in images.chunks(EMBED_BATCH) {
                embeddings.extend(
                    embed_batch(&backbone, batch, &device)
                        .await
                        .map_err(js_error)?,
                );
            }
            let array = js_sys::Float32Array::from(embeddings.as_slice());
            session.borrow_mut().add(label, embeddings);
            Ok(array.into())
        })
    }

    /// Adds embeddings saved from [`Engine::add_examples`] (`n x 1280`) to the class `label`,
    /// creating it if needed; returns the class's new count.
    #[wasm_bindgen(js_name = addEmbeddings)]
    pub fn add_embeddings(&self, label: String, embeddings: Vec<f32>) -> Result<u32, JsError> {
        let label = label.trim().to_string();
        if label.is_empty() {
            return Err(js_error("a class label cannot be empty"));
        }
        if embeddings.is_empty() || !embeddings.len().is_multiple_of(FEATURE_DIM) {
            return Err(js_error(format!(
                "embeddings must be a non-empty multiple of {FEATURE_DIM} numbers, got {}",
                embeddings.len()
            )));
        }
        if embeddings.iter().any(|v| !v.is_finite()) {
            return Err(js_error("embeddings contain NaN or infinite values"));
        }
        Ok(self.session.borrow_mut().add(label, embeddings) as u32)
    }

    /// `[{ label, count }]` in the order classes were created.
    pub fn classes(&self) -> Result<JsValue, JsError> {
        let session = self.session.borrow();
        let counts: Vec<ClassCount> = session
            .classes
            .iter()
            .map(|c| ClassCount {
                label: &c.label,
                count: c.count(),
            })
            .collect();
        to_js(&counts)
    }

    #[wasm_bindgen(js_name = removeClass)]
    pub fn remove_class(&self, label: &str) -> Result<(), JsError> {
        let mut session = self.session.borrow_mut();
        let before = session.classes.len();
        session.classes.retain(|c| c.label != label);
        if session.classes.len() == before {
            return Err(js_error(format!("there is no class '{label}'")));
        }
        Ok(())
    }

    #[wasm_bindgen(js_name = renameClass)]
    pub fn rename_class(&self, from: &str, to: &str) -> Result<(), JsError> {
        let to = to.trim();
        if to.is_empty() {
            return Err(js_error("a class label cannot be empty"));
        }
        let mut session = self.session.borrow_mut();
        if from != to && session.classes.iter().any(|c| c.label == to) {
            return Err(js_error(format!("a class '{to}' already exists")));
        }
        let class = session
            .classes
            .iter_mut()
            .find(|c| c.label == from)
            .ok_or_else(|| js_error(format!("there is no class '{from}'")))?;
        class.label = to.to_string();
        Ok(())
    }

    /// Trains a new head on the classes' embeddings (phase 1) and, when `fineTuneBlocks` > 0,
    /// fine-tunes the backbone's last blocks with it on the images (phase 2), which it asks
    /// for with `load_images([class, position, ...])`. `on_epoch(report)` is called after every
    /// epoch of either phase, `on_step(progress)` after every fine-tuning step;
    /// [`Engine::cancel`] stops at the next step or epoch, keeping the best model so far.
    pub fn train(
        &self,
        options: JsValue,
        on_epoch: Function,
        on_step: Function,
        load_images: Function,
    ) -> Promise {
        let (backbone, device, session, cancel) = (
            self.backbone.clone(),
            self.device.clone(),
            self.session.clone(),
            self.cancel.clone(),
        );
        future_to_promise(async move {
            let options: TrainOptions = if options.is_undefined() || options.is_null() {
                TrainOptions::default()
            } else {
                serde_wasm_bindgen::from_value(options)
                    .map_err(|e| js_error(format!("invalid training options: {e}")))?
            };
            let head_options = options.head().map_err(js_error)?;
            // Refuse a bad fine-tuning option now, not after phase 1.
            options.fine_tune(&[1, 1]).map_err(js_error)?;
            // Snapshot the data so no borrow is held across an await. `origin[i]` is row i's
            // class and position, to name held-out images and to load images in phase 2.
            let (labels, all, origin) = {
                let session = session.borrow();
                let mut all = Embeddings::default();
                let mut origin = Vec::new();
                for (index, class) in session.classes.iter().enumerate() {
                    for (position, embedding) in class.embeddings.chunks(FEATURE_DIM).enumerate() {
                        all.push(embedding, index);
                        origin.push(Example {
                            class: index as u32,
                            position: position as u32,
                            label: index,
                        });
                    }
                }
                let labels: Vec<String> = session.classes.iter().map(|c| c.label.clone()).collect();
                (labels, all, origin)
            };
            if labels.len() < 2 {
                return Err(js_error(format!(
                    "training needs at least 2 classes with images; there {} {}",
                    if labels.len() == 1 { "is" } else { "are" },
                    labels.len()
                ))
                .into());
            }
            let split = stratified_split(&all.labels, options.validation_split, options.seed);
            let train_set = all.subset(&split.train);
            let validation_set = all.subset(&split.validation);
            let mut train_counts = vec![0; labels.len()];
            for &label in &train_set.labels {
                train_counts[label] += 1;
            }
            let plan = options.fine_tune(&train_counts).map_err(js_error)?;

            // Phase 1: the head on cached embeddings.
            let mut trainer = HeadTrainer::new(
                &train_set,
                Some(&validation_set),
                labels.len(),
                &head_options,
                &device,
            )
            .map_err(js_error)?;
            cancel.set(false);
            let steps_per_epoch = train_set.len().div_ceil(options.batch_size);
            while !trainer.is_done() {
                let report = trainer.run_epoch().await.map_err(js_error)?;
                let progress = HeadEpoch {
                    phase: "head",
                    report: &report,
                    step: report.epoch * steps_per_epoch,
                    total_steps: options.epochs * steps_per_epoch,
                };
                let _ = on_epoch.call1(&JsValue::NULL, &to_js(&progress)?);
                yield_to_event_loop().await;
                if cancel.get() {
                    break;
                }
            }
            let trained = trainer.finish().map_err(js_error)?;
            let split_info = SplitInfo {
                seed: options.seed,
                validation_fraction: options.validation_split,
            };
            let summary = TrainingSummary::of(
                &trained,
                train_set.len(),
                validation_set.len(),
                Some(split_info),
            );
            let info = ModelInfo::new(labels.clone(), options.hidden_units).with_training(summary);
            let validation_origin: Vec<Example> =
                split.validation.iter().map(|&i| origin[i]).collect();

            // Phase 2: the backbone's tail with the head, on the images.
            let mut fine_tune_report = None;
            let mut model = SessionModel::new(
                ModelFile::head_only(TrainedModel {
                    info,
                    head: trained.head,
                }),
                &backbone,
            );
            if let Some(plan) = plan.filter(|_| !cancel.get()) {
                let train_origin: Vec<Example> = split.train.iter().map(|&i| origin[i]).collect();
                let callbacks = Callbacks {
                    on_epoch: &on_epoch,
                    on_step: &on_step,
                    load: &load_images,
                    cancel: &cancel,
                };
                let (tuned, report) = fine_tune::fine_tune(
                    &backbone,
                    &model.file.model.head,
                    (&train_origin, &validation_origin),
                    labels.len(),
                    &plan,
                    callbacks,
                    &device,
                )
                .await?;
                if let Some(tuned) = tuned.filter(|t| t.best_epoch > 0) {
                    let details = FineTuneInfo::of(&tuned, &plan);
                    let head_only = model.file.model;
                    let file = ModelFile::fine_tuned(
                        TrainedModel {
                            info: head_only.info,
                            head: tuned.head,
                        },
                        tuned.tail,
                        details,
                    );
                    model = SessionModel::new(file, &backbone);
                }
                fine_tune_report = Some(report);
            }

            // The final model on the held-out images.
            let rows = match model.file.tail {
                None => head_probabilities(&model.file.model.head, &validation_set, &device)
                    .await
                    .map_err(js_error)?,
                Some(_) => {
                    probabilities_of(
                        &model.backbone,
                        &model.file.model.head,
                        &validation_origin,
                        &load_images,
                        &device,
                    )
                    .await?
                }
            };
            let validation =
                (!rows.is_empty()).then(|| evaluate(&labels, &validation_set.labels, &rows));
            let validation_examples = validation_origin
                .iter()
                .zip(rows)
                .map(|(example, probabilities)| ValidationExample {
                    class_index: example.class as usize,
                    example_index: example.position as usize,
                    predicted: argmax(&probabilities),
                    probabilities,
                })
                .collect();
            let report = to_js(&TrainReport {
                history: &trained.history,
                best_epoch: trained.best_epoch,
                stopped_early: trained.stopped_early,
                train_images: train_set.len(),
                validation_images: validation_set.len(),
                labels: &labels,
                fine_tune: fine_tune_report,
                validation,
                validation_examples,
            })?;
            session.borrow_mut().model = Some(Rc::new(model));
            Ok(report)
        })
    }

    /// Asks a running `train()` to stop at its next step or epoch.
    pub fn cancel(&self) {
        self.cancel.set(true);
    }

    /// Class probabilities of each image, `images x classes` row-major, in the model's label
    /// order (see [`Engine::labels`]).
    pub fn probabilities(&self, pixels: Vec<u8>, dims: Vec<u32>) -> Promise {
        let (device, session) = (self.device.clone(), self.session.clone());
        future_to_promise(async move {
            let model = session.borrow().model.clone().ok_or_else(|| {
                js_error("there is no trained model yet: call train() or load a model first")
            })?;
            let images = prepare_images(&pixels, &dims).map_err(js_error)?;
            let mut out: Vec<f32> = Vec::with_capacity(images.len() * model.info().labels.len());
            for batch in images.chunks(EMBED_BATCH) {
                let rows = crate::predict::class_probabilities(
                    &model.backbone,
                    &model.file.model.head,
                    batch,
                    &device,
                )
                .await
                .map_err(js_error)?;
                out.extend(rows.into_iter().flatten());
            }
            Ok(js_sys::Float32Array::from(out.as_slice()).into())
        })
    }

    /// The trained (or loaded) model's class labels.
    pub fn labels(&self) -> Result<JsValue, JsError> {
        let session = self.session.borrow();
        let model = session
            .model
            .as_ref()
            .ok_or_else(|| js_error("there is no trained model yet"))?;
        to_js(&model.info().labels)
    }

    /// Accuracy, per-class precision and recall, the confusion matrix and, for two classes,
    /// sensitivity, specificity and ROC AUC, from the model's class `probabilities`
    /// (`images x classes`, as [`Engine::probabilities`] returns them) against the truth
    /// (`actual`, label indices).
    pub fn evaluation(
        &self,
        actual: Vec<u32>,
        probabilities: Vec<f32>,
    ) -> Result<JsValue, JsError> {
        let session = self.session.borrow();
        let model = session
            .model
            .as_ref()
            .ok_or_else(|| js_error("there is no trained model yet"))?;
        let labels = &model.info().labels;
        let classes = labels.len();
        if probabilities.len() != actual.len() * classes
            || actual.iter().any(|&l| l as usize >= classes)
        {
            return Err(js_error("labels or probabilities out of range"));
        }
        let actual: Vec<usize> = actual.into_iter().map(|l| l as usize).collect();
        let rows: Vec<Vec<f32>> = probabilities.chunks(classes).map(<[f32]>::to_vec).collect();
        to_js(&evaluate(labels, &actual, &rows))
    }

    /// The model file (the same format the CLI reads and writes), as a promise of bytes. A
    /// fine-tuned model holds its backbone tail too.
    #[wasm_bindgen(js_name = exportModel)]
    pub fn export_model(&self) -> Promise {
        let session = self.session.clone();
        future_to_promise(async move {
            let model = session.borrow().model.clone().ok_or_else(|| {
                js_error("there is no trained model to export: call train() first")
            })?;
            // The file writer reads tensors synchronously, which WebGPU cannot: copy first.
            let on_cpu = model
                .file
                .copy_to(&Device::flex())
                .await
                .map_err(js_error)?;
            let bytes = on_cpu.to_bytes().map_err(js_error)?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// Loads a model file (head-only or fine-tuned); resolves to its description (labels,
    /// training summary, what was fine-tuned).
    #[wasm_bindgen(js_name = loadModel)]
    pub fn load_model(&self, bytes: Vec<u8>) -> Result<JsValue, JsError> {
        let file = ModelFile::from_bytes(bytes, "model file", &self.device).map_err(js_error)?;
        let info = to_js(&file.model.info)?;
        self.session.borrow_mut().model = Some(Rc::new(SessionModel::new(file, &self.backbone)));
        Ok(info)
    }
}
