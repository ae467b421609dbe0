//! The recipe driven from the worker: progress posted to JavaScript, images loaded by example
//! id through the worker (which decodes a batch at a time, so memory stays bounded), a cancel
//! flag checked between steps, and the event loop given a turn between units of work.

use std::cell::Cell;

use burn::tensor::Device;
use image::RgbaImage;
use js_sys::Function;
use wasm_bindgen::JsValue;

use super::interop::{load_images, to_js, yield_to_event_loop};
use crate::error::Result;
use crate::model::EfficientNetLite0;
use crate::train::{ImageSource, Observer, TrainEvent, TrainOptions, Trained, TrainingSet};

/// The JavaScript side of a training run.
pub struct Callbacks<'a> {
    pub on_progress: &'a Function,
    pub load_images: &'a Function,
    pub cancel: &'a Cell<bool>,
}

/// Training's progress to the page, and the page's cancel back: for classifiers and detectors.
pub struct WorkerObserver<'a> {
    pub on_progress: &'a Function,
    pub cancel: &'a Cell<bool>,
}

impl WorkerObserver<'_> {
    /// Posts an event; a throwing callback is the page's bug, and training goes on.
    pub fn post(&self, event: &impl serde::Serialize) {
        if let Ok(value) = to_js(event) {
            let _ = self.on_progress.call1(&JsValue::NULL, &value);
        }
    }
}

impl Observer for WorkerObserver<'_> {
    fn on_event(&mut self, event: TrainEvent<'_>) {
        self.post(&event);
    }

    fn should_stop(&mut self) -> bool {
        self.cancel.get()
    }

    async fn pause(&mut self) {
        yield_to_event_loop().await;
    }
}

/// Images by example id, from the worker.
struct WorkerImages<'a> {
    ids: Vec<&'a str>,
    load: &'a Function,
}

impl ImageSource for WorkerImages<'_> {
    async fn load(&mut self, examples: &[usize]) -> Result<Vec<RgbaImage>> {
        let ids: Vec<&str> = examples.iter().map(|&i| self.ids[i]).collect();
        load_images(self.load, &ids).await
    }
}

pub async fn run(
    set: &TrainingSet,
    options: &TrainOptions,
    callbacks: Callbacks<'_>,
    backbone: &EfficientNetLite0,
    device: &Device,
) -> Result<Trained> {
    let mut images = WorkerImages {
        ids: set.examples.iter().map(|e| e.id.as_str()).collect(),
        load: callbacks.load_images,
    };
    let mut observer = WorkerObserver {
        on_progress: callbacks.on_progress,
        cancel: callbacks.cancel,
    };
    crate::train::train(set, options, &mut images, &mut observer, backbone, device).await
}
