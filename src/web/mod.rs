//! The browser facade: a thin wasm-bindgen layer over the core, run inside a Web Worker.
//!
//! It converts JavaScript values, keeps the session's state (the examples, by the caller's
//! ids, with their embeddings: [`ExampleStore`]; the trained model) and runs the same recipe
//! as the CLI ([`crate::train::session::train`]). Images arrive as RGBA pixels the browser
//! decoded; only their embeddings are kept. Fine-tuning asks the worker for images again, by
//! example id, a batch at a time ([`training`]).
//!
//! Every export returns a value or throws an `Error` whose `code` names the kind of failure.

mod detection;
mod interop;
mod pretrained;
mod training;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::tensor::Device;
use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::data::gate::check_dimensions;
use crate::data::{EFFICIENTNET_LITE, Region};
use crate::error::GraftError;
use crate::explain::overlay::heat_rgba;
use crate::explain::{Resolution, Target, explain, map_region};
use crate::model::{EfficientNetLite0, FEATURE_DIM};
use crate::model_file::ModelFile;
use crate::predict::Prediction;
use crate::train::{Embedder, ExampleStore, TrainOptions, evaluate};
use interop::{js_error, prepare_images, to_js};
use pretrained::Pretrained;

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

/// The image gate, before the browser reads or decodes a file (see
/// [`crate::data::gate::check_image_file`]): `header` is its first bytes (64 KiB suffice),
/// `file_bytes` its size.
#[wasm_bindgen(js_name = checkImageFile)]
pub fn check_image_file(header: &[u8], file_bytes: f64, name: &str) -> Result<(), JsValue> {
    // A Blob's size is a JS number: a negative or non-finite one is no file's (refused as too
    // big).
    let bytes = if file_bytes.is_finite() && file_bytes >= 0.0 {
        file_bytes as u64
    } else {
        u64::MAX
    };
    crate::data::gate::check_image_file(header, bytes, name).map_err(js_error)
}

/// A model ready to predict: its file and, when it was fine-tuned, its backbone (the pretrained
/// one with the tail grafted on), as a module (explanations) and as an embedder (predictions).
/// A head-only model shares the pretrained backbone's.
struct SessionModel {
    file: ModelFile,
    tuned: Option<Rc<EfficientNetLite0>>,
    embedder: Rc<Embedder>,
}

impl SessionModel {
    fn new(file: ModelFile, pretrained: &Pretrained, device: &Device) -> crate::Result<Self> {
        let (tuned, embedder) = match file.tail {
            Some(_) => {
                let backbone = file.backbone((*pretrained.module()?).clone());
                let embedder = Rc::new(Embedder::new(&backbone, device)?);
                (Some(Rc::new(backbone)), embedder)
            }
            None => (None, pretrained.embedder().clone()),
        };
        Ok(Self {
            file,
            tuned,
            embedder,
        })
    }

    /// The backbone it explains with.
    fn backbone(&self, pretrained: &Pretrained) -> crate::Result<Rc<EfficientNetLite0>> {
        match &self.tuned {
            Some(backbone) => Ok(backbone.clone()),
            None => pretrained.module(),
        }
    }

    fn labels(&self) -> &[String] {
        &self.file.model.info.labels
    }
}

/// The session's model, or the error that says there is none yet.
fn current_model(session: &RefCell<Session>) -> Result<Rc<SessionModel>, JsValue> {
    session
        .borrow()
        .model
        .clone()
        .ok_or_else(|| js_error(GraftError::NoModel))
}

/// What a session holds between calls.
#[derive(Default)]
struct Session {
    examples: ExampleStore,
    model: Option<Rc<SessionModel>>,
}

/// A Graft session: a backbone on one device, the user's examples and the trained model.
#[wasm_bindgen]
pub struct Engine {
    device: Device,
    backend: &'static str,
    pretrained: Rc<Pretrained>,
    session: Rc<RefCell<Session>>,
    /// Object detection's examples and model, once the page adds boxes or loads a detector.
    detection: Rc<RefCell<Option<detection::DetectionSession>>>,
    cancel: Rc<Cell<bool>>,
}

/// What [`Engine::explain`] resolves to, less its typed arrays.
#[derive(serde::Serialize)]
struct ExplainReply<'a> {
    predictions: Vec<Prediction>,
    label: &'a str,
    score: f32,
    rows: usize,
    cols: usize,
    region: Region,
}

/// The training options from a JavaScript object. Read as JSON first: serde-wasm-bindgen reads
/// a struct's fields by name and never sees the others, so unknown names would pass silently.
fn train_options(options: JsValue) -> Result<TrainOptions, JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok(TrainOptions::default());
    }
    let invalid = |e: String| js_error(GraftError::option("training options", e));
    let json: serde_json::Value =
        serde_wasm_bindgen::from_value(options).map_err(|e| invalid(e.to_string()))?;
    serde_json::from_value(json).map_err(|e| invalid(e.to_string()))
}

fn strings(values: js_sys::Array) -> Result<Vec<String>, JsValue> {
    values
        .iter()
        .map(|v| {
            v.as_string().ok_or_else(|| {
                js_error(GraftError::option("ids", "ids and hashes must be strings"))
            })
        })
        .collect()
}

#[wasm_bindgen]
impl Engine {
    /// Starts on `backend` (`"webgpu"` or `"cpu"`) from the backbone's safetensors bytes, checked
    /// in full; see [`Pretrained`] for what is built when.
    pub async fn create(weights: Vec<u8>, backend: String) -> Result<Engine, JsValue> {
        let (device, backend) = match backend.as_str() {
            #[cfg(feature = "webgpu")]
            "webgpu" => {
                let device = Device::wgpu_options().init_async().await.map_err(|e| {
                    js_error(GraftError::DeviceUnavailable {
                        name: "webgpu".into(),
                        reason: e.to_string(),
                    })
                })?;
                (device, "webgpu")
            }
            #[cfg(not(feature = "webgpu"))]
            "webgpu" => {
                return Err(js_error(GraftError::DeviceUnavailable {
                    name: "webgpu".into(),
                    reason: "this is the CPU engine (graft_engine_cpu), built without WebGPU"
                        .into(),
                }));
            }
            "cpu" => (Device::flex(), "cpu"),
            other => {
                return Err(js_error(GraftError::option(
                    "backend",
                    format!("'{other}' (valid: 'webgpu', 'cpu')"),
                )));
            }
        };
        let pretrained = Pretrained::load(weights, &device).map_err(js_error)?;
        Ok(Engine {
            device,
            backend,
            pretrained: Rc::new(pretrained),
            session: Rc::default(),
            detection: Rc::default(),
            cancel: Rc::new(Cell::new(false)),
        })
    }

    /// The backend actually running: `"webgpu"` or `"cpu"`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.to_string()
    }

    /// Embeddings of images (concatenated RGBA `pixels`, `dims` = `[w, h, ...]`) by the
    /// pretrained backbone, `images x 1280` row-major: what [`Engine::add_embeddings`] adds as
    /// examples. Stores nothing, so any engine of a pool can embed for another.
    pub fn embed(&self, pixels: Vec<u8>, dims: Vec<u32>) -> Promise {
        let embedder = self.pretrained.embedder().clone();
        future_to_promise(async move {
            let images = prepare_images(&pixels, &dims).map_err(js_error)?;
            let mut embeddings = Vec::with_capacity(images.len() * FEATURE_DIM);
            for batch in images.chunks(EMBED_BATCH) {
                embeddings.extend(embedder.features(batch).await.map_err(js_error)?);
            }
            Ok(js_sys::Float32Array::from(embeddings.as_slice()).into())
        })
    }

    /// Adds examples from embeddings (`n x 1280`, from [`Engine::embed`] here or in another
    /// engine, or saved earlier), with their `ids` and content `hashes`, to the class `label`.
    #[wasm_bindgen(js_name = addEmbeddings)]
    pub fn add_embeddings(
        &self,
        label: String,
        embeddings: Vec<f32>,
        ids: js_sys::Array,
        hashes: js_sys::Array,
    ) -> Result<(), JsValue> {
        let (ids, hashes) = (strings(ids)?, strings(hashes)?);
        self.session
            .borrow_mut()
            .examples
            .add(&label, &ids, &hashes, &embeddings)
            .map_err(js_error)
    }

    /// Refuses `count` more images for the class `label` when the examples could then no
    /// longer be trained on (code `TOO_LARGE`): asked before they are decoded and embedded.
    #[wasm_bindgen(js_name = checkRoom)]
    pub fn check_room(&self, label: &str, count: usize) -> Result<(), JsValue> {
        self.session
            .borrow()
            .examples
            .check_room(label, count)
            .map_err(js_error)
    }

    /// The example already holding the image with this content hash, described for a
    /// message (`'id' in class 'label'`), or `undefined`.
    #[wasm_bindgen(js_name = duplicateOf)]
    pub fn duplicate_of(&self, hash: &str) -> Option<String> {
        self.session.borrow().examples.duplicate_of(hash)
    }

    /// `[{ label, count }]` in the order classes were created.
    pub fn classes(&self) -> Result<JsValue, JsValue> {
        to_js(&self.session.borrow().examples.classes())
    }

    /// Removes a class and its examples; returns the removed examples' ids.
    #[wasm_bindgen(js_name = removeClass)]
    pub fn remove_class(&self, label: &str) -> Result<Vec<String>, JsValue> {
        let mut session = self.session.borrow_mut();
        session.examples.remove_class(label).map_err(js_error)
    }

    #[wasm_bindgen(js_name = renameClass)]
    pub fn rename_class(&self, from: &str, to: &str) -> Result<(), JsValue> {
        let mut session = self.session.borrow_mut();
        session.examples.rename_class(from, to).map_err(js_error)
    }

    /// Removes examples by id (all must exist).
    #[wasm_bindgen(js_name = removeExamples)]
    pub fn remove_examples(&self, ids: js_sys::Array) -> Result<(), JsValue> {
        let ids = strings(ids)?;
        let mut session = self.session.borrow_mut();
        session.examples.remove_examples(&ids).map_err(js_error)
    }

    /// Runs the training recipe on the examples (the CLI's, with the same options, parsed
    /// from `options`). `on_progress(event)` receives every step; `load_images(ids)` is asked
    /// for images when fine-tuning; [`Engine::cancel`] stops at the next step, keeping the
    /// best model so far. Resolves to the report.
    pub fn train(&self, options: JsValue, on_progress: Function, load_images: Function) -> Promise {
        let (pretrained, device, session, cancel) = (
            self.pretrained.clone(),
            self.device.clone(),
            self.session.clone(),
            self.cancel.clone(),
        );
        future_to_promise(async move {
            let options = train_options(options)?;
            // A snapshot, so that no borrow is held across an await.
            let set = session.borrow().examples.training_set();
            cancel.set(false);
            let backbone = pretrained.module().map_err(js_error)?;
            let trained = training::run(
                &set,
                &options,
                training::Callbacks {
                    on_progress: &on_progress,
                    load_images: &load_images,
                    cancel: &cancel,
                },
                &backbone,
                &device,
            )
            .await
            .map_err(js_error)?;
            let report = to_js(&trained.report)?;
            let model = SessionModel::new(trained.model, &pretrained, &device).map_err(js_error)?;
            session.borrow_mut().model = Some(Rc::new(model));
            Ok(report)
        })
    }

    /// Asks a running `train()` to stop at its next step.
    pub fn cancel(&self) {
        self.cancel.set(true);
    }

    /// Class probabilities of each image, `images x classes` row-major, in the model's label
    /// order (see [`Engine::labels`]).
    pub fn probabilities(&self, pixels: Vec<u8>, dims: Vec<u32>) -> Promise {
        let (device, session) = (self.device.clone(), self.session.clone());
        future_to_promise(async move {
            let model = current_model(&session)?;
            let images = prepare_images(&pixels, &dims).map_err(js_error)?;
            let mut out: Vec<f32> = Vec::with_capacity(images.len() * model.labels().len());
            for batch in images.chunks(EMBED_BATCH) {
                let rows = crate::predict::class_probabilities(
                    &model.embedder,
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

    /// One image's `top_k` predictions and the heat map of a class: the predicted one, or
    /// `label`; 14x14 with `fine`, else 7x7. Resolves to `{ predictions, label, score, heatmap: Float32Array, rows, cols,
    /// region, colours: Uint8ClampedArray }`, where `colours` is the map's cells as RGBA (the
    /// core's colour map) and `region` the rectangle of the image the map covers.
    pub fn explain(
        &self,
        image: web_sys::ImageData,
        label: Option<String>,
        top_k: usize,
        fine: bool,
    ) -> Promise {
        let (device, session, pretrained) = (
            self.device.clone(),
            self.session.clone(),
            self.pretrained.clone(),
        );
        future_to_promise(async move {
            let model = current_model(&session)?;
            let backbone = model.backbone(&pretrained).map_err(js_error)?;
            let (width, height) = (image.width(), image.height());
            check_dimensions(width, height, "image").map_err(js_error)?;
            let rgba =
                image::RgbaImage::from_raw(width, height, image.data().0).ok_or_else(|| {
                    js_error(GraftError::option(
                        "image",
                        "its pixels do not match its size",
                    ))
                })?;
            let labels = model.labels();
            let target = Target::from_label(label.as_deref(), labels).map_err(js_error)?;
            let prepared = [EFFICIENTNET_LITE.prepare(&rgba)];
            let head = &model.file.model.head;
            let resolution = Resolution::fine_if(fine);
            let run = explain(
                &backbone, head, labels, &prepared, target, resolution, &device,
            );
            let explained = run.await.map_err(js_error)?.remove(0);
            let result = to_js(&ExplainReply {
                predictions: explained.top_k(labels, top_k.max(1)),
                label: &explained.map.label,
                score: explained.map.score,
                rows: explained.map.rows,
                cols: explained.map.cols,
                region: map_region(width, height, resolution),
            })?;
            let set =
                |key: &str, value: &JsValue| js_sys::Reflect::set(&result, &key.into(), value);
            set(
                "heatmap",
                &js_sys::Float32Array::from(explained.map.heatmap.as_slice()).into(),
            )?;
            let colours = heat_rgba(&explained.map);
            set(
                "colours",
                &js_sys::Uint8ClampedArray::from(colours.as_slice()).into(),
            )?;
            Ok(result)
        })
    }

    /// The trained (or loaded) model's class labels.
    pub fn labels(&self) -> Result<JsValue, JsValue> {
        let session = self.session.borrow();
        let model = session
            .model
            .as_ref()
            .ok_or_else(|| js_error(GraftError::NoModel))?;
        to_js(&model.labels())
    }

    /// Accuracy, per-class precision and recall, the confusion matrix and, for two classes,
    /// sensitivity, specificity and ROC AUC, from the model's class `probabilities`
    /// (`images x classes`, as [`Engine::probabilities`] returns them) against the truth
    /// (`actual`, label indices).
    pub fn evaluation(
        &self,
        actual: Vec<u32>,
        probabilities: Vec<f32>,
    ) -> Result<JsValue, JsValue> {
        let session = self.session.borrow();
        let model = session
            .model
            .as_ref()
            .ok_or_else(|| js_error(GraftError::NoModel))?;
        let labels = model.labels();
        let classes = labels.len();
        if probabilities.len() != actual.len() * classes
            || actual.iter().any(|&l| l as usize >= classes)
        {
            return Err(js_error(GraftError::option(
                "evaluation",
                "labels or probabilities out of range",
            )));
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
            let model = current_model(&session)?;
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

    /// Loads a model file (head-only or fine-tuned); returns its description (labels,
    /// training summary, what was fine-tuned).
    #[wasm_bindgen(js_name = loadModel)]
    pub fn load_model(&self, bytes: Vec<u8>) -> Result<JsValue, JsValue> {
        let file = ModelFile::from_bytes(bytes, "model file", &self.device).map_err(js_error)?;
        let info = to_js(&file.model.info)?;
        let model = SessionModel::new(file, &self.pretrained, &self.device).map_err(js_error)?;
        self.session.borrow_mut().model = Some(Rc::new(model));
        Ok(info)
    }
}
