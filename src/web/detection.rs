//! Object detection in the engine: the same core as `graft train --task detect`. Images arrive
//! decoded with their boxes (image pixels, a class name each) and are kept letterboxed, for
//! training (or, marked so, for scoring each epoch) as the CLI keeps a split's.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::tensor::Device;
use image::RgbaImage;
use js_sys::{Function, Promise};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::interop::{js_error, rgba_images, to_js, yield_to_event_loop};
use super::training::WorkerObserver;
use super::{Engine, strings, train_options};
use crate::detect::boxes::BoundingBox;
use crate::detect::dataset::{
    FolderListing, LabelledBox, LabelledImage, ListedDataset, checked_box,
};
use crate::detect::inference::{Found, Scoring, detect_images};
use crate::detect::metrics::DetectionReport;
use crate::detect::model_file::DetectorFile;
use crate::detect::train::{
    DetectEpoch, DetectEvent, DetectObserver, DetectPlan, DetectionSet, EVALUATION_MIN_SCORE,
    train_detector,
};
use crate::error::{GraftError, Result};
use crate::model::EfficientNetLite0;
use crate::train::TrainOptions;

/// A detection session's examples (those to train on, those held out to score each epoch)
/// and model.
pub struct DetectionSession {
    side: usize,
    labels: Vec<String>,
    train: DetectionSet,
    validation: DetectionSet,
    pub model: Option<Rc<DetectorFile>>,
}

/// One image's boxes as the page gives them: image pixels and class names.
pub struct PageBoxes<'a> {
    pub corners: &'a [f32],
    pub labels: &'a [String],
}

/// The boxes of `image` as fractions of it, checked by the same rule as label files; `name`
/// says which image in errors.
fn fractions(image: &RgbaImage, boxes: &PageBoxes, name: &str) -> Result<Vec<BoundingBox>> {
    let (w, h) = (image.width() as f64, image.height() as f64);
    boxes
        .corners
        .chunks_exact(4)
        .enumerate()
        .map(|(i, c)| {
            checked_box(
                c[0] as f64 / w,
                c[1] as f64 / h,
                c[2] as f64 / w,
                c[3] as f64 / h,
            )
            .map_err(|reason| {
                GraftError::option("boxes", format!("{name}, box {}: {reason}", i + 1))
            })
        })
        .collect()
}

impl DetectionSession {
    pub fn new(side: usize) -> Result<Self> {
        crate::detect::model_file::check_input_size(side)
            .map_err(|reason| GraftError::option("inputSize", reason))?;
        Ok(Self {
            side,
            labels: Vec::new(),
            train: DetectionSet::new(side),
            validation: DetectionSet::new(side),
            model: None,
        })
    }

    pub fn side(&self) -> usize {
        self.side
    }

    /// Each class and how many boxes it has, in the order the classes appeared.
    pub fn classes(&self) -> Vec<ClassBoxes> {
        let mut counts = vec![0; self.labels.len()];
        for class in self.train.classes().chain(self.validation.classes()) {
            counts[class] += 1;
        }
        self.labels
            .iter()
            .zip(counts)
            .map(|(label, count)| ClassBoxes {
                label: label.clone(),
                count,
            })
            .collect()
    }

    /// Adds images with their boxes, to train on or (`validation`) to score each epoch; every
    /// box is checked before any image is kept, so a bad one adds nothing.
    pub fn add(
        &mut self,
        images: Vec<RgbaImage>,
        boxes: &[PageBoxes<'_>],
        ids: Vec<String>,
        validation: bool,
    ) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        if let Some(id) = ids.iter().find(|id| {
            self.train.contains(id) || self.validation.contains(id) || !seen.insert(id.as_str())
        }) {
            return Err(GraftError::AlreadyExists {
                what: "example",
                name: id.clone(),
            });
        }
        let kept = self.train.len() + self.validation.len();
        DetectionSet::check_room(self.side, kept + images.len(), "examples")?;
        let set = match validation {
            true => &mut self.validation,
            false => &mut self.train,
        };
        let mut labels = self.labels.clone();
        let mut checked = Vec::with_capacity(images.len());
        for ((image, boxes), id) in images.iter().zip(boxes).zip(&ids) {
            let corners = fractions(image, boxes, id)?;
            let truth: Vec<LabelledBox> = corners
                .into_iter()
                .zip(boxes.labels)
                .map(|(bbox, label)| {
                    let class = labels.iter().position(|l| l == label).unwrap_or_else(|| {
                        labels.push(label.clone());
                        labels.len() - 1
                    });
                    LabelledBox { class, bbox }
                })
                .collect();
            checked.push(truth);
        }
        for ((image, truth), id) in images.iter().zip(checked).zip(ids) {
            set.add(id, image, &truth);
        }
        self.labels = labels;
        Ok(())
    }

    /// Removes examples by id (unknown ids are ignored); classes keep their names.
    pub fn remove(&mut self, ids: &[String]) {
        self.train.remove(ids);
        self.validation.remove(ids);
    }

    /// Trains a new detector on every example; it replaces the model when done.
    pub async fn train(
        &mut self,
        options: &TrainOptions,
        on_progress: &Function,
        cancel: &Cell<bool>,
        backbone: &EfficientNetLite0,
        device: &Device,
    ) -> Result<TrainReport> {
        if self.labels.is_empty() || self.train.is_empty() {
            return Err(GraftError::option(
                "examples",
                "add images with boxes before training",
            ));
        }
        let plan = DetectPlan::new(options, self.side)?;
        let mut observer = WorkerObserver {
            on_progress,
            cancel,
        };
        let trained = train_detector(
            backbone,
            &self.train,
            Some(&self.validation),
            &self.labels,
            &plan,
            device,
            &mut observer,
        )
        .await?;
        self.model = Some(Rc::new(DetectorFile::new(
            self.labels.clone(),
            self.side,
            trained.head,
            trained.tail,
        )));
        Ok(TrainReport {
            plan,
            history: trained.history,
            evaluation: trained.evaluation,
            stopped: trained.stopped,
        })
    }
}

/// A class of a detection session, as `classes()` lists it: `count` is its boxes.
#[derive(Serialize)]
pub struct ClassBoxes {
    label: String,
    count: usize,
}

/// What `train` resolves to in detection mode.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainReport {
    plan: DetectPlan,
    history: Vec<DetectEpoch>,
    /// The detector's report on the held-out examples, as `evaluate` gives it (`None` without
    /// them).
    evaluation: Option<DetectionReport>,
    stopped: bool,
}

impl DetectObserver for WorkerObserver<'_> {
    fn on_event(&mut self, event: DetectEvent<'_>) {
        self.post(&event);
    }

    fn should_stop(&mut self) -> bool {
        self.cancel.get()
    }

    async fn pause(&mut self) {
        yield_to_event_loop().await;
    }
}

/// COCO-style mAP of the model on images with their true boxes (classes by name; a name the
/// model does not know is an error).
pub async fn evaluate_model(
    model: &DetectorFile,
    images: &[RgbaImage],
    boxes: &[PageBoxes<'_>],
    backbone: &EfficientNetLite0,
    device: &Device,
) -> Result<DetectionReport> {
    let labels = &model.info.labels;
    let mut truth = Vec::with_capacity(images.len());
    for (i, (image, page)) in images.iter().zip(boxes).enumerate() {
        let name = format!("image {}", i + 1);
        let corners = fractions(image, page, &name)?;
        let mut image_truth = Vec::with_capacity(corners.len());
        for (bbox, label) in corners.into_iter().zip(page.labels) {
            let class = labels.iter().position(|l| l == label).ok_or_else(|| {
                GraftError::option(
                    "boxes",
                    format!(
                        "{name}: the model has no class '{label}' (it has {})",
                        labels.join(", ")
                    ),
                )
            })?;
            image_truth.push(LabelledBox { class, bbox });
        }
        truth.push(image_truth);
    }
    let detections = detect_images(model, images, EVALUATION_MIN_SCORE, backbone, device).await?;
    let mut scoring = Scoring::default();
    for ((image, truth), found) in images.iter().zip(&truth).zip(detections) {
        scoring.add(truth, image.width(), image.height(), found);
    }
    scoring.report(labels)
}

/// The page's boxes: `counts[i]` boxes for image `i`, their corners flattened in `corners`
/// (4 numbers each) and their class names in `labels`.
fn page_boxes<'a>(
    corners: &'a [f32],
    counts: &[u32],
    labels: &'a [String],
    images: usize,
) -> std::result::Result<Vec<PageBoxes<'a>>, JsValue> {
    // In 64 bits: a page's counts cannot wrap the sum past the checks below.
    let total = counts.iter().map(|&c| u64::from(c)).sum::<u64>();
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    if counts.len() != images
        || corners.len() / 4 != total
        || !corners.len().is_multiple_of(4)
        || labels.len() != total
    {
        return Err(js_error(GraftError::option(
            "boxes",
            "one count per image, four corners and a label per box",
        )));
    }
    let mut at = 0;
    Ok(counts
        .iter()
        .map(|&count| {
            let count = count as usize;
            let boxes = PageBoxes {
                corners: &corners[4 * at..4 * (at + count)],
                labels: &labels[at..at + count],
            };
            at += count;
            boxes
        })
        .collect())
}

/// `[{ label, count }]` of a session; none before the first example.
fn classes_of(session: Option<&DetectionSession>) -> std::result::Result<JsValue, JsValue> {
    to_js(&session.map(DetectionSession::classes).unwrap_or_default())
}

/// The session's detector, or the error that says there is none yet.
fn current_detector(
    session: &RefCell<Option<DetectionSession>>,
) -> std::result::Result<Rc<DetectorFile>, JsValue> {
    session
        .borrow()
        .as_ref()
        .and_then(|s| s.model.clone())
        .ok_or_else(|| js_error(GraftError::NoModel))
}

#[wasm_bindgen]
impl Engine {
    /// Adds images (concatenated RGBA `pixels`, `dims` = `[w, h, ...]`) with their boxes (see
    /// [`page_boxes`]) and `ids`, for a detector of `input_size` pixels (fixed by the first
    /// call); `validation` holds them out to score each training epoch. Returns the classes,
    /// `[{ label, count }]` (count: boxes).
    #[wasm_bindgen(js_name = addDetectionExamples)]
    #[allow(clippy::too_many_arguments)] // flat arrays: what crosses from JavaScript cheaply
    pub fn add_detection_examples(
        &self,
        pixels: Vec<u8>,
        dims: Vec<u32>,
        corners: Vec<f32>,
        counts: Vec<u32>,
        labels: js_sys::Array,
        ids: js_sys::Array,
        input_size: usize,
        validation: bool,
    ) -> std::result::Result<JsValue, JsValue> {
        let (labels, ids) = (strings(labels)?, strings(ids)?);
        let images = rgba_images(&pixels, &dims).map_err(js_error)?;
        let boxes = page_boxes(&corners, &counts, &labels, images.len())?;
        if ids.len() != images.len() {
            return Err(js_error(GraftError::option("ids", "one id per image")));
        }
        let mut session = self.detection.borrow_mut();
        if let Some(side) = session.as_ref().map(DetectionSession::side)
            && side != input_size
        {
            return Err(js_error(GraftError::option(
                "inputSize",
                format!("{input_size}: this session's detector takes {side} px"),
            )));
        }
        if session.is_none() {
            *session = Some(DetectionSession::new(input_size).map_err(js_error)?);
        }
        let current = session.as_mut().expect("set above");
        current
            .add(images, &boxes, ids, validation)
            .map_err(js_error)?;
        to_js(&current.classes())
    }

    /// Removes detection examples by id; returns the classes as `addDetectionExamples` does.
    #[wasm_bindgen(js_name = removeDetectionExamples)]
    pub fn remove_detection_examples(
        &self,
        ids: js_sys::Array,
    ) -> std::result::Result<JsValue, JsValue> {
        let ids = strings(ids)?;
        let mut session = self.detection.borrow_mut();
        if let Some(current) = session.as_mut() {
            current.remove(&ids);
        }
        classes_of(session.as_ref())
    }

    /// `[{ label, count }]` (count: boxes), in the order the classes appeared.
    #[wasm_bindgen(js_name = detectionClasses)]
    pub fn detection_classes(&self) -> std::result::Result<JsValue, JsValue> {
        classes_of(self.detection.borrow().as_ref())
    }

    /// Trains a detector on the examples (options as `train`'s); `on_progress(event)` gets
    /// every step and epoch; [`Engine::cancel`] stops at the next step.
    #[wasm_bindgen(js_name = trainDetector)]
    pub fn train_detector(&self, options: JsValue, on_progress: Function) -> Promise {
        let (pretrained, device, session, cancel) = (
            self.pretrained.clone(),
            self.device.clone(),
            self.detection.clone(),
            self.cancel.clone(),
        );
        future_to_promise(async move {
            let options = train_options(options)?;
            let backbone = pretrained.module().map_err(js_error)?;
            let mut current = session.borrow_mut().take().ok_or_else(|| {
                js_error(GraftError::option(
                    "examples",
                    "add images with boxes before training",
                ))
            })?;
            cancel.set(false);
            let trained = current
                .train(&options, &on_progress, &cancel, &backbone, &device)
                .await;
            *session.borrow_mut() = Some(current);
            to_js(&trained.map_err(js_error)?)
        })
    }

    /// Each image's detections scoring at least `min_score`: `[[{ label, score, box }]]`, boxes
    /// in the image's pixels.
    pub fn detect(&self, pixels: Vec<u8>, dims: Vec<u32>, min_score: f32) -> Promise {
        let (pretrained, device, session) = (
            self.pretrained.clone(),
            self.device.clone(),
            self.detection.clone(),
        );
        future_to_promise(async move {
            if !(0.0..=1.0).contains(&min_score) {
                return Err(js_error(GraftError::option(
                    "minScore",
                    format!("{min_score} (use 0 to 1)"),
                )));
            }
            let images = rgba_images(&pixels, &dims).map_err(js_error)?;
            let backbone = pretrained.module().map_err(js_error)?;
            let model = current_detector(&session)?;
            let found = detect_images(&model, &images, min_score, &backbone, &device)
                .await
                .map_err(js_error)?;
            let labels = &model.info.labels;
            let reply: Vec<Vec<Found>> = found
                .iter()
                .map(|image| image.iter().map(|d| Found::new(d, labels)).collect())
                .collect();
            to_js(&reply)
        })
    }

    /// COCO-style mAP of the detector on images with their true boxes: the CLI's `graft eval`
    /// report.
    #[wasm_bindgen(js_name = evaluateDetector)]
    pub fn evaluate_detector(
        &self,
        pixels: Vec<u8>,
        dims: Vec<u32>,
        corners: Vec<f32>,
        counts: Vec<u32>,
        labels: js_sys::Array,
    ) -> Promise {
        let (pretrained, device, session) = (
            self.pretrained.clone(),
            self.device.clone(),
            self.detection.clone(),
        );
        future_to_promise(async move {
            let labels = strings(labels)?;
            let images = rgba_images(&pixels, &dims).map_err(js_error)?;
            let boxes = page_boxes(&corners, &counts, &labels, images.len())?;
            let backbone = pretrained.module().map_err(js_error)?;
            let model = current_detector(&session)?;
            let report = evaluate_model(&model, &images, &boxes, &backbone, &device)
                .await
                .map_err(js_error)?;
            to_js(&report)
        })
    }

    /// The detector's file, the one `graft predict` and `graft eval` read.
    #[wasm_bindgen(js_name = exportDetector)]
    pub fn export_detector(&self) -> Promise {
        let session = self.detection.clone();
        future_to_promise(async move {
            let model = current_detector(&session)?.copy_to(&Device::flex()).await;
            let bytes = model.and_then(|m| m.to_bytes()).map_err(js_error)?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// Loads a detector file; returns its description. Examples added so far stay if they were
    /// added at its input size, and are dropped otherwise (they could not train it).
    #[wasm_bindgen(js_name = loadDetector)]
    pub fn load_detector(&self, bytes: Vec<u8>) -> std::result::Result<JsValue, JsValue> {
        let file = DetectorFile::from_bytes(bytes, "model file", &self.device).map_err(js_error)?;
        let info = to_js(&file.info)?;
        let mut session = self.detection.borrow_mut();
        let side = file.info.input_size;
        if session.as_ref().is_none_or(|s| s.side() != side) {
            *session = Some(DetectionSession::new(side).map_err(js_error)?);
        }
        session.as_mut().expect("set above").model = Some(Rc::new(file));
        Ok(info)
    }

    /// Reads a YOLO dataset folder the page was given: `files` is `[{ path, text? }]`, every
    /// file's relative path with the text of its `data.yaml` and label files. Resolves to the
    /// classes and the train and val images' boxes (fractions of the image), or the error
    /// that names the file and line at fault.
    #[wasm_bindgen(js_name = readYoloFolder)]
    pub fn read_yolo_folder(&self, files: JsValue) -> std::result::Result<JsValue, JsValue> {
        #[derive(serde::Deserialize)]
        struct ListedFile {
            path: String,
            text: Option<String>,
        }
        let files: Vec<ListedFile> = serde_wasm_bindgen::from_value(files).map_err(|e| {
            js_error(GraftError::option(
                "files",
                format!("[{{ path, text? }}]: {e}"),
            ))
        })?;
        let mut listing = FolderListing::default();
        for file in files {
            listing.add(&file.path, file.text);
        }
        let dataset = listing.read_dataset().map_err(js_error)?;
        to_js(&YoloFolder::new(&dataset))
    }
}

/// A YOLO folder as the page takes it: boxes named by class, in fractions of the image.
#[derive(Serialize)]
struct YoloFolder<'a> {
    yaml: String,
    names: &'a [String],
    train: Vec<YoloImage<'a>>,
    val: Vec<YoloImage<'a>>,
}

#[derive(Serialize)]
struct YoloImage<'a> {
    path: String,
    boxes: Vec<YoloBox<'a>>,
}

#[derive(Serialize)]
struct YoloBox<'a> {
    label: &'a str,
    #[serde(rename = "box")]
    corners: [f32; 4],
}

impl<'a> YoloFolder<'a> {
    fn new(dataset: &'a ListedDataset) -> Self {
        let images = |split: &[LabelledImage]| {
            split
                .iter()
                .map(|image| YoloImage {
                    path: image.image.display().to_string(),
                    boxes: image
                        .boxes
                        .iter()
                        .map(|b| YoloBox {
                            label: &dataset.names[b.class],
                            corners: [b.bbox.x0, b.bbox.y0, b.bbox.x1, b.bbox.y1],
                        })
                        .collect(),
                })
                .collect()
        };
        Self {
            yaml: dataset.yaml.display().to_string(),
            names: &dataset.names,
            train: images(&dataset.train),
            val: images(&dataset.val),
        }
    }
}
