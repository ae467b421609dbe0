//! Many classes: training costs time in proportion to the classes and the report stays small
//! (a 4,000-class run once wrote a 396 MB report, mostly a dense confusion matrix and every
//! held-out image's probability of every class).

use std::time::Instant;

use burn::tensor::Device;
use futures_lite::future::block_on;
use graft::data::SeededRng;
use graft::model::{EfficientNetLite0, FEATURE_DIM};
use graft::train::{Example, ImageSource, Observer, TrainEvent, TrainOptions, TrainingSet, train};

/// `per_class` embeddings around each of `classes` random centres.
fn clustered(classes: usize, per_class: usize, seed: u64) -> TrainingSet {
    let mut rng = SeededRng::new(seed);
    let centres: Vec<f32> = (0..classes * FEATURE_DIM)
        .map(|_| 2.0 * rng.unit())
        .collect();
    let mut embeddings = Vec::with_capacity(classes * per_class * FEATURE_DIM);
    let mut examples = Vec::new();
    for class in 0..classes {
        for i in 0..per_class {
            let centre = &centres[class * FEATURE_DIM..(class + 1) * FEATURE_DIM];
            embeddings.extend(centre.iter().map(|c| c + 1.5 * (rng.unit() - 0.5)));
            examples.push(Example {
                id: format!("{class}/{i}"),
                hash: format!("{:016x}", class * per_class + i),
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

/// Seconds to train a head on `classes` classes, and the report's JSON size in bytes.
fn train_classes(classes: usize, per_class: usize) -> (f64, usize, f64) {
    let set = clustered(classes, per_class, classes as u64);
    let device = Device::flex();
    let started = Instant::now();
    let trained = block_on(train(
        &set,
        &TrainOptions::default(),
        &mut NoImages,
        &mut Quiet,
        &EfficientNetLite0::new(&device),
        &device,
    ))
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let report = serde_json::to_vec(&trained.report).unwrap();
    let accuracy = trained.report.validation.as_ref().unwrap().accuracy;
    (seconds, report.len(), accuracy)
}

#[test]
fn a_thousand_classes_cost_in_proportion_and_report_in_bounds() {
    // The same 2,000 images in 100 classes and in 400.
    let (small_seconds, small_bytes, small_accuracy) = train_classes(100, 20);
    let (large_seconds, large_bytes, large_accuracy) = train_classes(400, 5);
    println!(
        "100 classes: {small_seconds:.1} s, report {small_bytes} bytes, accuracy {small_accuracy:.3}; 400 classes: {large_seconds:.1} s, report {large_bytes} bytes, accuracy {large_accuracy:.3}"
    );
    // Four times the classes: linear is x4, quadratic x16.
    assert!(
        large_seconds < 6.0 * small_seconds,
        "x{:.1} the time for x4 the classes",
        large_seconds / small_seconds
    );
    // A dense 400 x 400 matrix and 400 probabilities per held-out image would be about 2 MB.
    assert!(large_bytes < 256 << 10, "a {large_bytes}-byte report");
    // Separable clusters: the head still learns them.
    assert!(large_accuracy > 0.9, "accuracy {large_accuracy}");
}
