//! Fine-tuning (phase 2) on the real backbone with tiny synthetic images: gradients reach
//! exactly the unfrozen tail and head, BatchNorm statistics stay frozen unless asked, early
//! stopping keeps the best weights, and the model file carries the tail.

mod common;

use std::collections::HashMap;

use burn::store::ModuleSnapshot;
use burn::tensor::Device;
use futures_lite::future::block_on;
use graft::data::{Augmentation, SeededRng};
use graft::model::{EfficientNetLite0, HeadConfig};
use graft::model_file::{FineTuneInfo, ModelFile, ModelInfo, TrainedModel};
use graft::train::{FineTunePlan, FineTuned, FineTuner, Part, TrainOptions};
use graft::weights::load_backbone_file;
use image::{Rgba, RgbaImage};

/// Class 0 is dark with bright noise, class 1 bright with dark noise: learnable in a step or two.
fn image_of(label: usize, index: usize) -> RgbaImage {
    let mut rng = SeededRng::new(index as u64 * 31 + label as u64);
    RgbaImage::from_fn(64, 64, |_, _| {
        let noise = (rng.unit() * 60.0) as u8;
        let v = if label == 0 { 40 + noise } else { 200 - noise };
        Rgba([v, v, v, 255])
    })
}

fn backbone(device: &Device) -> EfficientNetLite0 {
    load_backbone_file(&common::weights(), device).unwrap()
}

/// Every tensor of a module by name, as raw bytes.
fn tensors(module: &impl ModuleSnapshot) -> HashMap<String, Vec<u8>> {
    module
        .collect(None, None, false)
        .into_iter()
        .map(|t| {
            let bytes = t.to_bytes().unwrap().to_vec();
            (t.name, bytes)
        })
        .collect()
}

fn plan(blocks: usize) -> FineTunePlan {
    let options = TrainOptions {
        fine_tune_blocks: blocks,
        epochs: Some(1),
        batch_size: Some(4),
        augment: Augmentation::NONE,
        dropout: 0.0,
        patience: 0,
        ..TrainOptions::default()
    };
    FineTunePlan::for_data(&options, &[2, 2])
}

/// Runs the plan over `train` (and `validation`, when given) and returns the result. With
/// `mislabel_validation`, validation images look like the other class.
fn fine_tune(
    backbone: &EfficientNetLite0,
    plan: &FineTunePlan,
    train: &[usize],
    validation: &[usize],
    device: &Device,
) -> FineTuned {
    fine_tune_with(backbone, plan, train, validation, false, device)
}

fn fine_tune_with(
    backbone: &EfficientNetLite0,
    plan: &FineTunePlan,
    train: &[usize],
    validation: &[usize],
    mislabel_validation: bool,
    device: &Device,
) -> FineTuned {
    let head = HeadConfig::new(2).init(device, 3);
    let mut tuner = FineTuner::new(
        backbone.clone(),
        head,
        train.to_vec(),
        validation.to_vec(),
        2,
        plan,
        device,
    )
    .unwrap();
    let images = |labels: &[usize], batch: &[usize]| -> Vec<RgbaImage> {
        batch.iter().map(|&i| image_of(labels[i], i)).collect()
    };
    let validate = |tuner: &mut FineTuner| {
        for batch in tuner.validation_batches() {
            let images: Vec<RgbaImage> = batch
                .iter()
                .map(|&i| {
                    let looks_like = validation[i] ^ usize::from(mislabel_validation);
                    image_of(looks_like, 100 + i)
                })
                .collect();
            tuner.validate_batch(&batch, &images).unwrap();
        }
    };
    if !validation.is_empty() {
        validate(&mut tuner);
        block_on(tuner.finish_baseline()).unwrap();
    }
    while !tuner.is_done() {
        for batch in tuner.train_batches() {
            tuner.train_step(&batch, &images(train, &batch)).unwrap();
        }
        validate(&mut tuner);
        block_on(tuner.finish_epoch()).unwrap();
    }
    tuner.finish().unwrap()
}

#[test]
fn gradients_reach_exactly_the_unfrozen_parameters_and_bn_stays_frozen() {
    let device = Device::flex();
    let pretrained = backbone(&device);
    let tuned = fine_tune(&pretrained, &plan(2), &[0, 1, 0, 1], &[], &device);
    assert_eq!(tuned.best_epoch, 1);

    let before = tensors(&pretrained);
    let after = tensors(&tuned.tail.graft_onto(pretrained.clone()));
    let mut changed = Vec::new();
    let mut wrong = Vec::new();
    for (name, bytes) in &before {
        let trainable = name.starts_with("blocks.14.")
            || name.starts_with("blocks.15.")
            || name.starts_with("conv_head.")
            || name.starts_with("bn1.");
        let statistic = name.contains("running_");
        let moved = after[name] != *bytes;
        if moved {
            changed.push(name.clone());
        }
        if moved != (trainable && !statistic) {
            wrong.push(format!("{name} (changed: {moved})"));
        }
    }
    wrong.sort();
    assert!(wrong.is_empty(), "{wrong:?}");
    assert!(changed.len() > 20, "{changed:?}");
    // The head trained too.
    let head = HeadConfig::new(2).init(&device, 3);
    assert_ne!(tensors(&tuned.head), tensors(&head));
}

#[test]
fn batch_norm_statistics_train_only_when_asked() {
    let device = Device::flex();
    let pretrained = backbone(&device);
    let plan = FineTunePlan {
        train_batch_norm: true,
        ..plan(1)
    };
    let tuned = fine_tune(&pretrained, &plan, &[0, 1, 0, 1], &[], &device);
    let before = tensors(&pretrained);
    let after = tensors(&tuned.tail.graft_onto(pretrained.clone()));
    assert_ne!(
        after["blocks.15.bn1.running_mean"],
        before["blocks.15.bn1.running_mean"]
    );
    assert_ne!(after["bn1.running_var"], before["bn1.running_var"]);
    assert_eq!(
        after["blocks.14.bn1.running_mean"],
        before["blocks.14.bn1.running_mean"]
    );
    assert_ne!(
        after["blocks.15.project_conv.weight"],
        before["blocks.15.project_conv.weight"]
    );
}

#[test]
fn early_stopping_keeps_phase_one_when_fine_tuning_only_hurts() {
    let device = Device::flex();
    let pretrained = backbone(&device);
    // Validation images look like the other class, so every step that learns the training set
    // lowers validation accuracy or raises its loss: no epoch beats phase 1.
    let train = [0, 1, 0, 1, 0, 1, 0, 1];
    let validation = [1, 0, 1, 0];
    let plan = FineTunePlan {
        epochs: 4,
        patience: Some(1),
        learning_rate: 1e-2,
        ..plan(1)
    };
    let tuned = fine_tune_with(&pretrained, &plan, &train, &validation, true, &device);
    assert!(tuned.stopped_early, "{:?}", tuned.history);
    assert_eq!(tuned.history.len(), 1, "{:?}", tuned.history);
    assert_eq!(tuned.best_epoch, 0);
    // The kept tail is the pretrained one.
    let kept = tensors(&tuned.tail);
    let original = tensors(&graft::model::BackboneTail::of(&pretrained, 1).unwrap());
    assert_eq!(kept, original);
}

#[test]
fn schedule_is_seeded_and_cached_batches_need_no_images() {
    let device = Device::flex();
    let head = HeadConfig::new(2).init(&device, 0);
    let labels: Vec<usize> = (0..10).map(|i| i % 2).collect();
    let tuner = |seed| {
        let plan = FineTunePlan { seed, ..plan(1) };
        FineTuner::new(
            EfficientNetLite0::new(&device),
            head.clone(),
            labels.clone(),
            vec![0, 1],
            2,
            &plan,
            &device,
        )
        .unwrap()
    };
    let (a, b, c) = (tuner(5), tuner(5), tuner(6));
    assert_eq!(a.train_batches(), b.train_batches());
    assert_ne!(a.train_batches(), c.train_batches());
    let mut all: Vec<usize> = a.train_batches().concat();
    all.sort_unstable();
    assert_eq!(all, (0..10).collect::<Vec<_>>());

    let mut a = a;
    assert!(a.needs_images(Part::Validation, &[0, 1]));
    a.validate_batch(&[0, 1], &[image_of(0, 0), image_of(1, 1)])
        .unwrap();
    assert!(!a.needs_images(Part::Validation, &[0, 1]));
    a.validate_batch(&[0, 1], &[]).unwrap();
    assert!(a.cache_bytes() > 0);
    let err = a.train_step(&[0, 1], &[]).unwrap_err().to_string();
    assert!(err.contains("one image per index"), "{err}");
}

#[test]
fn model_file_carries_the_fine_tuned_tail() {
    let device = Device::flex();
    let pretrained = backbone(&device);
    let plan = plan(2);
    let tuned = fine_tune(&pretrained, &plan, &[0, 1, 0, 1], &[], &device);
    let labels = vec!["dark".to_string(), "bright".to_string()];
    let details = FineTuneInfo::of(&tuned, &plan);
    let tail_tensors = tensors(&tuned.tail);
    let head_tensors = tensors(&tuned.head);
    let model = TrainedModel {
        info: ModelInfo::new(labels.clone(), None),
        head: tuned.head,
    };
    let head_only_bytes = model.to_bytes().unwrap();
    let file = ModelFile::fine_tuned(model, tuned.tail, details);
    let bytes = file.to_bytes().unwrap();
    assert!(bytes.len() > 4 * head_only_bytes.len());

    let loaded = ModelFile::from_bytes(bytes, "tuned", &device).unwrap();
    let info = loaded.model.info.fine_tuned.as_ref().unwrap();
    assert_eq!((info.stored.blocks, info.stored.first_block), (2, 14));
    assert_eq!(tensors(loaded.tail.as_ref().unwrap()), tail_tensors);
    assert_eq!(tensors(&loaded.model.head), head_tensors);
    let grafted = loaded.backbone(pretrained.clone());
    assert_eq!(
        tensors(&grafted.blocks[14]),
        tensors(&loaded.tail.as_ref().unwrap().blocks[0])
    );

    // The asynchronous copy (how the browser saves from WebGPU) keeps every tensor.
    let copy = block_on(loaded.copy_to(&device)).unwrap();
    assert_eq!(tensors(copy.tail.as_ref().unwrap()), tail_tensors);
    assert_eq!(tensors(&copy.model.head), head_tensors);

    // Head-only files stay head-only.
    let head_only = ModelFile::from_bytes(head_only_bytes.clone(), "head", &device).unwrap();
    assert!(head_only.tail.is_none());
    assert!(head_only.model.info.fine_tuned.is_none());
    let header = String::from_utf8_lossy(&head_only_bytes[..2000.min(head_only_bytes.len())]);
    assert!(header.contains(r#"formatVersion\":1"#), "{header}");
    assert!(!header.contains("fineTuned") && !header.contains("backbone.blocks"));
}

#[test]
fn augmentation_variants_are_cached_and_reused() {
    let device = Device::flex();
    let plan = FineTunePlan {
        augment: Augmentation::ALL,
        augment_variants: Some(2),
        epochs: 3,
        ..plan(1)
    };
    let labels = vec![0, 1, 0, 1];
    let mut tuner = FineTuner::new(
        EfficientNetLite0::new(&device),
        HeadConfig::new(2).init(&device, 0),
        labels.clone(),
        Vec::new(),
        2,
        &plan,
        &device,
    )
    .unwrap();
    let first_draw = tuner.augmentation_of(0);
    for epoch in 1..=3 {
        // Epochs 1 and 2 draw the two variants; epoch 3 reuses the first from the cache.
        let cached = epoch == 3;
        if epoch == 3 {
            assert_eq!(tuner.augmentation_of(0), first_draw);
        }
        for batch in tuner.train_batches() {
            assert_eq!(
                tuner.needs_images(Part::Train, &batch),
                !cached,
                "epoch {epoch}"
            );
            let images: Vec<RgbaImage> = match cached {
                true => Vec::new(),
                false => batch.iter().map(|&i| image_of(labels[i], i)).collect(),
            };
            tuner.train_step(&batch, &images).unwrap();
        }
        block_on(tuner.finish_epoch()).unwrap();
        if epoch == 1 {
            assert!(tuner.augmentation_of(0) != first_draw);
        }
    }
    assert_eq!(tuner.history().len(), 3);
    assert!(tuner.cache_bytes() > 0);
}

#[test]
fn fine_tuning_repeats_exactly_under_a_seed() {
    let device = Device::flex();
    let pretrained = backbone(&device);
    let plan = FineTunePlan {
        augment: Augmentation::ALL,
        epochs: 2,
        dropout: 0.2,
        label_smoothing: 0.1,
        balance: graft::train::Balance::On,
        ..plan(1)
    };
    // Imbalanced on purpose: the class weights take part.
    let train = [0, 0, 0, 1, 0, 1];
    let run = |plan: &FineTunePlan| fine_tune(&pretrained, plan, &train, &[0, 1], &device);
    let (a, b) = (run(&plan), run(&plan));
    assert_eq!(a.history, b.history);
    assert_eq!(tensors(&a.tail), tensors(&b.tail));
    let other = run(&FineTunePlan {
        seed: 7,
        ..plan.clone()
    });
    assert_ne!(a.history[0].loss, other.history[0].loss);
}
