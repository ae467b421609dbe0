//! Classification metrics computed from a confusion matrix.

use serde::Serialize;

/// `counts[actual][predicted]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ConfusionMatrix {
    pub counts: Vec<Vec<usize>>,
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
    pub confusion: ConfusionMatrix,
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
            counts: vec![vec![0; num_classes]; num_classes],
        }
    }

    pub fn from_pairs(num_classes: usize, actual: &[usize], predicted: &[usize]) -> Self {
        let mut matrix = Self::new(num_classes);
        for (&a, &p) in actual.iter().zip(predicted) {
            matrix.counts[a][p] += 1;
        }
        matrix
    }

    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    pub fn correct(&self) -> usize {
        (0..self.counts.len()).map(|i| self.counts[i][i]).sum()
    }

    /// Fraction correct; 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total()).unwrap_or(0.0)
    }

    pub fn precision(&self, class: usize) -> Option<f64> {
        let predicted: usize = self.counts.iter().map(|row| row[class]).sum();
        ratio(self.counts[class][class], predicted)
    }

    pub fn recall(&self, class: usize) -> Option<f64> {
        ratio(self.counts[class][class], self.counts[class].iter().sum())
    }

    pub fn evaluation(&self, labels: &[String]) -> Evaluation {
        let per_class = labels
            .iter()
            .enumerate()
            .map(|(i, label)| ClassMetrics {
                label: label.clone(),
                support: self.counts[i].iter().sum(),
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
            confusion: self.clone(),
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
        writeln!(f, "confusion matrix (rows: actual, columns: predicted)")?;
        write!(f, "{:width$}", "")?;
        for label in &self.labels {
            write!(f, " {label:>width$}")?;
        }
        writeln!(f)?;
        for (label, row) in self.labels.iter().zip(&self.confusion.counts) {
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
        assert_eq!(m.counts, vec![vec![2, 1, 1], vec![1, 2, 0], vec![0, 0, 1]]);
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
    fn undefined_metrics_are_none_not_nan() {
        let m = ConfusionMatrix::from_pairs(2, &[0, 0], &[0, 0]);
        assert_eq!(m.precision(1), None);
        assert_eq!(m.recall(1), None);
        assert_eq!(ConfusionMatrix::new(2).accuracy(), 0.0);
    }
}
