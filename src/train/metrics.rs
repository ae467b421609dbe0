//! Classification metrics computed from a confusion matrix.
//!
//! The matrix is kept sparse (a 4,000-class one is 16 million cells, almost all 0), and a
//! report carries it whole only up to [`FULL_DETAIL_MAX_CLASSES`]; past that, its largest
//! off-diagonal cells.

use std::collections::BTreeMap;

use serde::Serialize;

/// Classes up to which a report carries the whole confusion matrix and every held-out image's
/// probability of every class; past it, the largest confusions and each image's score only, so
/// a report's size grows with the images, not with the square of the classes.
pub const FULL_DETAIL_MAX_CLASSES: usize = 100;

/// How many of the largest confusions a report lists.
pub const TOP_CONFUSIONS: usize = 50;

/// Counts of `(actual, predicted)` pairs, with each class's row and column totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    cells: BTreeMap<(usize, usize), usize>,
    actual_totals: Vec<usize>,
    predicted_totals: Vec<usize>,
}

/// One cell of the matrix off its diagonal: `count` images of `actual` predicted as `predicted`
/// (indices into the labels).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub actual: usize,
    pub predicted: usize,
    pub count: usize,
}

/// Precision and recall of one class (`None` when undefined: nothing predicted / no examples).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassMetrics {
    pub label: String,
    pub support: usize,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

/// The numbers a two-class (screening) task is judged by. The second label is the positive
/// class (with folders sorted by name: `NORMAL`, `PNEUMONIA` makes pneumonia positive).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BinaryMetrics {
    pub positive: String,
    /// Recall of the positive class: the share of positive cases found.
    pub sensitivity: Option<f64>,
    /// Recall of the negative class: the share of negative cases cleared.
    pub specificity: Option<f64>,
    /// Area under the ROC curve of the positive class's probability (needs scores).
    pub roc_auc: Option<f64>,
}

/// What `graft eval` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    pub images: usize,
    pub accuracy: f64,
    pub labels: Vec<String>,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[actual][predicted]`, up to [`FULL_DETAIL_MAX_CLASSES`] classes (else `None`).
    pub confusion: Option<Vec<Vec<usize>>>,
    /// The largest off-diagonal cells, largest first (ties by class order), at most
    /// [`TOP_CONFUSIONS`].
    pub top_confusions: Vec<Confusion>,
    /// Present for two classes only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary: Option<BinaryMetrics>,
}

/// ROC AUC from the Mann-Whitney statistic: the probability that a random positive case
/// scores above a random negative one, ties counting half. `None` without both kinds of case.
pub fn roc_auc(scores: &[f32], positive: &[bool]) -> Option<f64> {
    let positives = positive.iter().filter(|&&p| p).count();
    let negatives = positive.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average 1-based ranks over runs of tied scores.
    let mut rank_sum_of_positives = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let average_rank = (start + 1 + end) as f64 / 2.0;
        rank_sum_of_positives +=
            average_rank * order[start..end].iter().filter(|&&i| positive[i]).count() as f64;
        start = end;
    }
    let u = rank_sum_of_positives - (positives * (positives + 1)) as f64 / 2.0;
    Some(u / (positives * negatives) as f64)
}

/// Metrics from class probabilities (`probabilities[i]` over the labels) against the truth:
/// the prediction is the most probable class; two-class tasks also get ROC AUC.
pub fn evaluate(labels: &[String], actual: &[usize], probabilities: &[Vec<f32>]) -> Evaluation {
    let predicted: Vec<usize> = probabilities
        .iter()
        .map(|row| {
            (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                .unwrap_or(0)
        })
        .collect();
    let mut evaluation =
        ConfusionMatrix::from_pairs(labels.len(), actual, &predicted).evaluation(labels);
    if let Some(binary) = &mut evaluation.binary {
        let scores: Vec<f32> = probabilities.iter().map(|row| row[1]).collect();
        let positive: Vec<bool> = actual.iter().map(|&a| a == 1).collect();
        binary.roc_auc = roc_auc(&scores, &positive);
    }
    evaluation
}

fn ratio(numerator: usize, denominator: usize) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

impl ConfusionMatrix {
    pub fn new(num_classes: usize) -> Self {
        Self {
            cells: BTreeMap::new(),
            actual_totals: vec![0; num_classes],
            predicted_totals: vec![0; num_classes],
        }
    }

    pub fn from_pairs(num_classes: usize, actual: &[usize], predicted: &[usize]) -> Self {
        let mut matrix = Self::new(num_classes);
        for (&a, &p) in actual.iter().zip(predicted) {
            *matrix.cells.entry((a, p)).or_default() += 1;
            matrix.actual_totals[a] += 1;
            matrix.predicted_totals[p] += 1;
        }
        matrix
    }

    /// Images of `actual` predicted as `predicted`.
    pub fn count(&self, actual: usize, predicted: usize) -> usize {
        self.cells.get(&(actual, predicted)).copied().unwrap_or(0)
    }

    /// The whole matrix, `[actual][predicted]`.
    pub fn dense(&self) -> Vec<Vec<usize>> {
        let classes = self.actual_totals.len();
        let mut counts = vec![vec![0; classes]; classes];
        for (&(a, p), &count) in &self.cells {
            counts[a][p] = count;
        }
        counts
    }

    /// The `n` largest off-diagonal cells, largest first.
    pub fn top_confusions(&self, n: usize) -> Vec<Confusion> {
        let mut off_diagonal: Vec<Confusion> = self
            .cells
            .iter()
            .filter(|((a, p), _)| a != p)
            .map(|(&(actual, predicted), &count)| Confusion {
                actual,
                predicted,
                count,
            })
            .collect();
        off_diagonal.sort_by_key(|c| std::cmp::Reverse(c.count));
        off_diagonal.truncate(n);
        off_diagonal
    }

    pub fn total(&self) -> usize {
        self.actual_totals.iter().sum()
    }

    pub fn correct(&self) -> usize {
        (0..self.actual_totals.len())
            .map(|i| self.count(i, i))
            .sum()
    }

    /// Fraction correct; 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total()).unwrap_or(0.0)
    }

    pub fn precision(&self, class: usize) -> Option<f64> {
        ratio(self.count(class, class), self.predicted_totals[class])
    }

    pub fn recall(&self, class: usize) -> Option<f64> {
        ratio(self.count(class, class), self.actual_totals[class])
    }

    pub fn evaluation(&self, labels: &[String]) -> Evaluation {
        let per_class = labels
            .iter()
            .enumerate()
            .map(|(i, label)| ClassMetrics {
                label: label.clone(),
                support: self.actual_totals[i],
                precision: self.precision(i),
                recall: self.recall(i),
            })
            .collect();
        let binary = (labels.len() == 2).then(|| BinaryMetrics {
            positive: labels[1].clone(),
            sensitivity: self.recall(1),
            specificity: self.recall(0),
            roc_auc: None,
        });
        Evaluation {
            images: self.total(),
            accuracy: self.accuracy(),
            labels: labels.to_vec(),
            per_class,
            confusion: (labels.len() <= FULL_DETAIL_MAX_CLASSES).then(|| self.dense()),
            top_confusions: self.top_confusions(TOP_CONFUSIONS),
            binary,
        }
    }
}

impl std::fmt::Display for Evaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct =
            |v: Option<f64>| v.map_or("   n/a".to_string(), |v| format!("{:5.1}%", v * 100.0));
        writeln!(
            f,
            "accuracy {:.2}% on {} images",
            self.accuracy * 100.0,
            self.images
        )?;
        let width = self
            .labels
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(5)
            .max(5);
        if let Some(binary) = &self.binary {
            let auc = binary
                .roc_auc
                .map_or("n/a".to_string(), |v| format!("{v:.4}"));
            writeln!(
                f,
                "sensitivity {} specificity {} (positive class: {}), ROC AUC {auc}",
                pct(binary.sensitivity).trim(),
                pct(binary.specificity).trim(),
                binary.positive
            )?;
        }
        writeln!(f, "{:width$}  precision  recall  support", "class")?;
        for class in &self.per_class {
            writeln!(
                f,
                "{:width$}     {}  {}  {:7}",
                class.label,
                pct(class.precision),
                pct(class.recall),
                class.support
            )?;
        }
        let Some(confusion) = &self.confusion else {
            writeln!(f, "most frequent confusions (actual -> predicted: images)")?;
            for c in &self.top_confusions {
                let (actual, predicted) = (&self.labels[c.actual], &self.labels[c.predicted]);
                writeln!(f, "{actual} -> {predicted}: {}", c.count)?;
            }
            return Ok(());
        };
        writeln!(f, "confusion matrix (rows: actual, columns: predicted)")?;
        write!(f, "{:width$}", "")?;
        for label in &self.labels {
            write!(f, " {label:>width$}")?;
        }
        writeln!(f)?;
        for (label, row) in self.labels.iter().zip(confusion) {
            write!(f, "{label:width$}")?;
            for count in row {
                write!(f, " {count:>width$}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_hand_computed_values() {
        // actual:    0 0 0 0 1 1 1 2
        // predicted: 0 0 1 2 1 1 0 2
        let m =
            ConfusionMatrix::from_pairs(3, &[0, 0, 0, 0, 1, 1, 1, 2], &[0, 0, 1, 2, 1, 1, 0, 2]);
        assert_eq!(m.dense(), vec![vec![2, 1, 1], vec![1, 2, 0], vec![0, 0, 1]]);
        // The largest mistakes first; ties in class order.
        let top: Vec<_> = m
            .top_confusions(3)
            .into_iter()
            .map(|c| (c.actual, c.predicted, c.count))
            .collect();
        assert_eq!(top, vec![(0, 1, 1), (0, 2, 1), (1, 0, 1)]);
        assert_eq!(m.accuracy(), 5.0 / 8.0);
        assert_eq!(m.precision(0), Some(2.0 / 3.0));
        assert_eq!(m.recall(0), Some(0.5));
        assert_eq!(m.precision(2), Some(0.5));
        assert_eq!(m.recall(2), Some(1.0));
    }

    #[test]
    fn binary_metrics_match_hand_computed_values() {
        let labels = vec!["NORMAL".to_string(), "PNEUMONIA".to_string()];
        // Positive-class probabilities; actual: N N N P P P.
        let scores = [0.1f32, 0.4, 0.7, 0.35, 0.8, 0.9];
        let actual = [0, 0, 0, 1, 1, 1];
        let probabilities: Vec<Vec<f32>> = scores.iter().map(|&p| vec![1.0 - p, p]).collect();
        let evaluation = evaluate(&labels, &actual, &probabilities);
        let binary = evaluation.binary.unwrap();
        assert_eq!(binary.positive, "PNEUMONIA");
        // Predicted: N N P N P P -> TP 2, FN 1, TN 2, FP 1.
        assert_eq!(binary.sensitivity, Some(2.0 / 3.0));
        assert_eq!(binary.specificity, Some(2.0 / 3.0));
        // Pairs (pos, neg) with pos > neg: 0.35 beats 0.1 only (1); 0.8 and 0.9 beat all 3
        // each (6): 7 of 9.
        assert_eq!(binary.roc_auc, Some(7.0 / 9.0));
        assert_eq!(evaluation.accuracy, 4.0 / 6.0);
    }

    #[test]
    fn roc_auc_counts_ties_as_half_and_needs_both_classes() {
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.2, 0.9, 0.9], &[false, true, false]), Some(0.75));
        assert_eq!(roc_auc(&[0.2, 0.9], &[true, true]), None);
        assert_eq!(roc_auc(&[0.1, 0.2, 0.3], &[false, false, true]), Some(1.0));
    }

    #[test]
    fn more_than_two_classes_have_no_binary_block() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let m = ConfusionMatrix::from_pairs(3, &[0, 1, 2], &[0, 1, 2]);
        assert!(m.evaluation(&labels).binary.is_none());
    }

    #[test]
    fn many_classes_report_their_largest_confusions_not_the_matrix() {
        let classes = FULL_DETAIL_MAX_CLASSES + 1;
        let labels: Vec<String> = (0..classes).map(|c| format!("c{c}")).collect();
        // Every image right, except class 7 taken for 9 three times and 3 for 4 once.
        let mut actual: Vec<usize> = (0..classes).collect();
        let mut predicted = actual.clone();
        actual.extend([7, 7, 7, 3]);
        predicted.extend([9, 9, 9, 4]);
        let evaluation =
            ConfusionMatrix::from_pairs(classes, &actual, &predicted).evaluation(&labels);
        assert_eq!(evaluation.confusion, None);
        assert_eq!(
            evaluation.top_confusions,
            vec![
                Confusion {
                    actual: 7,
                    predicted: 9,
                    count: 3
                },
                Confusion {
                    actual: 3,
                    predicted: 4,
                    count: 1
                }
            ]
        );
        assert_eq!(evaluation.per_class[9].precision, Some(0.25));
        assert!(evaluation.to_string().contains("c7 -> c9: 3"));
        let small = ConfusionMatrix::from_pairs(3, &[0, 1], &[0, 2]).evaluation(&labels[..3]);
        assert_eq!(
            small.confusion,
            Some(vec![vec![1, 0, 0], vec![0, 0, 1], vec![0, 0, 0]])
        );
    }

    #[test]
    fn undefined_metrics_are_none_not_nan() {
        let m = ConfusionMatrix::from_pairs(2, &[0, 0], &[0, 0]);
        assert_eq!(m.precision(1), None);
        assert_eq!(m.recall(1), None);
        assert_eq!(ConfusionMatrix::new(2).accuracy(), 0.0);
    }
}
