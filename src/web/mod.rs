//! The browser facade: a thin wasm-bindgen layer over the core, run inside a Web Worker.
//!
//! No model or training logic lives here: it converts JavaScript values, keeps the session's
//! state (the examples' embeddings and the trained head) and calls the same functions the CLI
//! does. Images arrive as RGBA pixels the browser decoded; only their embeddings are kept, so
//! memory stays at about 5 KB per image however many there are.
//!
//! Every export returns `Result<_, JsError>` or a promise that rejects with an `Error`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::tensor::Device;
use image::RgbaImage;
use js_sys::{Function, Promise};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use crate::data::{EFFICIENTNET_LITE, stratified_split};
use crate::error::GraftError;
use crate::model::{EfficientNetLite0, FEATURE_DIM};
use crate::model_file::{ModelInfo, SplitInfo, TrainedModel, TrainingSummary};
use crate::predict::head_probabilities;
use crate::train::{
    Embeddings, EpochReport, Evaluation, HeadTrainer, HeadTraining, embed_batch, evaluate,
};
use crate::weights::load_backbone;

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

fn js_error(error: impl std::fmt::Display) -> JsError {
    JsError::new(&error.to_string())
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(js_error)
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

struct Session {
    classes: Vec<ClassExamples>,
    model: Option<Rc<TrainedModel>>,
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

/// `train()` options as the JavaScript API names them; unknown names are refused by the
/// JavaScript wrapper, which lists the valid ones.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct TrainOptions {
    epochs: usize,
    batch_size: usize,
    learning_rate: f64,
    validation_split: f64,
    seed: u64,
    hidden_units: Option<usize>,
    dropout: f64,
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
        }
    }
}

/// What `train()` resolves to.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TrainReport<'a> {
    history: &'a [EpochReport],
    best_epoch: usize,
    stopped_early: bool,
    train_images: usize,
    validation_images: usize,
    labels: &'a [String],
    /// The best head on the held-out images; `None` without a validation split.
    validation: Option<Evaluation>,
    /// Every held-out image with what the best head said, so an app can show the mistakes.
    validation_examples: Vec<ValidationExample>,
}

/// What `on_epoch` receives: the epoch's report and the optimiser steps done so far.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EpochProgress<'a> {
    #[serde(flatten)]
    report: &'a EpochReport,
    step: usize,
    total_steps: usize,
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

/// Index of the largest value (the first on ties).
fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > values[best] { i } else { best })
}

/// Splits concatenated RGBA pixels by `dims` (`[w0, h0, w1, h1, ...]`) and preprocesses each.
fn prepare_images(pixels: &[u8], dims: &[u32]) -> Result<Vec<Vec<f32>>, GraftError> {
    if dims.len() % 2 != 0 {
        return Err(GraftError::option(
            "dims",
            "must hold a width and a height per image",
        ));
    }
    let mut images = Vec::with_capacity(dims.len() / 2);
    let mut offset = 0usize;
    for (i, size) in dims.chunks(2).enumerate() {
        let (width, height) = (size[0], size[1]);
        let len = width as usize * height as usize * 4;
        let bytes = pixels
            .get(offset..offset + len)
            .filter(|_| len > 0)
            .ok_or_else(|| {
                GraftError::option(
                    "pixels",
                    format!("image {i} ({width}x{height}) is incomplete"),
                )
            })?;
        offset += len;
        let rgba = RgbaImage::from_raw(width, height, bytes.to_vec())
            .ok_or_else(|| GraftError::option("pixels", format!("image {i} has a wrong size")))?;
        images.push(EFFICIENTNET_LITE.prepare(&rgba));
    }
    if offset != pixels.len() {
        return Err(GraftError::option(
            "pixels",
            "more pixel data than the sizes describe",
        ));
    }
    Ok(images)
}

/// Resolves after a macrotask, so the worker can handle messages (a cancel) mid-training.
async fn yield_to_event_loop() {
    let promise = Promise::new(&mut |resolve, _reject| {
        let set_timeout = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("setTimeout"))
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok());
        match set_timeout {
            Some(set_timeout) => {
                let _ = set_timeout.call2(&JsValue::NULL, &resolve, &JsValue::from(0));
            }
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = JsFuture::from(promise).await;
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
        if embeddings.is_empty() || embeddings.len() % FEATURE_DIM != 0 {
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

    /// Trains a new head on the classes' embeddings. `on_epoch(report)` is called after every
    /// epoch; [`Engine::cancel`] stops after the current epoch, keeping the best head so far.
    pub fn train(&self, options: JsValue, on_epoch: Function) -> Promise {
        let (device, session, cancel) = (
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
            if !(0.0..1.0).contains(&options.validation_split) {
                return Err(js_error(format!(
                    "invalid validationSplit: {} (use 0 to <1, e.g. 0.15)",
                    options.validation_split
                ))
                .into());
            }
            // Snapshot the data so no borrow is held across an await.
            // `origin[i]` = (class, position in class) of row i, to name the held-out images.
            let (labels, all, origin) = {
                let session = session.borrow();
                let mut all = Embeddings::default();
                let mut origin = Vec::new();
                for (index, class) in session.classes.iter().enumerate() {
                    for (position, embedding) in class.embeddings.chunks(FEATURE_DIM).enumerate() {
                        all.push(embedding, index);
                        origin.push((index, position));
                    }
                }
                let labels: Vec<String> = session.classes.iter().map(|c| c.label.clone()).collect();
                (labels, all, origin)
            };
            let head_options = HeadTraining {
                epochs: options.epochs,
                batch_size: options.batch_size,
                learning_rate: options.learning_rate,
                seed: options.seed,
                hidden_units: options.hidden_units,
                dropout: options.dropout,
            };
            head_options.validate().map_err(js_error)?;
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
                let progress = EpochProgress {
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
            let rows = head_probabilities(&trained.head, &validation_set, &device)
                .await
                .map_err(js_error)?;
            let validation =
                (!rows.is_empty()).then(|| evaluate(&labels, &validation_set.labels, &rows));
            let validation_examples = split
                .validation
                .iter()
                .zip(rows)
                .map(|(&row, probabilities)| ValidationExample {
                    class_index: origin[row].0,
                    example_index: origin[row].1,
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
                validation,
                validation_examples,
            })?;
            session.borrow_mut().model = Some(Rc::new(TrainedModel {
                info,
                head: trained.head,
            }));
            Ok(report)
        })
    }

    /// Asks a running `train()` to stop after its current epoch.
    pub fn cancel(&self) {
        self.cancel.set(true);
    }

    /// Class probabilities of each image, `images x classes` row-major, in the model's label
    /// order (see [`Engine::labels`]).
    pub fn probabilities(&self, pixels: Vec<u8>, dims: Vec<u32>) -> Promise {
        let (backbone, device, session) = (
            self.backbone.clone(),
            self.device.clone(),
            self.session.clone(),
        );
        future_to_promise(async move {
            let model = session.borrow().model.clone().ok_or_else(|| {
                js_error("there is no trained model yet: call train() or load a model first")
            })?;
            let images = prepare_images(&pixels, &dims).map_err(js_error)?;
            let mut out: Vec<f32> = Vec::with_capacity(images.len() * model.info.labels.len());
            for batch in images.chunks(EMBED_BATCH) {
                let rows =
                    crate::predict::class_probabilities(&backbone, &model.head, batch, &device)
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
        to_js(&model.info.labels)
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
        let classes = model.info.labels.len();
        if probabilities.len() != actual.len() * classes
            || actual.iter().any(|&l| l as usize >= classes)
        {
            return Err(js_error("labels or probabilities out of range"));
        }
        let actual: Vec<usize> = actual.into_iter().map(|l| l as usize).collect();
        let rows: Vec<Vec<f32>> = probabilities.chunks(classes).map(<[f32]>::to_vec).collect();
        to_js(&evaluate(&model.info.labels, &actual, &rows))
    }

    /// The model file (the same format the CLI reads and writes), as a promise of bytes.
    #[wasm_bindgen(js_name = exportModel)]
    pub fn export_model(&self) -> Promise {
        let session = self.session.clone();
        future_to_promise(async move {
            let model = session.borrow().model.clone().ok_or_else(|| {
                js_error("there is no trained model to export: call train() first")
            })?;
            let on_cpu = TrainedModel {
                info: model.info.clone(),
                head: model
                    .head
                    .copy_to(&Device::flex())
                    .await
                    .map_err(js_error)?,
            };
            let bytes = on_cpu.to_bytes().map_err(js_error)?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// Loads a model file; resolves to its description (labels, training summary).
    #[wasm_bindgen(js_name = loadModel)]
    pub fn load_model(&self, bytes: Vec<u8>) -> Result<JsValue, JsError> {
        let model =
            TrainedModel::from_bytes(bytes, "model file", &self.device).map_err(js_error)?;
        let info = to_js(&model.info)?;
        self.session.borrow_mut().model = Some(Rc::new(model));
        Ok(info)
    }
}
