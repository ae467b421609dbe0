//! # Graft: private transfer learning
//!
//! Graft grafts a new classification head onto EfficientNet-Lite0, pretrained on ImageNet, and
//! trains it on the user's own images, on the user's own machine: natively through the `graft`
//! CLI, and in the browser through WebAssembly and WebGPU. Nothing leaves the machine.
//!
//! Pixels flow one way:
//! image → [`data`] (decode, resize, crop, normalise) → [`model`] backbone → 1280-d embedding →
//! head → logits → [`train::metrics`]. Training ([`train::session`], one recipe for every front
//! end) solves the head on embeddings computed once per image, then optionally fine-tunes the
//! backbone's last blocks on the images. [`weights`], [`model_file`] and [`embeddings_file`]
//! move tensors in and out as safetensors; [`convert`] turns the original PyTorch checkpoint
//! into the backbone file. [`explain`] maps where in an image the evidence for a class lies.
//! [`detect`] lays the ground for object detection: YOLO-layout datasets, boxes and COCO mAP.
//!
//! Everything here is plain Rust with no browser code, so the CLI and the web build share it.

pub mod data;
pub mod detect;
pub mod device;
pub mod error;
pub mod explain;
pub mod model;
pub mod model_file;
pub mod predict;
pub mod train;
pub mod weights;

#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
pub mod embeddings_file;
#[cfg(not(target_arch = "wasm32"))]
pub mod pipeline;

pub use error::{GraftError, Result};

#[cfg(target_arch = "wasm32")]
pub mod web;
