//! The engine's pretrained backbone, built as its uses need it.

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use burn::tensor::Device;

use crate::error::Result;
use crate::model::EfficientNetLite0;
use crate::train::Embedder;
use crate::weights::{load_backbone, load_cpu_backbone};

const ORIGIN: &str = "weights";

/// The pretrained backbone: its embedder at once, burn's module (training, fine-tuning,
/// explanations) the first time one of those asks for it. On the CPU the embedder is read
/// straight from the weights file, so a page embeds its first image without waiting for the
/// module (most of the engine's start); the file's bytes are kept until the module is built.
pub struct Pretrained {
    device: Device,
    embedder: Rc<Embedder>,
    module: OnceCell<Rc<EfficientNetLite0>>,
    weights: RefCell<Vec<u8>>,
}

impl Pretrained {
    /// Checks the weights file (every check of [`load_backbone`]) and builds the embedder.
    pub fn load(weights: Vec<u8>, device: &Device) -> Result<Self> {
        let pretrained = if *device == Device::flex() {
            Self {
                device: device.clone(),
                embedder: Rc::new(Embedder::Cpu(load_cpu_backbone(&weights, ORIGIN)?)),
                module: OnceCell::new(),
                weights: RefCell::new(weights),
            }
        } else {
            // Other devices embed with the module itself.
            let module = load_backbone(weights, ORIGIN, device)?;
            Self {
                device: device.clone(),
                embedder: Rc::new(Embedder::new(&module, device)?),
                module: OnceCell::from(Rc::new(module)),
                weights: RefCell::default(),
            }
        };
        Ok(pretrained)
    }

    pub fn embedder(&self) -> &Rc<Embedder> {
        &self.embedder
    }

    /// burn's module, built from the weights the first time.
    pub fn module(&self) -> Result<Rc<EfficientNetLite0>> {
        if let Some(module) = self.module.get() {
            return Ok(module.clone());
        }
        // A copy: should this fail, the next call can try again.
        let weights = self.weights.borrow().clone();
        let module = Rc::new(load_backbone(weights, ORIGIN, &self.device)?);
        self.weights.take();
        Ok(self.module.get_or_init(|| module).clone())
    }
}
