//! Data preparation: pixels in, backbone input out, plus the dataset and its split.

pub mod augment;
#[cfg(not(target_arch = "wasm32"))]
pub mod decode;
#[cfg(not(target_arch = "wasm32"))]
pub mod folder;
pub mod gate;
#[cfg(not(target_arch = "wasm32"))]
pub mod hash;
pub mod preprocess;
pub mod split;

pub use augment::{AugmentParams, Augmentation, augment_and_prepare};
#[cfg(not(target_arch = "wasm32"))]
pub use hash::content_hash;
pub use preprocess::{EFFICIENTNET_LITE, Preprocessing, Region};
pub use split::{SeededRng, Split, stratified_folds, stratified_split};
