//! Object detection on the same backbone: datasets in the Ultralytics YOLO layout
//! ([`dataset`]: `data.yaml` and one label file an image), letterboxed inputs ([`letterbox`]),
//! an FCOS head on the backbone's maps at strides 8, 16 and 32 ([`head`]), its targets and
//! decoding ([`encoding`]), loss ([`loss`]), augmentation that moves the boxes ([`augment`]) and
//! training ([`train`]), running it ([`inference`]), boxes and
//! non-maximum suppression ([`boxes`]), COCO-style mean average precision ([`metrics`]) and
//! the model file ([`model_file`]). Shared by the CLI and the browser.

pub mod augment;
pub mod boxes;
pub mod dataset;
pub mod encoding;
#[cfg(not(target_arch = "wasm32"))]
pub mod files;
pub mod head;
pub mod inference;
pub mod letterbox;
pub mod loss;
pub mod metrics;
pub mod model_file;
pub mod train;
