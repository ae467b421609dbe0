//! Loading the backbone and model files, and every way those files can be wrong.

mod common;

use std::collections::HashMap;

use burn::tensor::{Device, Tensor};
use common::*;
use graft::GraftError;
use graft::model::HeadConfig;
use graft::model_file::{ModelFile, ModelInfo, TrainedModel};
use graft::weights::{BACKBONE_KEY, load_backbone, load_cpu_backbone};

fn backbone_bytes() -> Vec<u8> {
    std::fs::read(weights()).unwrap()
}

/// The messages with which both readers of the backbone file refuse `bytes`: burn's module
/// ([`load_backbone`]) and the folded CPU path read straight from the file
/// ([`load_cpu_backbone`], what the browser embeds with).
fn load_errs(bytes: Vec<u8>) -> [String; 2] {
    let cpu = match load_cpu_backbone(&bytes, "test.safetensors") {
        Ok(_) => panic!("a bad backbone file was accepted by the CPU path"),
        Err(e) => e.to_string(),
    };
    let module = match load_backbone(bytes, "test.safetensors", &Device::flex()) {
        Ok(_) => panic!("a bad backbone file was accepted"),
        Err(e) => e.to_string(),
    };
    [module, cpu]
}

/// Rewrites a safetensors file, letting `edit` change tensors and metadata.
fn rewrite(
    bytes: &[u8],
    edit: impl FnOnce(&mut Vec<StoredTensor>, &mut HashMap<String, String>),
) -> Vec<u8> {
    let (mut tensors, mut metadata) = safetensors_parts(bytes);
    edit(&mut tensors, &mut metadata);
    build_safetensors(&tensors, metadata)
}

#[test]
fn real_backbone_loads() {
    load_backbone(backbone_bytes(), "ok", &Device::flex()).unwrap();
    load_cpu_backbone(&backbone_bytes(), "ok").unwrap();
}

#[test]
fn empty_and_garbage_files_are_rejected() {
    for err in load_errs(Vec::new()) {
        assert!(err.contains("empty"), "{err}");
    }
    for err in load_errs(b"<html>404 Not Found</html>".to_vec()) {
        assert!(
            err.starts_with("test.safetensors: not a valid EfficientNet-Lite0 weights file"),
            "{err}"
        );
    }
}

#[test]
fn truncated_backbone_is_rejected() {
    let mut bytes = backbone_bytes();
    bytes.truncate(bytes.len() / 2);
    for err in load_errs(bytes) {
        assert!(err.contains("test.safetensors"), "{err}");
    }
}

#[test]
fn wrong_shapes_missing_and_extra_tensors_are_named() {
    let bytes = rewrite(&backbone_bytes(), |tensors, _| {
        let stem = tensors
            .iter_mut()
            .find(|t| t.0 == "conv_stem.weight")
            .unwrap();
        stem.2 = vec![16, 3, 3, 6]; // same byte count, wrong shape
    });
    for err in load_errs(bytes) {
        assert!(
            err.contains("not fit") && err.contains("conv_stem"),
            "{err}"
        );
    }

    let bytes = rewrite(&backbone_bytes(), |tensors, _| {
        tensors.retain(|t| t.0 != "blocks.15.bn1.running_var")
    });
    for err in load_errs(bytes) {
        assert!(
            err.contains("missing") && err.contains("blocks.15.bn1.running_var"),
            "{err}"
        );
    }

    let bytes = rewrite(&backbone_bytes(), |tensors, _| {
        let mut extra = tensors[0].clone();
        extra.0 = "fc.weight".into();
        tensors.push(extra);
    });
    for err in load_errs(bytes) {
        assert!(
            err.contains("does not hold") && err.contains("fc.weight"),
            "{err}"
        );
    }
}

#[test]
fn non_finite_backbone_weights_are_named() {
    let bytes = rewrite(&backbone_bytes(), |tensors, _| {
        let variance = tensors
            .iter_mut()
            .find(|t| t.0 == "blocks.7.bn2.running_var")
            .unwrap();
        // Half precision, as shipped: 0x7e00 is a NaN.
        assert_eq!(variance.1, safetensors::Dtype::F16);
        variance.3[6..8].copy_from_slice(&0x7e00u16.to_le_bytes());
    });
    for err in load_errs(bytes) {
        assert!(
            err.contains("tensor 'blocks.7.bn2.running_var'") && err.contains("index 3"),
            "{err}"
        );
    }
}

#[test]
fn a_different_backbone_is_named() {
    let bytes = rewrite(&backbone_bytes(), |_, metadata| {
        metadata.insert(BACKBONE_KEY.into(), "mobilenet-v3/imagenet".into());
    });
    assert!(matches!(
        load_backbone(bytes.clone(), "x", &Device::flex()),
        Err(GraftError::WrongBackbone { found, .. }) if found == "mobilenet-v3/imagenet"
    ));
    assert!(matches!(
        load_cpu_backbone(&bytes, "x"),
        Err(GraftError::WrongBackbone { found, .. }) if found == "mobilenet-v3/imagenet"
    ));
}

fn small_model() -> TrainedModel {
    let device = Device::flex();
    let info = ModelInfo::new(vec!["cat".into(), "dog".into(), "fox".into()], Some(8));
    let head = HeadConfig::new(3)
        .with_hidden_units(Some(8))
        .init(&device, 7);
    TrainedModel { info, head }
}

#[test]
fn model_file_round_trips() {
    let device = Device::flex();
    let model = small_model();
    let bytes = model.to_bytes().unwrap();
    let loaded = ModelFile::from_bytes(bytes, "m.safetensors", &device)
        .unwrap()
        .model;
    assert_eq!(loaded.info, model.info);
    let x = Tensor::<2>::random([4, 1280], burn::tensor::Distribution::Default, &device);
    let a: Vec<f32> = model
        .head
        .forward(x.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let b: Vec<f32> = loaded
        .head
        .forward(x)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn model_file_errors_are_clear() {
    let device = Device::flex();
    // A backbone is not a model.
    let err = ModelFile::from_bytes(backbone_bytes(), "w.safetensors", &device).unwrap_err();
    assert!(
        err.to_string()
            .contains("'backbone' file, not a trained model"),
        "{err}"
    );
    // A model trained on another backbone.
    let mut model = small_model();
    model.info.backbone = "resnet50/imagenet".into();
    let err = ModelFile::from_bytes(model.to_bytes().unwrap(), "m", &device).unwrap_err();
    assert!(matches!(err, GraftError::WrongBackbone { .. }), "{err}");
    // A truncated model.
    let mut bytes = small_model().to_bytes().unwrap();
    bytes.truncate(bytes.len() - 10);
    let err = ModelFile::from_bytes(bytes, "m.safetensors", &device).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("m.safetensors: not a valid Graft model file"),
        "{err}"
    );
    // A model file handed over as the backbone.
    for err in load_errs(small_model().to_bytes().unwrap()) {
        assert!(err.contains("not a backbone file"), "{err}");
    }
}
