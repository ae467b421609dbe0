//! The head's training loop on synthetic embeddings: it learns, is seeded, and keeps the best.

use std::ops::ControlFlow;

use burn::tensor::Device;
use futures_lite::future::block_on;
use graft::data::SeededRng;
use graft::model::FEATURE_DIM;
use graft::train::{Embeddings, HeadTraining, train_head};

/// `per_class` noisy points around a different random centre for each class.
fn clusters(classes: usize, per_class: usize, seed: u64) -> Embeddings {
    let mut rng = SeededRng::new(seed);
    let centres: Vec<Vec<f32>> = (0..classes)
        .map(|_| (0..FEATURE_DIM).map(|_| rng.unit() * 2.0).collect())
        .collect();
    let mut data = Embeddings::default();
    for i in 0..classes * per_class {
        let label = i % classes;
        let point: Vec<f32> = centres[label]
            .iter()
            .map(|c| c + (rng.unit() - 0.5) * 3.0)
            .collect();
        data.push(&point, label);
    }
    data
}

#[test]
fn loss_falls_and_the_head_learns() {
    let train = clusters(3, 40, 1);
    let validation = clusters(3, 10, 1).subset(&(0..30).collect::<Vec<_>>());
    let options = HeadTraining {
        epochs: 8,
        ..HeadTraining::default()
    };
    let trained = block_on(train_head(
        &train,
        Some(&validation),
        3,
        &options,
        &Device::flex(),
        |_| ControlFlow::Continue(()),
    ))
    .unwrap();
    let first = &trained.history[0];
    let last = trained.history.last().unwrap();
    assert!(
        last.loss < first.loss * 0.5,
        "loss {} -> {}",
        first.loss,
        last.loss
    );
    let best = &trained.history[trained.best_epoch - 1];
    assert!(best.val_accuracy.unwrap() >= 0.9, "{best:?}");
    assert!(
        trained
            .history
            .iter()
            .all(|r| r.val_accuracy.unwrap() <= best.val_accuracy.unwrap())
    );
}

#[test]
fn a_hidden_layer_learns_too() {
    let train = clusters(2, 30, 11);
    let options = HeadTraining {
        epochs: 6,
        hidden_units: Some(32),
        ..HeadTraining::default()
    };
    let trained = block_on(train_head(
        &train,
        Some(&train),
        2,
        &options,
        &Device::flex(),
        |_| ControlFlow::Continue(()),
    ))
    .unwrap();
    assert!(trained.head.hidden.is_some());
    assert!(
        trained.history.last().unwrap().val_accuracy.unwrap() >= 0.9,
        "{:?}",
        trained.history
    );
}

#[test]
fn same_seed_same_history() {
    let train = clusters(2, 30, 5);
    let run = |seed| {
        let options = HeadTraining {
            epochs: 3,
            seed,
            ..HeadTraining::default()
        };
        block_on(train_head(
            &train,
            None,
            2,
            &options,
            &Device::flex(),
            |_| ControlFlow::Continue(()),
        ))
        .unwrap()
        .history
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

#[test]
fn stopping_early_returns_the_head_so_far() {
    let train = clusters(2, 20, 3);
    let options = HeadTraining {
        epochs: 50,
        ..HeadTraining::default()
    };
    let trained = block_on(train_head(
        &train,
        None,
        2,
        &options,
        &Device::flex(),
        |report| {
            if report.epoch == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    ))
    .unwrap();
    assert_eq!(trained.history.len(), 2);
    assert!(trained.stopped_early);
}

#[test]
fn bad_options_and_data_are_named() {
    let train = clusters(2, 5, 3);
    let device = Device::flex();
    let attempt = |options: HeadTraining, classes: usize, data: &Embeddings| {
        block_on(train_head(data, None, classes, &options, &device, |_| {
            ControlFlow::Continue(())
        }))
        .unwrap_err()
        .to_string()
    };
    let defaults = HeadTraining::default;
    assert!(
        attempt(
            HeadTraining {
                epochs: 0,
                ..defaults()
            },
            2,
            &train
        )
        .contains("epochs")
    );
    assert!(
        attempt(
            HeadTraining {
                learning_rate: -1.0,
                ..defaults()
            },
            2,
            &train
        )
        .contains("learning rate")
    );
    assert!(
        attempt(
            HeadTraining {
                batch_size: 0,
                ..defaults()
            },
            2,
            &train
        )
        .contains("batch size")
    );
    assert!(attempt(defaults(), 1, &train).contains("at least 2"));
    assert!(attempt(defaults(), 2, &Embeddings::default()).contains("no images"));
}
