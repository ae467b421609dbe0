//! Object detection, from the ground up: datasets in the Ultralytics YOLO layout
//! ([`dataset`]: `data.yaml` and one label file an image), boxes, their overlap and
//! non-maximum suppression ([`boxes`]), and COCO-style mean average precision ([`metrics`]).
//! All plain Rust on the CPU, shared by the CLI and the browser.

pub mod boxes;
pub mod dataset;
pub mod metrics;
