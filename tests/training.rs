//! The training recipe on synthetic embeddings, whose best possible accuracy is known: the head
//! is solved to what the features allow, its penalty is picked from the training data, the
//! held-out images never train, the order of the examples does not matter, and bad input is
//! refused by name.

use burn::tensor::Device;
use futures_lite::future::block_on;
use graft::data::SeededRng;
use graft::model::{EfficientNetLite0, FEATURE_DIM};
use graft::train::{
    Balance, Example, ImageSource, Observer, TrainEvent, TrainOptions, TrainReport, Trained,
    TrainingSet, train,
};

/// Embeddings like the backbone's: low-rank (a few latent factors spread over all 1280
/// features) plus a little noise in every feature. Two Gaussian classes differ along the first
/// `informative` of 8 latent axes by `shift` standard deviations each, so the best any
/// classifier can do is Phi(shift * sqrt(informative) / 2); the per-feature noise lets a weakly
/// penalised head fit its training images perfectly and generalise worse.
fn gaussians(
    per_class: [usize; 2],
    informative: usize,
    shift: f32,
    seed: u64,
) -> (Vec<f32>, Vec<usize>) {
    const LATENT: usize = 8;
    // The mixing matrix is the same for every call (seed 0), so sets drawn with different seeds
    // come from one distribution.
    let mut mixing_rng = SeededRng::new(0);
    let mixing: Vec<f32> = (0..LATENT * FEATURE_DIM)
        .map(|_| mixing_rng.unit() * 2.0 - 1.0)
        .collect();
    let mut rng = SeededRng::new(seed);
    let mut normal = move || {
        // Box-Muller.
        let (u, v) = (rng.unit().max(1e-7), rng.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
    };
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for (label, &count) in per_class.iter().enumerate() {
        for _ in 0..count {
            let latent: Vec<f32> = (0..LATENT)
                .map(|k| {
                    normal()
                        + if k < informative {
                            shift * (label as f32 - 0.5)
                        } else {
                            0.0
                        }
                })
                .collect();
            for d in 0..FEATURE_DIM {
                let mixed: f32 = (0..LATENT)
                    .map(|k| mixing[k * FEATURE_DIM + d] * latent[k])
                    .sum();
                features.push(1.0 + 0.3 * mixed + 0.3 * normal());
            }
            labels.push(label);
        }
    }
    (features, labels)
}

fn set_of(features: Vec<f32>, labels: Vec<usize>, classes: usize) -> TrainingSet {
    TrainingSet {
        labels: (0..classes).map(|c| format!("class {c}")).collect(),
        examples: labels
            .iter()
            .enumerate()
            .map(|(i, &label)| Example {
                id: format!("example {i}"),
                hash: format!("{i:016x}"),
                label,
            })
            .collect(),
        embeddings: features,
        fixed_validation: None,
        skipped: Vec::new(),
    }
}

/// Head-only training needs no images.
struct NoImages;

impl ImageSource for NoImages {
    async fn load(&mut self, _: &[usize]) -> graft::Result<Vec<image::RgbaImage>> {
        panic!("head-only training asked for images")
    }
}

#[derive(Default)]
struct Recorder {
    searched: usize,
    stop: bool,
}

impl Observer for Recorder {
    fn on_event(&mut self, event: TrainEvent<'_>) {
        if let TrainEvent::HeadSearch { .. } = event {
            self.searched += 1;
        }
    }

    fn should_stop(&mut self) -> bool {
        self.stop
    }
}

fn backbone() -> EfficientNetLite0 {
    // Head-only training never runs the backbone; an untrained one stands in.
    EfficientNetLite0::new(&Device::flex())
}

fn run(set: &TrainingSet, options: &TrainOptions) -> graft::Result<Trained> {
    block_on(train(
        set,
        options,
        &mut NoImages,
        &mut Recorder::default(),
        &backbone(),
        &Device::flex(),
    ))
}

/// Accuracy of a trained model's head on fresh examples, through the saved head itself.
fn accuracy_on(trained: &Trained, features: &[f32], labels: &[usize]) -> f64 {
    let test = graft::train::Embeddings {
        features: features.to_vec(),
        labels: labels.to_vec(),
    };
    let rows = block_on(graft::predict::head_probabilities(
        &trained.model.model.head,
        &test,
        &Device::flex(),
    ))
    .unwrap();
    let correct = rows
        .iter()
        .zip(labels)
        .filter(|(row, label)| graft::train::session::argmax(row) == **label)
        .count();
    correct as f64 / labels.len() as f64
}

#[test]
fn the_head_reaches_what_the_features_allow() {
    // 4 informative latent axes shifted by 0.8: the best accuracy is Phi(0.8 * 2 / 2) = 78.8%.
    let (features, labels) = gaussians([150, 150], 4, 0.8, 1);
    let (test_x, test_y) = gaussians([1000, 1000], 4, 0.8, 2);
    let set = set_of(features, labels, 2);
    let solved = run(&set, &TrainOptions::default()).unwrap();
    let head = &solved.report.head;
    assert_eq!(head.fit.l2_source, "crossValidation");
    assert!(head.fit.converged, "{head:?}");
    let cross_validated = accuracy_on(&solved, &test_x, &test_y);

    // With 1280 dimensions and 240 training points a weak penalty fits the noise.
    let weak = run(
        &set,
        &TrainOptions {
            l2: Some(1e-4),
            ..TrainOptions::default()
        },
    )
    .unwrap();
    let overfit = accuracy_on(&weak, &test_x, &test_y);
    println!(
        "held-out accuracy: cross-validated L2 {:.3e} -> {cross_validated:.4}; L2 1e-4 -> {overfit:.4}; best possible 0.788",
        head.fit.l2
    );
    assert!(
        cross_validated > 0.76,
        "cross-validated head: {cross_validated}"
    );
    assert!(
        cross_validated > overfit + 0.01,
        "{cross_validated} vs {overfit}"
    );
    assert!(head.fit.l2 > 1e-3, "picked {}", head.fit.l2);
    // The path stopped once cross-validation got worse, without trying every strength.
    assert!(
        head.fit.search.len() < graft::train::head_fit::L2_GRID.len(),
        "{:?}",
        head.fit.search
    );
}

#[test]
fn held_out_examples_never_train_and_their_report_is_theirs() {
    let (features, labels) = gaussians([60, 60], 6, 1.5, 3);
    let set = set_of(features, labels, 2);
    let trained = run(
        &set,
        &TrainOptions {
            validation_split: 0.25,
            ..TrainOptions::default()
        },
    )
    .unwrap();
    let report = &trained.report;
    assert_eq!((report.train_images, report.validation_images), (90, 30));
    // The report's validation numbers are the saved head's on exactly the held-out examples.
    let held_out: Vec<usize> = report
        .validation_examples
        .iter()
        .map(|v| set.examples.iter().position(|e| e.id == v.id).unwrap())
        .collect();
    let rows: Vec<f32> = held_out
        .iter()
        .flat_map(|&i| set.embeddings[i * FEATURE_DIM..(i + 1) * FEATURE_DIM].to_vec())
        .collect();
    let truth: Vec<usize> = held_out.iter().map(|&i| set.examples[i].label).collect();
    let accuracy = accuracy_on(&trained, &rows, &truth);
    assert_eq!(
        Some(accuracy),
        report.validation.as_ref().map(|v| v.accuracy)
    );
    assert_eq!(Some(accuracy), report.head.val_accuracy);
    // The model file names them by content hash.
    let split = trained
        .model
        .model
        .info
        .training
        .as_ref()
        .unwrap()
        .split
        .clone()
        .unwrap();
    let mut hashes: Vec<String> = held_out
        .iter()
        .map(|&i| set.examples[i].hash.clone())
        .collect();
    hashes.sort();
    assert_eq!(split.held_out, hashes);
}

#[test]
fn the_order_of_the_examples_does_not_change_the_model() {
    let (features, labels) = gaussians([40, 40], 6, 1.5, 4);
    let set = set_of(features, labels, 2);
    let mut shuffled = set.clone();
    let mut order: Vec<usize> = (0..set.examples.len()).collect();
    SeededRng::new(7).shuffle(&mut order);
    shuffled.examples = order.iter().map(|&i| set.examples[i].clone()).collect();
    shuffled.embeddings = order
        .iter()
        .flat_map(|&i| set.embeddings[i * FEATURE_DIM..(i + 1) * FEATURE_DIM].to_vec())
        .collect();
    let report = |set: &TrainingSet| -> TrainReport {
        let mut report = run(set, &TrainOptions::default()).unwrap().report;
        report.seconds = 0.0;
        report.head.seconds = 0.0;
        report
    };
    assert_eq!(report(&set), report(&shuffled));
    let other_seed = run(
        &set,
        &TrainOptions {
            seed: 43,
            ..TrainOptions::default()
        },
    )
    .unwrap()
    .report;
    assert_ne!(
        other_seed.validation_examples,
        report(&set).validation_examples
    );
}

#[test]
fn a_hidden_layer_learns_what_a_linear_head_cannot() {
    // XOR of the signs of two latent factors, mixed into every feature: no hyperplane
    // separates the classes.
    let mut rng = SeededRng::new(5);
    let mixing: Vec<f32> = (0..3 * FEATURE_DIM)
        .map(|_| rng.unit() * 2.0 - 1.0)
        .collect();
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..240 {
        let (a, b) = (rng.unit() > 0.5, rng.unit() > 0.5);
        let sign = |on: bool| if on { 1.0 } else { -1.0 };
        let latent = [
            sign(a) + 0.3 * (rng.unit() - 0.5),
            sign(b) + 0.3 * (rng.unit() - 0.5),
            rng.unit() - 0.5,
        ];
        for d in 0..FEATURE_DIM {
            let mixed: f32 = (0..3)
                .map(|k| mixing[k * FEATURE_DIM + d] * latent[k])
                .sum();
            features.push(1.0 + 0.3 * mixed + 0.02 * rng.unit());
        }
        labels.push(usize::from(a != b));
    }
    let set = set_of(features, labels, 2);
    let options = TrainOptions {
        validation_split: 0.25,
        ..TrainOptions::default()
    };
    let accuracy = |trained: Trained| trained.report.validation.unwrap().accuracy;
    let linear = accuracy(run(&set, &options).unwrap());
    let hidden = run(
        &set,
        &TrainOptions {
            hidden_units: Some(16),
            ..options
        },
    )
    .unwrap();
    assert!(hidden.model.model.head.hidden.is_some());
    let hidden = accuracy(hidden);
    assert!(
        linear < 0.75 && hidden > 0.9,
        "linear {linear}, hidden {hidden}"
    );
}

#[test]
fn imbalanced_classes_are_weighted() {
    // 9 to 1, overlapping: unweighted, the rare class is mostly called the common one.
    let (features, labels) = gaussians([270, 30], 4, 1.0, 6);
    let set = set_of(features, labels, 2);
    let (test_x, test_y) = gaussians([0, 1000], 4, 1.0, 7);
    let recall = |balance| {
        let trained = run(
            &set,
            &TrainOptions {
                balance,
                ..TrainOptions::default()
            },
        )
        .unwrap();
        (
            accuracy_on(&trained, &test_x, &test_y),
            trained.report.head.fit.class_weights,
        )
    };
    let (weighted, weights) = recall(Balance::Auto);
    let (plain, none) = recall(Balance::Off);
    assert!(weights.is_some() && none.is_none());
    assert!(
        weighted > plain + 0.1,
        "rare-class recall {weighted} (weighted) vs {plain}"
    );
}

#[test]
fn stopping_still_leaves_a_solved_head() {
    let (features, labels) = gaussians([30, 30], 6, 2.0, 8);
    let set = set_of(features, labels, 2);
    let mut observer = Recorder {
        stop: true,
        ..Recorder::default()
    };
    let trained = block_on(train(
        &set,
        &TrainOptions::default(),
        &mut NoImages,
        &mut observer,
        &backbone(),
        &Device::flex(),
    ))
    .unwrap();
    assert!(trained.report.stopped);
    assert_eq!(
        observer.searched, 1,
        "the search stops after the strength it was on"
    );
    assert!(trained.report.validation.unwrap().accuracy > 0.9);
}

#[test]
fn bad_sets_and_options_are_refused_by_name() {
    let (features, labels) = gaussians([5, 5], 5, 1.0, 9);
    let good = set_of(features, labels, 2);
    let error = |set: &TrainingSet, options: &TrainOptions| run(set, options).unwrap_err();

    let one_class = TrainingSet {
        labels: vec!["only".into()],
        ..good.clone()
    };
    assert!(
        error(&one_class, &TrainOptions::default())
            .to_string()
            .contains("at least 2 classes")
    );
    let mut twice = good.clone();
    twice.examples[1].hash = twice.examples[0].hash.clone();
    assert!(
        error(&twice, &TrainOptions::default())
            .to_string()
            .contains("are the same image")
    );
    let mut nan = good.clone();
    nan.embeddings[3] = f32::NAN;
    assert!(
        error(&nan, &TrainOptions::default())
            .to_string()
            .contains("NaN")
    );
    let bad = error(
        &good,
        &TrainOptions {
            validation_split: 1.5,
            ..TrainOptions::default()
        },
    );
    assert_eq!(bad.code(), "INVALID_OPTION");
    assert!(bad.to_string().contains("validationSplit"));
}

/// `per_class` embeddings around each of `classes` random centres.
fn clustered(classes: usize, per_class: usize, seed: u64) -> TrainingSet {
    let mut rng = SeededRng::new(seed);
    let centres: Vec<f32> = (0..classes * FEATURE_DIM)
        .map(|_| 2.0 * rng.unit())
        .collect();
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for class in 0..classes {
        let centre = &centres[class * FEATURE_DIM..(class + 1) * FEATURE_DIM];
        for _ in 0..per_class {
            features.extend(centre.iter().map(|c| c + 1.5 * (rng.unit() - 0.5)));
            labels.push(class);
        }
    }
    set_of(features, labels, classes)
}

/// Many classes: training time in proportion to the classes, and a report whose size does not
/// grow with their square (a 4,000-class run once wrote a 396 MB report, mostly a dense
/// confusion matrix and every held-out image's probability of every class).
#[test]
fn many_classes_cost_in_proportion_and_report_in_bounds() {
    let measure = |classes: usize, per_class: usize| {
        let set = clustered(classes, per_class, classes as u64);
        let started = std::time::Instant::now();
        let trained = run(&set, &TrainOptions::default()).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let bytes = serde_json::to_vec(&trained.report).unwrap().len();
        let accuracy = trained.report.validation.as_ref().unwrap().accuracy;
        (seconds, bytes, accuracy)
    };
    // The same 2,000 images in 100 classes and in 400.
    let (small_seconds, small_bytes, small_accuracy) = measure(100, 20);
    let (large_seconds, large_bytes, large_accuracy) = measure(400, 5);
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
