//! L-BFGS: the quasi-Newton minimiser that solves the head to convergence.
//!
//! The head's objective is smooth and, for a linear head, strictly convex, so a full-batch
//! quasi-Newton method reaches the optimum in tens to hundreds of evaluations where stochastic
//! gradient descent would need a learning rate, a schedule and many epochs to get near it.
//! The objective is `async` because the browser can only read device results asynchronously.

use crate::error::Result;

/// Something to minimise: its value at `x`, with the gradient written into `gradient`.
#[allow(async_fn_in_trait)] // driven in one task; never sent between threads
pub trait Objective {
    async fn evaluate(&mut self, x: &[f64], gradient: &mut [f64]) -> Result<f64>;
}

/// When to stop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Converged once the largest gradient component is below this.
    pub gradient_tolerance: f64,
    pub max_iterations: usize,
    /// Correction pairs kept (the curvature memory).
    pub memory: usize,
}

/// Where the minimiser stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub iterations: usize,
    /// False when it stopped on `max_iterations` or a line search that found no decrease.
    pub converged: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Armijo's sufficient-decrease constant for the backtracking line search.
const ARMIJO: f64 = 1e-4;
const MAX_BACKTRACKS: usize = 40;

/// Minimises `objective` from `x0` (limited-memory BFGS, two-loop recursion, backtracking line
/// search with the Armijo condition). Deterministic: the same objective and start give the
/// same iterates.
pub async fn minimize(
    objective: &mut impl Objective,
    x0: Vec<f64>,
    settings: &Settings,
) -> Result<Minimum> {
    let n = x0.len();
    let mut x = x0;
    let mut gradient = vec![0.0; n];
    let mut value = objective.evaluate(&x, &mut gradient).await?;
    // Correction pairs (s = x_{k+1} - x_k, y = g_{k+1} - g_k, 1 / s.y), oldest first.
    let mut pairs: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::with_capacity(settings.memory);
    let mut trial = vec![0.0; n];
    let mut trial_gradient = vec![0.0; n];
    for iteration in 0..settings.max_iterations {
        if max_abs(&gradient) <= settings.gradient_tolerance {
            return Ok(Minimum {
                x,
                value,
                iterations: iteration,
                converged: true,
            });
        }
        let direction = search_direction(&gradient, &pairs);
        let slope = dot(&direction, &gradient);
        // Without curvature information, a first step of unit length in x.
        let mut step = match pairs.is_empty() {
            true => 1.0 / max_abs(&gradient).max(1.0),
            false => 1.0,
        };
        let mut accepted = None;
        for _ in 0..MAX_BACKTRACKS {
            for i in 0..n {
                trial[i] = x[i] + step * direction[i];
            }
            let trial_value = objective.evaluate(&trial, &mut trial_gradient).await?;
            if trial_value.is_finite() && trial_value <= value + ARMIJO * step * slope {
                accepted = Some(trial_value);
                break;
            }
            step *= 0.5;
        }
        let Some(trial_value) = accepted else {
            // No decrease along a descent direction: as close as floating point allows.
            return Ok(Minimum {
                x,
                value,
                iterations: iteration,
                converged: max_abs(&gradient) <= settings.gradient_tolerance.sqrt(),
            });
        };
        let s: Vec<f64> = (0..n).map(|i| trial[i] - x[i]).collect();
        let y: Vec<f64> = (0..n).map(|i| trial_gradient[i] - gradient[i]).collect();
        let sy = dot(&s, &y);
        // Keep only pairs with positive curvature, so the implied Hessian stays positive definite.
        if sy > 1e-12 * dot(&y, &y).sqrt() * dot(&s, &s).sqrt() {
            if pairs.len() == settings.memory {
                pairs.remove(0);
            }
            pairs.push((s, y, 1.0 / sy));
        }
        std::mem::swap(&mut x, &mut trial);
        std::mem::swap(&mut gradient, &mut trial_gradient);
        value = trial_value;
    }
    Ok(Minimum {
        converged: max_abs(&gradient) <= settings.gradient_tolerance,
        x,
        value,
        iterations: settings.max_iterations,
    })
}

/// `-H g` by the two-loop recursion, with the initial Hessian scaled by the newest pair.
fn search_direction(gradient: &[f64], pairs: &[(Vec<f64>, Vec<f64>, f64)]) -> Vec<f64> {
    let mut q = gradient.to_vec();
    let mut alphas = vec![0.0; pairs.len()];
    for (k, (s, y, rho)) in pairs.iter().enumerate().rev() {
        let alpha = rho * dot(s, &q);
        alphas[k] = alpha;
        q.iter_mut().zip(y).for_each(|(q, y)| *q -= alpha * y);
    }
    if let Some((s, y, _)) = pairs.last() {
        let gamma = dot(s, y) / dot(y, y);
        q.iter_mut().for_each(|q| *q *= gamma);
    }
    for (k, (s, y, rho)) in pairs.iter().enumerate() {
        let beta = rho * dot(y, &q);
        let alpha = alphas[k];
        q.iter_mut()
            .zip(s)
            .for_each(|(q, s)| *q += (alpha - beta) * s);
    }
    q.iter_mut().for_each(|q| *q = -*q);
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    /// The Rosenbrock function: a curved valley that defeats plain gradient descent.
    struct Rosenbrock {
        evaluations: usize,
    }

    impl Objective for Rosenbrock {
        async fn evaluate(&mut self, x: &[f64], gradient: &mut [f64]) -> Result<f64> {
            self.evaluations += 1;
            let (a, b) = (x[0], x[1]);
            gradient[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            gradient[1] = 200.0 * (b - a * a);
            Ok((1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2))
        }
    }

    #[test]
    fn finds_the_rosenbrock_minimum() {
        let settings = Settings {
            gradient_tolerance: 1e-8,
            max_iterations: 500,
            memory: 10,
        };
        let mut objective = Rosenbrock { evaluations: 0 };
        let minimum = block_on(minimize(&mut objective, vec![-1.2, 1.0], &settings)).unwrap();
        assert!(minimum.converged, "{minimum:?}");
        assert!((minimum.x[0] - 1.0).abs() < 1e-6 && (minimum.x[1] - 1.0).abs() < 1e-6);
        // Plain gradient descent needs thousands of steps here.
        assert!(
            minimum.iterations < 100,
            "{} iterations",
            minimum.iterations
        );
    }

    #[test]
    fn stops_at_the_iteration_limit_and_says_so() {
        let settings = Settings {
            gradient_tolerance: 1e-12,
            max_iterations: 3,
            memory: 10,
        };
        let mut objective = Rosenbrock { evaluations: 0 };
        let minimum = block_on(minimize(&mut objective, vec![-1.2, 1.0], &settings)).unwrap();
        assert!(!minimum.converged);
        assert_eq!(minimum.iterations, 3);
    }
}
