//! What the native benchmarks share: their command-line numbers, the shipped backbone and the
//! shared X-rays, preprocessed as Graft does.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use graft::data::EFFICIENTNET_LITE;
use graft::data::decode::decode_file;
use graft::model::EfficientNetLite0;
use graft::weights::load_backbone_file;

/// The number after `name` on the command line, or `default`.
pub fn argument(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

/// The first `per_class` X-rays of each class (sorted by name), as backbone input.
pub fn preprocessed_xrays(repo: &Path, per_class: usize) -> Vec<Vec<f32>> {
    let xrays = repo.join("../shared/datasets/chest_xray_pneumonia");
    let mut images = Vec::new();
    for label in ["NORMAL", "PNEUMONIA"] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(xrays.join(label))
            .expect("the shared X-rays")
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        for path in paths.iter().take(per_class) {
            images.push(EFFICIENTNET_LITE.prepare(&decode_file(path).expect("an X-ray")));
        }
    }
    images
}

/// The backbone as `make weights` converted it.
pub fn shipped_backbone(repo: &Path, device: &Device) -> EfficientNetLite0 {
    load_backbone_file(&repo.join("weights/efficientnet_lite0.safetensors"), device).unwrap()
}
