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

/// What `graft eval` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    pub images: usize,
    pub accuracy: f64,
    pub labels: Vec<String>,
    pub per_class: Vec<ClassMetrics>,
    pub confusion: ConfusionMatrix,
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
        Evaluation {
            images: self.total(),
            accuracy: self.accuracy(),
            labels: labels.to_vec(),
            per_class,
            confusion: self.clone(),
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
    fn undefined_metrics_are_none_not_nan() {
        let m = ConfusionMatrix::from_pairs(2, &[0, 0], &[0, 0]);
        assert_eq!(m.precision(1), None);
        assert_eq!(m.recall(1), None);
        assert_eq!(ConfusionMatrix::new(2).accuracy(), 0.0);
    }
}
