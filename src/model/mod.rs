//! The network: the pretrained backbone, its trainable tail, and the grafted head.

pub mod cpu_backbone;
pub mod efficientnet_lite;
pub mod head;
pub mod tail;

pub use cpu_backbone::CpuBackbone;
pub use efficientnet_lite::{
    EfficientNetLite0, FEATURE_DIM, INPUT_SIZE, ImageNetClassifier, NUM_BLOCKS,
};
pub use head::{ClassifierHead, HeadConfig};
pub use tail::{BackboneTail, PyramidTail};
