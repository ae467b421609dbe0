//! The largest training the engine takes on, checked before anything is embedded or allocated.
//!
//! Solving the head keeps every embedding in memory several times over (the examples, their
//! canonical order, the training part, standardised, on the device, and the folds of the
//! penalty search), a row of scores per example and class, and a hidden layer's activations.
//! Past what memory holds, training does not slow down: it dies (in a browser tab, wasm32's
//! memory cannot pass 4 GiB, and the engine's module traps with `unreachable`). So a training
//! that would not fit is refused up front, with its numbers, and an import that would make the
//! project too large to train is refused before its images are embedded.

use crate::error::{GraftError, Result};

/// Memory head training may take. A browser tab's engine is one wasm32 memory (at most 4 GiB),
/// which also holds the backbone's weights (about 0.3 GB) and the examples themselves (5 KB
/// each); natively the process may grow further.
pub const MEMORY_BUDGET_BYTES: u64 = if cfg!(target_arch = "wasm32") {
    2 << 30
} else {
    16 << 30
};

/// Peak memory of head training, measured natively and in Chromium (see
/// `tests/training.rs`, `training_memory_stays_within_its_estimate`): per example, per example
/// and class (the scores and their gradients), per example and hidden unit, and per weight of
/// the head (the solver's curvature pairs, in f64).
const BYTES_PER_EXAMPLE: u64 = 32 << 10;
const BYTES_PER_EXAMPLE_AND_CLASS: u64 = 32;
const BYTES_PER_EXAMPLE_AND_HIDDEN_UNIT: u64 = 24;
const BYTES_PER_HEAD_WEIGHT: u64 = 8 * 24;

/// Estimated peak memory of training a head on `examples` embeddings in `classes` classes.
pub fn head_training_bytes(examples: usize, classes: usize, hidden_units: Option<usize>) -> u64 {
    let (n, c, h) = (
        examples as u64,
        classes as u64,
        hidden_units.unwrap_or(0) as u64,
    );
    let weights = match h {
        0 => crate::model::FEATURE_DIM as u64 * c,
        h => (crate::model::FEATURE_DIM as u64 + c) * h,
    };
    n * (BYTES_PER_EXAMPLE
        + c * BYTES_PER_EXAMPLE_AND_CLASS
        + h * BYTES_PER_EXAMPLE_AND_HIDDEN_UNIT)
        + weights * BYTES_PER_HEAD_WEIGHT
}

/// Refuses a training of `examples` images in `classes` classes that would not fit in
/// [`MEMORY_BUDGET_BYTES`], with what it would take and what to do.
pub fn check_training_size(
    examples: usize,
    classes: usize,
    hidden_units: Option<usize>,
) -> Result<()> {
    let needed = head_training_bytes(examples, classes, hidden_units);
    if needed <= MEMORY_BUDGET_BYTES {
        return Ok(());
    }
    let gigabytes = |bytes: u64| bytes as f64 / (1u64 << 30) as f64;
    let most = most_examples(classes, hidden_units);
    let hidden = hidden_units.map_or(String::new(), |h| format!(" with {h} hidden units"));
    Err(GraftError::TooLarge {
        what: format!("{examples} images in {classes} classes{hidden}"),
        reason: format!(
            "training them would need about {:.1} GiB of memory, more than the {:.0} GiB the \
             engine allows itself{}; with {classes} classes{hidden} it trains at most {most} \
             images: remove images or classes",
            gigabytes(needed),
            gigabytes(MEMORY_BUDGET_BYTES),
            if cfg!(target_arch = "wasm32") {
                " in a browser tab, whose memory cannot pass 4 GiB"
            } else {
                ""
            },
        ),
    })
}

/// The most examples that fit the budget with `classes` classes.
pub fn most_examples(classes: usize, hidden_units: Option<usize>) -> usize {
    let fixed = head_training_bytes(0, classes, hidden_units);
    let per_example = head_training_bytes(1, classes, hidden_units) - fixed;
    (MEMORY_BUDGET_BYTES.saturating_sub(fixed) / per_example) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_grows_with_fewer_classes_and_refuses_past_it() {
        let few = most_examples(10, None);
        assert!(few > most_examples(1000, None));
        assert!(few > most_examples(10, Some(512)));
        check_training_size(few, 10, None).unwrap();
        let error = check_training_size(few + 1, 10, None).unwrap_err();
        assert_eq!(error.code(), "TOO_LARGE");
        let message = error.to_string();
        assert!(
            message.contains(&format!("{} images in 10 classes", few + 1)),
            "{message}"
        );
        assert!(
            message.contains(&format!("at most {few} images")),
            "{message}"
        );
    }
}
