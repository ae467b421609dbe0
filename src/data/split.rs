//! Seeded randomness and the stratified train/validation split.

/// A small, fixed random generator (SplitMix64): the same seed gives the same split and the same
/// batch order on every platform and every version of Graft, which `rand` does not promise.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (bound > 0), without modulo bias worth mentioning at these sizes.
    pub fn below(&mut self, bound: usize) -> usize {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * bound as f64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32) / (1u32 << 24) as f32
    }

    /// `count` values uniform in `(-bound, bound)`: PyTorch's default initialisation of a
    /// layer with fan-in `n` is `bound = 1 / sqrt(n)`.
    pub fn uniform(&mut self, count: usize, bound: f32) -> Vec<f32> {
        (0..count)
            .map(|_| (self.unit() * 2.0 - 1.0) * bound)
            .collect()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Indices of a labelled set divided into training and validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
}

/// Splits per class so every class keeps its share on both sides: `fraction` of each class
/// (rounded, at least one image when the class has two or more) goes to validation.
/// Deterministic for a given seed; indices come back sorted.
pub fn stratified_split(labels: &[usize], fraction: f64, seed: u64) -> Split {
    let num_classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut rng = SeededRng::new(seed);
    let mut split = Split {
        train: Vec::new(),
        validation: Vec::new(),
    };
    for class in 0..num_classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rng.shuffle(&mut members);
        let mut held_out = (members.len() as f64 * fraction).round() as usize;
        if fraction > 0.0 && held_out == 0 && members.len() >= 2 {
            held_out = 1;
        }
        held_out = held_out.min(members.len().saturating_sub(1));
        split.validation.extend_from_slice(&members[..held_out]);
        split.train.extend_from_slice(&members[held_out..]);
    }
    split.train.sort_unstable();
    split.validation.sort_unstable();
    split
}

/// Assigns each example to one of `k` folds for cross-validation, class by class, so that
/// every fold holds its share of each class. Deterministic for a given seed and order.
pub fn stratified_folds(labels: &[usize], k: usize, seed: u64) -> Vec<usize> {
    let num_classes = labels.iter().max().map_or(0, |m| m + 1);
    // Its own stream: the folds must not repeat the validation split's draws.
    let mut rng = SeededRng::new(seed ^ 0xF01D_5EED_C0FF_EE00);
    let mut folds = vec![0; labels.len()];
    let mut next = 0;
    for class in 0..num_classes {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rng.shuffle(&mut members);
        // Dealt round-robin, continuing where the previous class stopped, so that folds stay
        // within one image of each other in size.
        for i in members {
            folds[i] = next % k;
            next += 1;
        }
    }
    folds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_stratified_and_complete() {
        let labels: Vec<usize> = (0..100).map(|i| if i < 80 { 0 } else { 1 }).collect();
        let split = stratified_split(&labels, 0.15, 7);
        let val_of = |c| split.validation.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!(val_of(0), 12);
        assert_eq!(val_of(1), 3);
        let mut all: Vec<usize> = split
            .train
            .iter()
            .chain(&split.validation)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn split_is_deterministic_by_seed() {
        let labels: Vec<usize> = (0..60).map(|i| i % 3).collect();
        assert_eq!(
            stratified_split(&labels, 0.2, 1),
            stratified_split(&labels, 0.2, 1)
        );
        assert_ne!(
            stratified_split(&labels, 0.2, 1),
            stratified_split(&labels, 0.2, 2)
        );
    }

    #[test]
    fn small_classes_keep_a_training_image() {
        let split = stratified_split(&[0, 0, 1, 1, 1], 0.15, 3);
        assert_eq!(split.validation.len(), 2); // one per class
        let split = stratified_split(&[0, 1], 0.5, 3);
        assert!(split.validation.is_empty()); // a lone image always trains
    }

    #[test]
    fn folds_are_stratified_and_balanced() {
        let labels: Vec<usize> = (0..53).map(|i| usize::from(i >= 40)).collect();
        let folds = stratified_folds(&labels, 5, 9);
        for fold in 0..5 {
            let of_class = |c| {
                (0..53)
                    .filter(|&i| folds[i] == fold && labels[i] == c)
                    .count()
            };
            assert_eq!(of_class(0), 8, "fold {fold}");
            assert!((2..=3).contains(&of_class(1)), "fold {fold}");
        }
        assert_eq!(folds, stratified_folds(&labels, 5, 9));
        assert_ne!(folds, stratified_folds(&labels, 5, 10));
    }

    #[test]
    fn rng_is_stable_across_versions() {
        // Pinned values: changing the generator would silently change every user's split.
        let mut rng = SeededRng::new(42);
        assert_eq!(rng.next_u64(), 0xBDD7_3226_2FEB_6E95);
    }
}
