//! The engine's size limit is what training really takes: the memory a head training peaks at
//! stays under `head_training_bytes`, the estimate every front end checks before embedding
//! (`graft::train::limits`), and not far under it, or the limit would refuse what fits.
//! Alone in its file: the process's peak memory is the measurement.

use burn::tensor::Device;
use futures_lite::future::block_on;
use graft::data::SeededRng;
use graft::model::{EfficientNetLite0, FEATURE_DIM};
use graft::train::limits::head_training_bytes;
use graft::train::{Example, ImageSource, Observer, TrainEvent, TrainOptions, TrainingSet, train};

struct NoImages;

impl ImageSource for NoImages {
    async fn load(&mut self, _: &[usize]) -> graft::Result<Vec<image::RgbaImage>> {
        panic!("head-only training asked for images")
    }
}

struct Quiet;

impl Observer for Quiet {
    fn on_event(&mut self, _: TrainEvent<'_>) {}
}

/// `per_class` embeddings around each of `classes` random centres.
fn clustered(classes: usize, per_class: usize) -> TrainingSet {
    let mut rng = SeededRng::new(7);
    let mut embeddings = Vec::with_capacity(classes * per_class * FEATURE_DIM);
    let mut examples = Vec::new();
    for class in 0..classes {
        let centre: Vec<f32> = (0..FEATURE_DIM).map(|_| 2.0 * rng.unit()).collect();
        for _ in 0..per_class {
            embeddings.extend(centre.iter().map(|c| c + 1.5 * (rng.unit() - 0.5)));
            let i = examples.len();
            examples.push(Example {
                id: format!("example {i}"),
                hash: format!("{i:016x}"),
                label: class,
            });
        }
    }
    TrainingSet {
        labels: (0..classes).map(|c| format!("class {c}")).collect(),
        examples,
        embeddings,
        fixed_validation: None,
        skipped: Vec::new(),
    }
}

/// Starts the process's peak resident memory again from what it holds now (Linux).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("/proc/self/clear_refs");
}

/// The process's peak resident memory since the last [`reset_peak`] (Linux).
fn peak_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kilobytes: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kilobytes << 10
}

#[test]
fn training_memory_stays_within_its_estimate() {
    let device = Device::flex();
    let backbone = EfficientNetLite0::new(&device);
    // Many images in few classes, then many classes: each term of the estimate dominates once.
    for (classes, per_class) in [(10, 2_000), (500, 10)] {
        let set = clustered(classes, per_class);
        reset_peak();
        let before = peak_bytes();
        let trained = block_on(train(
            &set,
            &TrainOptions::default(),
            &mut NoImages,
            &mut Quiet,
            &backbone,
            &device,
        ))
        .unwrap();
        let taken = peak_bytes().saturating_sub(before);
        let estimate = head_training_bytes(set.examples.len(), classes, None);
        println!(
            "{} images in {classes} classes: peak +{} MB, estimate {} MB, accuracy {:.3}",
            set.examples.len(),
            taken >> 20,
            estimate >> 20,
            trained.report.validation.as_ref().unwrap().accuracy
        );
        assert!(
            taken <= estimate,
            "training took {taken} bytes, over its estimate {estimate}"
        );
        assert!(
            taken * 2 >= estimate,
            "training took {taken} bytes, less than half its estimate {estimate}: the limit refuses what fits"
        );
    }
}
