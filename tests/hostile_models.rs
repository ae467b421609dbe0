//! Model files a user did not make (a colleague's, a download, a corrupted copy) are refused
//! with a message naming the file and the fault, before anything large is allocated, and never
//! kill the process. Each finding of the hostile-input probe has its test here, and a seeded
//! fuzzer mutates a real model file thousands of times: 0 panics, 0 aborts, 0 non-finite
//! predictions.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::tensor::{Device, Tensor, TensorData};
use common::{StoredTensor, build_safetensors, safetensors_parts};
use graft::data::Augmentation;
use graft::data::SeededRng;
use graft::model::HeadConfig;
use graft::model_file::{
    FineTuneInfo, INFO_KEY, MAX_CLASSES, ModelFile, ModelInfo, StoredBlocks, TrainedModel,
};
use safetensors::Dtype;

fn model_bytes(hidden_units: Option<usize>) -> Vec<u8> {
    let device = Device::flex();
    let info = ModelInfo::new(vec!["cat".into(), "dog".into(), "fox".into()], hidden_units);
    let head = HeadConfig::new(3)
        .with_hidden_units(hidden_units)
        .init(&device, 7);
    TrainedModel { info, head }.to_bytes().unwrap()
}

/// A copy of a model file with its `graft.model` JSON edited.
fn with_info(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let (tensors, mut metadata) = safetensors_parts(bytes);
    let mut info: serde_json::Value = serde_json::from_str(&metadata[INFO_KEY]).unwrap();
    edit(&mut info);
    metadata.insert(INFO_KEY.into(), info.to_string());
    build_safetensors(&tensors, metadata)
}

fn load(bytes: Vec<u8>) -> graft::Result<ModelFile> {
    ModelFile::from_bytes(bytes, "colleague.safetensors", &Device::flex())
}

fn refusal(bytes: Vec<u8>) -> String {
    let message = load(bytes)
        .expect_err("a bad model file was accepted")
        .to_string();
    assert!(
        message.starts_with("colleague.safetensors: "),
        "the file is named: {message}"
    );
    message
}

fn probabilities(file: &ModelFile) -> Vec<f32> {
    let device = Device::flex();
    let mut rng = SeededRng::new(5);
    let x: Vec<f32> = (0..2 * 1280).map(|_| rng.unit() * 6.0).collect();
    let x = Tensor::<2>::from_data(TensorData::new(x, [2, 1280]), &device);
    burn::tensor::activation::softmax(file.model.head.forward(x), 1)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn absurd_hidden_layers_are_refused_before_allocating() {
    for units in [1_000_000_000u64, 1 << 63, u64::MAX] {
        let bytes = with_info(&model_bytes(Some(8)), |info| {
            info["hiddenUnits"] = units.into()
        });
        let message = refusal(bytes);
        assert!(
            message.contains("hiddenUnits") && message.contains("outside 1 to 4096"),
            "{message}"
        );
    }
}

#[test]
fn a_million_labels_are_refused_before_allocating() {
    let labels: Vec<String> = (0..1_000_000).map(|i| format!("class {i}")).collect();
    let started = std::time::Instant::now();
    let message = refusal(with_info(&model_bytes(None), |info| {
        info["labels"] = labels.into()
    }));
    assert!(
        message.contains(&format!("a model has 2 to {MAX_CLASSES}")),
        "{message}"
    );
    assert!(
        started.elapsed().as_secs_f64() < 10.0,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn duplicate_labels_and_header_keys_are_refused() {
    let message = refusal(with_info(&model_bytes(None), |info| {
        info["labels"] = serde_json::json!(["cat", "dog", "cat"])
    }));
    assert!(message.contains("'cat' appears twice"), "{message}");

    // The same tensor name twice in the header: JSON readers keep one silently.
    let bytes = model_bytes(None);
    let header_length = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + header_length]).unwrap();
    let start = header.find("\"output.bias\":{").unwrap();
    let end = start + header[start..].find('}').unwrap() + 1;
    let doubled = format!("{{{},{}", &header[start..end], &header[1..]);
    let mut hostile = (doubled.len() as u64).to_le_bytes().to_vec();
    hostile.extend(doubled.as_bytes());
    hostile.extend(&bytes[8 + header_length..]);
    let message = refusal(hostile);
    assert!(message.contains("names 'output.bias' twice"), "{message}");
}

#[test]
fn non_finite_weights_are_named() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let (mut tensors, metadata) = safetensors_parts(&model_bytes(None));
        let weight = tensors.iter_mut().find(|t| t.0 == "output.weight").unwrap();
        weight.3[40..44].copy_from_slice(&bad.to_le_bytes());
        let message = refusal(build_safetensors(&tensors, metadata));
        assert!(
            message.contains("tensor 'output.weight'") && message.contains("index 10"),
            "{message}"
        );
    }
}

#[test]
fn half_precision_files_load_as_the_same_model() {
    let original = load(model_bytes(Some(8))).unwrap();
    for dtype in [Dtype::F16, Dtype::BF16, Dtype::F64] {
        let (tensors, metadata) = safetensors_parts(&model_bytes(Some(8)));
        let converted: Vec<StoredTensor> = tensors
            .into_iter()
            .map(|(name, _, shape, data)| {
                let values = data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()));
                let bytes: Vec<u8> = match dtype {
                    Dtype::F16 => values
                        .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
                        .collect(),
                    Dtype::BF16 => values
                        .flat_map(|v| half::bf16::from_f32(v).to_le_bytes())
                        .collect(),
                    _ => values.flat_map(|v| (v as f64).to_le_bytes()).collect(),
                };
                (name, dtype, shape, bytes)
            })
            .collect();
        let loaded = load(build_safetensors(&converted, metadata)).unwrap();
        let tolerance = if dtype == Dtype::F64 { 1e-6 } else { 0.02 };
        for (a, b) in probabilities(&original).iter().zip(probabilities(&loaded)) {
            assert!((a - b).abs() < tolerance, "{dtype:?}: {a} vs {b}");
        }
    }
    // Integers are not weights.
    let (mut tensors, metadata) = safetensors_parts(&model_bytes(None));
    let bias = tensors.iter_mut().find(|t| t.0 == "output.bias").unwrap();
    bias.1 = Dtype::I32;
    let message = refusal(build_safetensors(&tensors, metadata));
    assert!(
        message.contains("tensor 'output.bias' is stored as I32"),
        "{message}"
    );
}

#[test]
fn a_fine_tuned_file_that_lost_its_fine_tuned_entry_is_refused() {
    let (mut tensors, metadata) = safetensors_parts(&model_bytes(None));
    tensors.push(("backbone.bn1.gamma".into(), Dtype::F32, vec![2], vec![0; 8]));
    let message = refusal(build_safetensors(&tensors, metadata));
    assert!(
        message.contains("backbone tensors") && message.contains("no 'fineTuned' entry"),
        "{message}"
    );

    let tuned = FineTuneInfo {
        stored: StoredBlocks::last(2),
        batch_norm_trained: false,
        backbone_lr_factor: 0.1,
        augment: Augmentation::NONE,
        epochs_run: 1,
        best_epoch: 1,
        val_accuracy: Some(0.5),
        val_loss: Some(1.0),
    };
    let message = refusal(with_info(&model_bytes(None), |info| {
        info["fineTuned"] = serde_json::to_value(&tuned).unwrap();
        info["formatVersion"] = 2.into();
    }));
    assert!(
        message.contains("says it was fine-tuned, but it holds no backbone tensors"),
        "{message}"
    );
}

#[test]
fn tensors_a_model_does_not_have_are_named() {
    let (mut tensors, metadata) = safetensors_parts(&model_bytes(None));
    tensors.push(("extra.weight".into(), Dtype::F32, vec![1], vec![0; 4]));
    let message = refusal(build_safetensors(&tensors, metadata));
    assert!(message.contains("extra.weight"), "{message}");
}

/// One random mutation of a valid file: flipped bytes anywhere, a truncation, or an edited
/// metadata number or list (the shapes a hand-edited or corrupted file takes).
fn mutant(valid: &[u8], rng: &mut SeededRng) -> Vec<u8> {
    let pick = |rng: &mut SeededRng, n: usize| ((rng.unit() * n as f32) as usize).min(n - 1);
    match pick(rng, 6) {
        0 | 1 => {
            let mut bytes = valid.to_vec();
            for _ in 0..1 + pick(rng, 8) {
                let at = pick(rng, bytes.len());
                bytes[at] ^= 1 << pick(rng, 8);
            }
            bytes
        }
        2 => valid[..pick(rng, valid.len())].to_vec(),
        3 => {
            let huge = [0.0, -1.0, 1e9, 1e19, 4097.0, 3.5][pick(rng, 6)];
            with_info(valid, |info| info["hiddenUnits"] = huge.into())
        }
        4 => {
            let count = [0, 1, 2, 10_001, 50_000][pick(rng, 5)];
            let labels: Vec<String> = (0..count).map(|i| format!("c{}", i % 7)).collect();
            with_info(valid, |info| info["labels"] = labels.into())
        }
        _ => {
            let (mut tensors, metadata) = safetensors_parts(valid);
            let tensor = pick(rng, tensors.len());
            let data = &mut tensors[tensor].3;
            let at = 4 * pick(rng, data.len() / 4);
            let value = [f32::NAN, f32::INFINITY, 1e38, -0.0, f32::MIN_POSITIVE][pick(rng, 5)];
            data[at..at + 4].copy_from_slice(&value.to_le_bytes());
            build_safetensors(&tensors, metadata)
        }
    }
}

#[test]
fn fuzzed_model_files_never_panic_and_never_predict_nan() {
    const INPUTS: usize = 20_000;
    let valid = [model_bytes(None), model_bytes(Some(8))];
    let mut rng = SeededRng::new(2026);
    let (mut accepted, mut refused, mut panicked, mut non_finite) = (0, 0, 0, 0);
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..INPUTS {
        let bytes = mutant(&valid[i % 2], &mut rng);
        match catch_unwind(AssertUnwindSafe(|| {
            load(bytes).map(|file| probabilities(&file))
        })) {
            Ok(Ok(probabilities)) => {
                accepted += 1;
                non_finite += usize::from(probabilities.iter().any(|p| !p.is_finite()));
            }
            Ok(Err(_)) => refused += 1,
            Err(_) => panicked += 1,
        }
    }
    std::panic::set_hook(quiet);
    println!(
        "fuzzed model files: {INPUTS} inputs, {accepted} accepted, {refused} refused with an error, {panicked} panics, {non_finite} non-finite predictions"
    );
    assert_eq!((panicked, non_finite), (0, 0));
    assert!(
        refused > INPUTS / 2 && accepted > 0,
        "the mutations exercise both outcomes"
    );
}
