//! Phase 1: the head, solved to convergence on the cached embeddings.
//!
//! A linear head on frozen features is multinomial logistic regression, a convex problem: it has
//! one optimum, and a full-batch quasi-Newton solver ([`super::lbfgs`]) reaches it in a fraction
//! of a second to a few seconds. What decides accuracy is the strength of the L2 penalty, so it
//! is picked from the training data by stratified k-fold cross-validation over a grid, strongest
//! first, each fit warm-started from the previous strength's (the regularisation path), and the
//! path stops once the cross-validated loss rises past its minimum. Features are
//! standardised with the training set's mean and deviation (floored, see [`SCALE_FLOOR`]); the
//! solved head is mapped back onto raw embeddings, so the saved head is a plain linear layer.
//!
//! An optional hidden layer (ReLU) is trained the same way, full batch, its penalty
//! cross-validated on the hidden-layer head itself with [`HIDDEN_FOLDS`] folds (each fit costs
//! about `hidden units / classes` times a linear one's).
//!
//! Phase 2 keeps the penalty ([`HeadPenalty`]), so fine-tuning starts from and stays near
//! this optimum instead of letting the head overfit.
//!
//! Imbalanced classes are weighted as in phase 2 ([`super::plan::class_weights`]); weights also
//! enter the cross-validated loss, so the penalty is picked for the balanced objective.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::embeddings::Embeddings;
use super::lbfgs::{self, Objective, Settings};
use super::session::{Observer, TrainEvent};
use crate::data::SeededRng;
use crate::data::split::stratified_folds;
use crate::error::{GraftError, Result};
use crate::model::{ClassifierHead, FEATURE_DIM};

/// Candidate L2 strengths, strongest first: 10 down to 1e-4 in half decades.
pub const L2_GRID: [f64; 11] = [
    10.0, 3.16, 1.0, 0.316, 0.1, 0.0316, 0.01, 3.16e-3, 1e-3, 3.16e-4, 1e-4,
];
/// Folds of the cross-validation (fewer when the smallest class is smaller).
pub const FOLDS: usize = 5;
/// Folds when the head has a hidden layer, whose fits cost more.
pub const HIDDEN_FOLDS: usize = 3;
/// The path stops at the first strength that does worse than the best so far (after it
/// improved at least once): the cross-validated loss along the path is smooth, and the weakest
/// penalties cost the most.
const PATIENCE: usize = 1;

/// Cross-validation fits only rank strengths, warm-started along the path: a looser tolerance
/// and fewer iterations than the final fit's.
const SEARCH_SETTINGS: Settings = Settings {
    gradient_tolerance: 1e-4,
    max_iterations: 100,
    memory: 10,
};
const FINAL_SETTINGS: Settings = Settings {
    gradient_tolerance: 1e-5,
    max_iterations: 1000,
    memory: 10,
};

/// What the solver is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadFitOptions {
    pub classes: usize,
    pub hidden_units: Option<usize>,
    /// A fixed penalty; `None` picks it by cross-validation.
    pub l2: Option<f64>,
    /// Loss weight of each class (balancing), or `None` for plain cross-entropy.
    pub class_weights: Option<Vec<f32>>,
    pub seed: u64,
}

/// One candidate penalty and how it did under cross-validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L2Trial {
    pub l2: f64,
    /// Mean held-out cross-entropy over the folds (class-weighted when balancing).
    pub cv_loss: f64,
    pub cv_accuracy: f64,
}

/// How the head was solved, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadFit {
    pub hidden_units: Option<usize>,
    /// The L2 penalty of the saved head (on standardised features).
    pub l2: f64,
    /// `crossValidation`, `given` (the `l2` option) or `tooFewImages` (a class with one
    /// training image leaves nothing to cross-validate; the penalty is then 1 / images).
    pub l2_source: String,
    pub folds: usize,
    /// The regularisation path, strongest penalty first.
    pub search: Vec<L2Trial>,
    /// Solver iterations of the final fit, and whether it met its tolerance.
    pub iterations: usize,
    pub converged: bool,
    pub class_weights: Option<Vec<f32>>,
    /// Plain cross-entropy and accuracy of the saved head on its training images.
    pub train_loss: f64,
    pub train_accuracy: f64,
}

/// Smallest feature scale, as a fraction of the median feature's deviation.
const SCALE_FLOOR: f64 = 0.1;

/// The penalty a solved head was fitted under, for phase 2 to keep: `l2 / 2` times its squared
/// weights, the first layer's rows scaled by each embedding feature's standardisation scale.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadPenalty {
    pub l2: f64,
    /// One scale per embedding feature.
    pub input_scale: Vec<f32>,
}

/// Per-feature mean and deviation of the training embeddings.
struct Standardisation {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl Standardisation {
    fn of(data: &Embeddings) -> Self {
        let n = data.len().max(1) as f64;
        let mut mean = vec![0.0; FEATURE_DIM];
        for row in data.features.chunks(FEATURE_DIM) {
            mean.iter_mut().zip(row).for_each(|(m, &x)| *m += x as f64);
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut variance = vec![0.0; FEATURE_DIM];
        for row in data.features.chunks(FEATURE_DIM) {
            for ((v, m), &x) in variance.iter_mut().zip(&mean).zip(row) {
                *v += (x as f64 - m).powi(2);
            }
        }
        let deviations: Vec<f64> = variance.into_iter().map(|v| (v / n).sqrt()).collect();
        let mut sorted = deviations.clone();
        sorted.sort_by(f64::total_cmp);
        // Nearly constant features (ReLU units that rarely fire) would be scaled up hundreds of
        // times, making the head react to JPEG decoder rounding; scales are floored at a tenth
        // of the median. Measured: test accuracy unchanged on Fashion-MNIST and solar cells,
        // largest raw weight 70 -> 3.
        let floor = (SCALE_FLOOR * sorted[sorted.len() / 2]).max(1e-6);
        let scale = deviations.into_iter().map(|s| s.max(floor)).collect();
        Self { mean, scale }
    }

    fn apply(&self, data: &Embeddings) -> Vec<f32> {
        let mut out = Vec::with_capacity(data.features.len());
        for row in data.features.chunks(FEATURE_DIM) {
            for ((&x, m), s) in row.iter().zip(&self.mean).zip(&self.scale) {
                out.push(((x as f64 - m) / s) as f32);
            }
        }
        out
    }
}

/// The parameters' shapes: `[W1 (1280 x h), b1, W2 (h x classes), b2]` or `[W, b]`, each
/// weight laid out `[inputs, outputs]` as burn's `Linear` stores it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Shape {
    classes: usize,
    hidden: Option<usize>,
}

impl Shape {
    fn layers(&self) -> Vec<(usize, usize)> {
        match self.hidden {
            Some(h) => vec![(FEATURE_DIM, h), (h, self.classes)],
            None => vec![(FEATURE_DIM, self.classes)],
        }
    }

    fn len(&self) -> usize {
        self.layers().iter().map(|(i, o)| i * o + o).sum()
    }

    /// Zeros for a linear head (the problem is convex); a seeded uniform draw, as PyTorch
    /// initialises, for a hidden layer (zeros would keep every hidden unit identical).
    fn initial(&self, seed: u64) -> Vec<f64> {
        if self.hidden.is_none() {
            return vec![0.0; self.len()];
        }
        let mut rng = SeededRng::new(seed);
        let mut x = Vec::with_capacity(self.len());
        for (inputs, outputs) in self.layers() {
            let bound = 1.0 / (inputs as f64).sqrt();
            x.extend((0..inputs * outputs).map(|_| (rng.unit() as f64 * 2.0 - 1.0) * bound));
            x.extend(std::iter::repeat_n(0.0, outputs));
        }
        x
    }
}

/// A labelled, standardised set on the CPU device, ready for the objective.
struct Problem {
    device: Device,
    /// `[n, 1280]` standardised features.
    features: Tensor<2>,
    /// `[n, classes]`: one-hot labels times each example's weight.
    weighted_targets: Tensor<2>,
    /// `[n, 1]`: each example's weight.
    weights: Tensor<2>,
    weight_sum: f64,
    labels: Vec<usize>,
    example_weights: Vec<f64>,
}

impl Problem {
    fn new(
        standardised: &[f32],
        labels: &[usize],
        options: &HeadFitOptions,
        device: &Device,
    ) -> Self {
        let n = labels.len();
        let weight_of = |label: usize| {
            options
                .class_weights
                .as_ref()
                .map_or(1.0, |w| w[label] as f64)
        };
        let example_weights: Vec<f64> = labels.iter().map(|&l| weight_of(l)).collect();
        let mut targets = vec![0.0f32; n * options.classes];
        for (i, &label) in labels.iter().enumerate() {
            targets[i * options.classes + label] = example_weights[i] as f32;
        }
        let weights: Vec<f32> = example_weights.iter().map(|&w| w as f32).collect();
        Self {
            features: Tensor::from_data(
                TensorData::new(standardised.to_vec(), [n, FEATURE_DIM]),
                device,
            ),
            weighted_targets: Tensor::from_data(
                TensorData::new(targets, [n, options.classes]),
                device,
            ),
            weights: Tensor::from_data(TensorData::new(weights, [n, 1]), device),
            weight_sum: example_weights.iter().sum(),
            labels: labels.to_vec(),
            example_weights,
            device: device.clone(),
        }
    }

    fn tensor(&self, values: &[f64], shape: [usize; 2]) -> Tensor<2> {
        let values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        Tensor::from_data(TensorData::new(values, shape), &self.device)
    }

    /// The layers as tensors: `(weight [in, out], bias [1, out])` each.
    fn layers(&self, x: &[f64], shape: Shape) -> Vec<(Tensor<2>, Tensor<2>)> {
        let mut at = 0;
        let mut layers = Vec::new();
        for (inputs, outputs) in shape.layers() {
            let weight = self.tensor(&x[at..at + inputs * outputs], [inputs, outputs]);
            at += inputs * outputs;
            let bias = self.tensor(&x[at..at + outputs], [1, outputs]);
            at += outputs;
            layers.push((weight, bias));
        }
        layers
    }

    fn logits(&self, layers: &[(Tensor<2>, Tensor<2>)]) -> (Tensor<2>, Option<Tensor<2>>) {
        match layers {
            [(w, b)] => (self.features.clone().matmul(w.clone()) + b.clone(), None),
            [(w1, b1), (w2, b2)] => {
                let pre = self.features.clone().matmul(w1.clone()) + b1.clone();
                let hidden = relu(pre.clone());
                (hidden.matmul(w2.clone()) + b2.clone(), Some(pre))
            }
            _ => unreachable!("a head has one or two layers"),
        }
    }

    /// Weighted cross-entropy and plain accuracy of the head `x` on this set, computed on the
    /// host from the logits.
    async fn score(&self, x: &[f64], shape: Shape) -> Result<(f64, f64)> {
        let (logits, _) = self.logits(&self.layers(x, shape));
        let logits = read(logits).await?;
        let classes = shape.classes;
        let (mut loss, mut correct) = (0.0, 0usize);
        for (i, row) in logits.chunks(classes).enumerate() {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let log_sum = row.iter().map(|&v| (v - max).exp()).sum::<f64>().ln() + max;
            loss += self.example_weights[i] * (log_sum - row[self.labels[i]]);
            let predicted =
                (0..classes).fold(0, |best, c| if row[c] > row[best] { c } else { best });
            correct += usize::from(predicted == self.labels[i]);
        }
        Ok((
            loss / self.weight_sum,
            correct as f64 / self.labels.len() as f64,
        ))
    }
}

async fn read(tensor: Tensor<2>) -> Result<Vec<f64>> {
    let values = tensor.into_data_async().await?.try_into_vec::<f32>()?;
    Ok(values.into_iter().map(f64::from).collect())
}

/// Weighted mean cross-entropy plus `l2 / 2` times the squared weights (biases are not
/// penalised), with its gradient written by hand: two matrix products per layer.
struct HeadObjective<'a> {
    problem: &'a Problem,
    shape: Shape,
    l2: f64,
}

impl Objective for HeadObjective<'_> {
    async fn evaluate(&mut self, x: &[f64], gradient: &mut [f64]) -> Result<f64> {
        let p = self.problem;
        let layers = p.layers(x, self.shape);
        let (logits, pre_activation) = p.logits(&layers);
        let log_probabilities = log_softmax(logits, 1);
        let loss =
            (log_probabilities.clone() * p.weighted_targets.clone()).sum() * (-1.0 / p.weight_sum);
        // d loss / d logits.
        let residual = (log_probabilities.exp() * p.weights.clone() - p.weighted_targets.clone())
            * (1.0 / p.weight_sum);
        let mut grads = Vec::new();
        match (&layers[..], pre_activation) {
            ([(w, _)], None) => {
                grads.push(
                    p.features.clone().transpose().matmul(residual.clone()) + w.clone() * self.l2,
                );
                grads.push(residual.sum_dim(0));
            }
            ([(w1, _), (w2, _)], Some(pre)) => {
                let hidden = relu(pre.clone());
                let back = residual.clone().matmul(w2.clone().transpose());
                let back = back.mask_fill(pre.lower_equal_elem(0.0), 0.0);
                grads.push(
                    p.features.clone().transpose().matmul(back.clone()) + w1.clone() * self.l2,
                );
                grads.push(back.sum_dim(0));
                grads.push(hidden.transpose().matmul(residual.clone()) + w2.clone() * self.l2);
                grads.push(residual.sum_dim(0));
            }
            _ => unreachable!("a head has one or two layers"),
        }
        let mut at = 0;
        for grad in grads {
            let values = read(grad).await?;
            gradient[at..at + values.len()].copy_from_slice(&values);
            at += values.len();
        }
        let loss = loss
            .into_data_async()
            .await?
            .iter::<f64>()
            .next()
            .unwrap_or(f64::NAN);
        let mut penalty = 0.0;
        let mut offset = 0;
        for (inputs, outputs) in self.shape.layers() {
            penalty += x[offset..offset + inputs * outputs]
                .iter()
                .map(|w| w * w)
                .sum::<f64>();
            offset += inputs * outputs + outputs;
        }
        Ok(loss + 0.5 * self.l2 * penalty)
    }
}

async fn solve(
    problem: &Problem,
    shape: Shape,
    l2: f64,
    start: Vec<f64>,
    settings: &Settings,
) -> Result<lbfgs::Minimum> {
    let mut objective = HeadObjective { problem, shape, l2 };
    let minimum = lbfgs::minimize(&mut objective, start, settings).await?;
    if !minimum.value.is_finite() {
        return Err(GraftError::option(
            "l2",
            format!(
                "{l2} made the head's loss diverge; the embeddings may hold NaN or huge values"
            ),
        ));
    }
    Ok(minimum)
}

/// Picks the penalty by cross-validation along the regularisation path; returns the path and
/// the mean of the folds' solutions at the chosen strength (a warm start for the final fit).
#[allow(clippy::too_many_arguments)] // one call site; each argument is a different input
async fn cross_validate(
    standardised: &[f32],
    labels: &[usize],
    folds: &[usize],
    fold_count: usize,
    shape: Shape,
    options: &HeadFitOptions,
    observer: &mut impl Observer,
    device: &Device,
) -> Result<(Vec<L2Trial>, usize, Vec<f64>)> {
    let rows_of = |fold: usize, held_out: bool| -> Vec<usize> {
        (0..labels.len())
            .filter(|&i| (folds[i] == fold) == held_out)
            .collect()
    };
    let subset = |rows: &[usize]| -> (Vec<f32>, Vec<usize>) {
        let mut features = Vec::with_capacity(rows.len() * FEATURE_DIM);
        for &i in rows {
            features.extend_from_slice(&standardised[i * FEATURE_DIM..(i + 1) * FEATURE_DIM]);
        }
        (features, rows.iter().map(|&i| labels[i]).collect())
    };
    let mut solutions: Vec<Vec<f64>> = vec![shape.initial(options.seed); fold_count];
    let mut trials: Vec<L2Trial> = Vec::new();
    let mut best: Option<(usize, Vec<f64>)> = None;
    let mut worse = 0;
    for (index, &l2) in L2_GRID.iter().enumerate() {
        let (mut loss, mut accuracy) = (0.0, 0.0);
        for (fold, solution) in solutions.iter_mut().enumerate() {
            // One fold's copy at a time: memory stays at one training set, whatever the folds.
            let (train_x, train_y) = subset(&rows_of(fold, false));
            let (test_x, test_y) = subset(&rows_of(fold, true));
            let train = Problem::new(&train_x, &train_y, options, device);
            // A linear head starts from the previous strength's solution (the path); a hidden
            // layer starts afresh, since a strong penalty can leave every unit dead, a state a
            // warm start would never leave.
            let start = match shape.hidden {
                None => std::mem::take(solution),
                Some(_) => shape.initial(options.seed),
            };
            *solution = solve(&train, shape, l2, start, &SEARCH_SETTINGS).await?.x;
            let test = Problem::new(&test_x, &test_y, options, device);
            let (fold_loss, fold_accuracy) = test.score(solution, shape).await?;
            loss += fold_loss / fold_count as f64;
            accuracy += fold_accuracy / fold_count as f64;
            observer.pause().await;
        }
        let trial = L2Trial {
            l2,
            cv_loss: loss,
            cv_accuracy: accuracy,
        };
        observer.on_event(TrainEvent::HeadSearch {
            trial: &trial,
            index: index + 1,
            of: L2_GRID.len(),
        });
        trials.push(trial);
        let best_loss = best
            .as_ref()
            .map_or(f64::INFINITY, |(b, _)| trials[*b].cv_loss);
        if loss < best_loss {
            let mut mean = vec![0.0; shape.len()];
            for solution in &solutions {
                mean.iter_mut()
                    .zip(solution)
                    .for_each(|(m, s)| *m += s / fold_count as f64);
            }
            best = Some((index, mean));
            worse = 0;
        } else if loss > best_loss * (1.0 + 1e-4) {
            // A plateau (equal loss: every penalty so far too strong to learn anything) is not
            // a rise.
            worse += 1;
        }
        if worse >= PATIENCE || observer.should_stop() {
            break;
        }
    }
    let (best, start) = best.expect("the grid is not empty");
    Ok((trials, best, start))
}

/// Solves the head on `train`, returning it (on `device`, mapped back onto raw embeddings)
/// and how it was solved.
pub async fn fit_head(
    train: &Embeddings,
    options: &HeadFitOptions,
    observer: &mut impl Observer,
    device: &Device,
) -> Result<(ClassifierHead, HeadFit, HeadPenalty)> {
    if train.is_empty() {
        return Err(GraftError::option("training set", "no images to train on"));
    }
    let cpu = Device::flex();
    let standardisation = Standardisation::of(train);
    let standardised = standardisation.apply(train);
    let shape = Shape {
        classes: options.classes,
        hidden: options.hidden_units,
    };
    let mut counts = vec![0usize; options.classes];
    train.labels.iter().for_each(|&l| counts[l] += 1);
    let most_folds = if shape.hidden.is_some() {
        HIDDEN_FOLDS
    } else {
        FOLDS
    };
    let fold_count = most_folds.min(counts.iter().copied().min().unwrap_or(0));

    let (l2, l2_source, search, warm_start) = match options.l2 {
        Some(l2) => (l2, "given", Vec::new(), None),
        None if fold_count < 2 => (1.0 / train.len() as f64, "tooFewImages", Vec::new(), None),
        None => {
            let folds = stratified_folds(&train.labels, fold_count, options.seed);
            let (trials, best, start) = cross_validate(
                &standardised,
                &train.labels,
                &folds,
                fold_count,
                shape,
                options,
                observer,
                &cpu,
            )
            .await?;
            (trials[best].l2, "crossValidation", trials, Some(start))
        }
    };
    // The folds' mean solution is a close start for a linear head (a convex problem); a hidden
    // layer's units may sit in a different order in each fold, so it starts afresh.
    let start = match (shape.hidden, warm_start) {
        (None, Some(start)) => start,
        _ => shape.initial(options.seed),
    };
    let problem = Problem::new(&standardised, &train.labels, options, &cpu);
    let minimum = solve(&problem, shape, l2, start, &FINAL_SETTINGS).await?;
    let unweighted = HeadFitOptions {
        class_weights: None,
        ..options.clone()
    };
    let (train_loss, train_accuracy) =
        Problem::new(&standardised, &train.labels, &unweighted, &cpu)
            .score(&minimum.x, shape)
            .await?;
    let head = to_head(&minimum.x, shape, &standardisation, device);
    let penalty = HeadPenalty {
        l2,
        input_scale: standardisation.scale.iter().map(|&s| s as f32).collect(),
    };
    let fit = HeadFit {
        hidden_units: options.hidden_units,
        l2,
        l2_source: l2_source.into(),
        folds: if search.is_empty() { 0 } else { fold_count },
        search,
        iterations: minimum.iterations,
        converged: minimum.converged,
        class_weights: options.class_weights.clone(),
        train_loss,
        train_accuracy,
    };
    Ok((head, fit, penalty))
}

/// The solved parameters as a head on raw embeddings: the first layer absorbs the
/// standardisation (`W' = W / scale`, `b' = b - (mean / scale) W`).
fn to_head(
    x: &[f64],
    shape: Shape,
    standardisation: &Standardisation,
    device: &Device,
) -> ClassifierHead {
    let linear = |weight: Vec<f64>, bias: Vec<f64>, inputs: usize, outputs: usize| {
        let weight: Vec<f32> = weight.iter().map(|&v| v as f32).collect();
        let bias: Vec<f32> = bias.iter().map(|&v| v as f32).collect();
        Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(weight, [inputs, outputs]),
                device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(bias, [outputs]),
                device,
            ))),
        }
    };
    let layers = shape.layers();
    let (inputs, outputs) = layers[0];
    let (weight, rest) = x.split_at(inputs * outputs);
    let (bias, rest) = rest.split_at(outputs);
    let mut folded_weight = weight.to_vec();
    let mut folded_bias = bias.to_vec();
    for d in 0..inputs {
        let (mean, scale) = (standardisation.mean[d], standardisation.scale[d]);
        for o in 0..outputs {
            let w = weight[d * outputs + o];
            folded_weight[d * outputs + o] = w / scale;
            folded_bias[o] -= mean / scale * w;
        }
    }
    let first = linear(folded_weight, folded_bias, inputs, outputs);
    match layers.get(1) {
        None => ClassifierHead {
            hidden: None,
            output: first,
        },
        Some(&(inputs, outputs)) => {
            let (weight, bias) = rest.split_at(inputs * outputs);
            ClassifierHead {
                hidden: Some(first),
                output: linear(weight.to_vec(), bias.to_vec(), inputs, outputs),
            }
        }
    }
}
