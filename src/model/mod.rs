//! The network: the pretrained backbone and the grafted head.

pub mod efficientnet_lite;
pub mod head;

pub use efficientnet_lite::{EfficientNetLite0, FEATURE_DIM, INPUT_SIZE};
pub use head::{ClassifierHead, HeadConfig};
