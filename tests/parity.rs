//! The converted backbone reproduces the original network's numbers.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use graft::convert::backbone_from_pth;
use graft::weights::{imagenet_classifier_path, load_backbone_file, load_imagenet_classifier_file};

fn reference_input(device: &Device) -> Tensor<4> {
    let input = read_npy_f32(&reference("chelsea_input_chw_tfnorm.npy"));
    Tensor::from_data(TensorData::new(input, [1, 3, 224, 224]), device)
}

/// The shipped (half-precision) backbone and the ImageNet classifier give the original
/// network's features and top 5 on the reference image.
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

    let classifier =
        load_imagenet_classifier_file(&imagenet_classifier_path(&weights()), &device).unwrap();
    let logits: Vec<f32> = classifier
        .forward(backbone.features(reference_input(&device)))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let expected = read_npy_f32(&reference("chelsea_logits_tfpad.npy"));
    let worst = logits
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    // Half-precision weights move logits of about 10 by about 0.01 (at full precision 6e-6).
    assert!(worst < 0.05, "largest logit difference {worst}");
    let top5 = |values: &[f32]| {
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        order.truncate(5);
        order
    };
    assert_eq!(top5(&logits), top5(&expected), "the ImageNet top 5");
    println!("parity: feature cosine {similarity:.7}, max |logit diff| {worst:.2e}");
}

/// The stored backbone is the checkpoint's in half precision (its features within cosine
/// 0.99999 of the full-precision network's), and the ImageNet classifier the checkpoint's exactly.
#[test]
fn conversion_from_the_original_checkpoint_keeps_its_numbers() {
    let pth = repo().join("weights/download/efficientnet-lite0-57934424.pth");
    assert!(
        pth.is_file(),
        "{} is missing: run ./setup.sh first",
        pth.display()
    );
    let device = Device::flex();
    let (direct, direct_classifier) = backbone_from_pth(&pth, &device).unwrap();
    let converted = load_backbone_file(&weights(), &device).unwrap();
    let classifier =
        load_imagenet_classifier_file(&imagenet_classifier_path(&weights()), &device).unwrap();
    let fc = |c: &graft::model::ImageNetClassifier| -> Vec<f32> {
        c.fc.weight.val().into_data().try_to_vec::<f32>().unwrap()
    };
    assert_eq!(fc(&direct_classifier), fc(&classifier));
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
    let similarity = cosine(&a, &b);
    assert!(similarity > 0.99999, "feature cosine {similarity}");
    println!("half-precision backbone: feature cosine {similarity:.7} with the checkpoint's");
}

/// The CPU inference path (BatchNorm folded, NHWC, fused) gives the original network's features,
/// and burn's on real images: X-rays of both classes, a batch spread over the cores.
#[test]
fn cpu_inference_path_matches_the_reference_and_burn() {
    use graft::data::EFFICIENTNET_LITE;
    use graft::data::decode::decode_file;
    use graft::data::preprocess::batch_tensor;
    use graft::model::{CpuBackbone, FEATURE_DIM};

    let device = Device::flex();
    let backbone = load_backbone_file(&weights(), &device).unwrap();
    let fast = CpuBackbone::new(&backbone).unwrap();
    let input = read_npy_f32(&reference("chelsea_input_chw_tfnorm.npy"));
    let features = fast.features(std::slice::from_ref(&input));
    let expected = read_npy_f32(&reference("chelsea_feat1280_tfpad.npy"));
    let similarity = cosine(&features, &expected);
    assert!(similarity > 0.99999, "feature cosine {similarity}");
    // Read straight from the file (as the browser does), it is the same path to the bit.
    let bytes = std::fs::read(weights()).unwrap();
    let from_file = graft::weights::load_cpu_backbone(&bytes, "weights").unwrap();
    assert_eq!(from_file.features(&[input]), features);

    let mut images = Vec::new();
    for label in ["NORMAL", "PNEUMONIA"] {
        let folder = xray_dataset().join(label);
        let mut names: Vec<_> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for path in names.iter().take(4) {
            images.push(EFFICIENTNET_LITE.prepare(&decode_file(path).unwrap()));
        }
    }
    let burn_started = std::time::Instant::now();
    let burns: Vec<f32> = backbone
        .features(batch_tensor(&images, &device))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let burn_seconds = burn_started.elapsed().as_secs_f64();
    let fast_started = std::time::Instant::now();
    let fasts = fast.features(&images);
    let fast_seconds = fast_started.elapsed().as_secs_f64();
    let worst = burns
        .chunks(FEATURE_DIM)
        .zip(fasts.chunks(FEATURE_DIM))
        .map(|(a, b)| cosine(a, b))
        .fold(1.0f64, f64::min);
    assert!(
        worst > 0.99999,
        "lowest cosine against burn's features {worst}"
    );
    println!(
        "cpu path: cosine {similarity:.7} with the reference, >= {worst:.7} with burn on {} X-rays; {fast_seconds:.2} s against burn's {burn_seconds:.2} s",
        images.len()
    );
}
