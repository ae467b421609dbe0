//! The converted backbone reproduces the original network's numbers.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use graft::convert::backbone_from_pth;
use graft::weights::load_backbone_file;

fn reference_input(device: &Device) -> Tensor<4> {
    let input = read_npy_f32(&reference("chelsea_input_chw_tfnorm.npy"));
    Tensor::from_data(TensorData::new(input, [1, 3, 224, 224]), device)
}

#[test]
fn backbone_matches_reference_features_and_logits() {
    let device = Device::flex();
    let backbone = load_backbone_file(&weights(), &device).unwrap();
    let features: Vec<f32> = backbone
        .features(reference_input(&device))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let expected = read_npy_f32(&reference("chelsea_feat1280_tfpad.npy"));
    let similarity = cosine(&features, &expected);
    assert!(similarity > 0.9999, "feature cosine {similarity}");

    let logits: Vec<f32> = backbone
        .imagenet_logits(reference_input(&device))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let expected = read_npy_f32(&reference("chelsea_logits_tfpad.npy"));
    let worst = logits
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-3, "largest logit difference {worst}");
    println!("parity: feature cosine {similarity:.7}, max |logit diff| {worst:.2e}");
}

#[test]
fn conversion_from_the_original_checkpoint_is_lossless() {
    let pth = repo().join("weights/download/efficientnet-lite0-57934424.pth");
    assert!(
        pth.is_file(),
        "{} is missing: run ./setup.sh first",
        pth.display()
    );
    let device = Device::flex();
    let direct = backbone_from_pth(&pth, &device).unwrap();
    let converted = load_backbone_file(&weights(), &device).unwrap();
    let a: Vec<f32> = direct
        .features(reference_input(&device))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let b: Vec<f32> = converted
        .features(reference_input(&device))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(a, b);
}
