//! How good a detector is, the way COCO and Ultralytics measure it.
//!
//! Average precision (AP) follows pycocotools: per class, over all images, detections are
//! matched best score first, each to the still-unmatched ground-truth box of its class that it
//! overlaps most, if that IoU reaches the threshold; precision is made monotone from the right
//! and read at the 101 recall points 0, 0.01, …, 1. AP50 is that at IoU 0.5; AP50-95 the mean
//! over IoU 0.50, 0.55, …, 0.95. (pycocotools' area ranges and per-image detection cap are left
//! out: every detection counts, and non-maximum suppression already caps them.) Precision and
//! recall are what Ultralytics prints next to mAP: at IoU 0.5, at the one score threshold that
//! gives the best F1 averaged over the classes, then averaged over the classes themselves.
//! (Ultralytics reads them off smoothed curves sampled at 1,000 scores; Graft takes the exact
//! best among the scores that occur, with the matching above.)
//!
//! Classes with no ground truth are left out of every mean: with nothing to find, their AP is
//! undefined, not 0.

use serde::Serialize;

use crate::detect::boxes::{Detection, iou};
use crate::detect::dataset::LabelledBox;
use crate::error::{GraftError, Result};

/// How many IoU thresholds AP50-95 averages over: 0.50 to 0.95 by 0.05.
const IOU_THRESHOLDS: usize = 10;

/// Recall points at which precision is read: 0 to 1 by 0.01.
const RECALL_POINTS: usize = 101;

/// One image's ground truth next to what a model detected in it.
#[derive(Debug, Clone, Copy)]
pub struct ImageDetections<'a> {
    pub truth: &'a [LabelledBox],
    pub detections: &'a [Detection],
}

/// The evaluation of one class. The scores are `None` for a class with no ground truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassDetectionMetrics {
    pub name: String,
    /// Ground-truth boxes of the class.
    pub instances: usize,
    /// Detections of the class, at any score.
    pub detections: usize,
    #[serde(rename = "ap50")]
    pub ap50: Option<f64>,
    #[serde(rename = "ap50_95")]
    pub ap50_95: Option<f64>,
    /// At IoU 0.5 and [`DetectionReport::score_threshold`]; 0 when nothing of the class scores
    /// that high.
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// The precision-recall curve at IoU 0.5 that `ap50` averages: interpolated precision at
    /// recall 0, 0.01, ..., 1.
    pub precision_recall: Option<Vec<f64>>,
}

/// A detector's evaluation on a set of images.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectionReport {
    pub images: usize,
    /// Ground-truth boxes, all classes together.
    pub instances: usize,
    /// Mean over the classes with ground truth of their AP at IoU 0.5 (0 when no class has
    /// ground truth).
    #[serde(rename = "mAP50")]
    pub map50: f64,
    /// Mean over the classes with ground truth of their AP averaged over IoU 0.50 to 0.95.
    #[serde(rename = "mAP50_95")]
    pub map50_95: f64,
    /// Precision and recall averaged over the classes with ground truth, at IoU 0.5 and
    /// [`DetectionReport::score_threshold`].
    pub precision: f64,
    pub recall: f64,
    /// The score threshold (detections scoring at least this count) at which F1 averaged over
    /// the classes with ground truth is highest; on ties the higher threshold. `None` when no
    /// threshold finds anything (no detection is right at IoU 0.5): precision and recall are 0.
    pub score_threshold: Option<f32>,
    pub per_class: Vec<ClassDetectionMetrics>,
}

/// The IoU thresholds 0.50:0.05:0.95, computed as `numpy.linspace` does for pycocotools. (IoU
/// itself is f32 here and f64 there: a pair within about 1e-7 of a threshold can match
/// differently.)
fn iou_thresholds() -> [f64; IOU_THRESHOLDS] {
    let step = (0.95 - 0.5) / (IOU_THRESHOLDS - 1) as f64;
    std::array::from_fn(|i| {
        if i == IOU_THRESHOLDS - 1 {
            0.95
        } else {
            i as f64 * step + 0.5
        }
    })
}

/// A detection in the ranking of its class, with whether it matched at each IoU threshold.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    score: f32,
    image: usize,
    index: usize,
    matched: [bool; IOU_THRESHOLDS],
}

/// Best score first; equal scores in image order, then in input order, as pycocotools ranks
/// them (it sorts stably).
fn rank(a: &Ranked, b: &Ranked) -> std::cmp::Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.image.cmp(&b.image))
        .then(a.index.cmp(&b.index))
}

/// Evaluates detections against the ground truth, image by image; `class_names` gives the
/// number of classes and their names in the report. Detections whose score is NaN are ignored.
/// A box whose class is beyond `class_names` is an error.
pub fn evaluate(class_names: &[String], images: &[ImageDetections<'_>]) -> Result<DetectionReport> {
    let classes = class_names.len();
    for (number, image) in images.iter().enumerate() {
        let truth = image.truth.iter().map(|b| b.class);
        let detected = image.detections.iter().map(|d| d.class);
        if let Some(class) = truth.chain(detected).find(|&c| c >= classes) {
            return Err(GraftError::option(
                "detection class",
                format!(
                    "image {number} has a box of class {class}, but there are {classes} classes"
                ),
            ));
        }
    }

    let thresholds = iou_thresholds();
    let mut instances = vec![0usize; classes];
    let mut ranked: Vec<Vec<Ranked>> = vec![Vec::new(); classes];
    for (number, image) in images.iter().enumerate() {
        let mut present: Vec<usize> = image
            .truth
            .iter()
            .map(|b| b.class)
            .chain(image.detections.iter().map(|d| d.class))
            .collect();
        present.sort_unstable();
        present.dedup();
        for class in present {
            let truth: Vec<_> = image
                .truth
                .iter()
                .filter(|b| b.class == class)
                .map(|b| b.bbox)
                .collect();
            instances[class] += truth.len();
            let mut found: Vec<(usize, &Detection)> = image
                .detections
                .iter()
                .enumerate()
                .filter(|(_, d)| d.class == class && !d.score.is_nan())
                .collect();
            // Stable: equal scores stay in input order.
            found.sort_by(|(_, a), (_, b)| b.score.total_cmp(&a.score));
            let overlaps: Vec<Vec<f64>> = found
                .iter()
                .map(|(_, d)| truth.iter().map(|t| f64::from(iou(&d.bbox, t))).collect())
                .collect();
            let matched = match_greedily(&overlaps, truth.len(), &thresholds);
            ranked[class].extend(
                found
                    .iter()
                    .zip(matched)
                    .map(|(&(index, d), matched)| Ranked {
                        score: d.score,
                        image: number,
                        index,
                        matched,
                    }),
            );
        }
    }
    for list in &mut ranked {
        list.sort_by(rank);
    }

    let evaluated: Vec<usize> = (0..classes).filter(|&c| instances[c] > 0).collect();
    let (score_threshold, at_threshold) = best_f1_threshold(&ranked, &instances, &evaluated);
    let mut per_class = Vec::with_capacity(classes);
    for (class, name) in class_names.iter().enumerate() {
        let n = instances[class];
        let list = &ranked[class];
        let precision_recall = (n > 0)
            .then(|| precision_at_recall_points(list.iter().map(|d| d.matched[0]), n).to_vec());
        let scores = precision_recall.as_ref().map(|curve| {
            // AP50 is the curve's mean; the other thresholds need only their AP.
            let ap: Vec<f64> = std::iter::once(mean(curve))
                .chain(
                    (1..IOU_THRESHOLDS)
                        .map(|t| average_precision(list.iter().map(|d| d.matched[t]), n)),
                )
                .collect();
            let (true_positives, predicted) = at_threshold[class];
            let precision = if predicted > 0 {
                true_positives as f64 / predicted as f64
            } else {
                0.0
            };
            let recall = true_positives as f64 / n as f64;
            (ap[0], mean(&ap), precision, recall)
        });
        per_class.push(ClassDetectionMetrics {
            name: name.clone(),
            instances: n,
            detections: list.len(),
            ap50: scores.map(|s| s.0),
            ap50_95: scores.map(|s| s.1),
            precision: scores.map(|s| s.2),
            recall: scores.map(|s| s.3),
            precision_recall,
        });
    }
    let mean_of = |pick: fn(&ClassDetectionMetrics) -> Option<f64>| {
        let values: Vec<f64> = per_class.iter().filter_map(pick).collect();
        mean(&values)
    };
    Ok(DetectionReport {
        images: images.len(),
        instances: instances.iter().sum(),
        map50: mean_of(|c| c.ap50),
        map50_95: mean_of(|c| c.ap50_95),
        precision: mean_of(|c| c.precision),
        recall: mean_of(|c| c.recall),
        score_threshold,
        per_class,
    })
}

/// 0 for no values.
fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// pycocotools' matching in one image and class: each detection (`overlaps[d][g]`, best score
/// first) takes the still-unmatched ground truth it overlaps most, if that IoU reaches the
/// threshold; of equal overlaps, the later ground truth, as pycocotools does.
fn match_greedily(
    overlaps: &[Vec<f64>],
    truth: usize,
    thresholds: &[f64; IOU_THRESHOLDS],
) -> Vec<[bool; IOU_THRESHOLDS]> {
    let mut matched = vec![[false; IOU_THRESHOLDS]; overlaps.len()];
    for (t, &threshold) in thresholds.iter().enumerate() {
        let mut taken = vec![false; truth];
        for (d, row) in overlaps.iter().enumerate() {
            let mut best: Option<usize> = None;
            let mut best_overlap = threshold;
            for (g, &overlap) in row.iter().enumerate() {
                if !taken[g] && overlap >= best_overlap {
                    best = Some(g);
                    best_overlap = overlap;
                }
            }
            if let Some(g) = best {
                taken[g] = true;
                matched[d][t] = true;
            }
        }
    }
    matched
}

/// COCO's 101-point interpolated precision of a class's ranked detections (`true` when
/// matched) with `instances` (> 0) ground-truth boxes: at each recall 0, 0.01, ..., 1 the best
/// precision at that recall or beyond; recall points never reached have precision 0.
fn precision_at_recall_points(
    matched: impl Iterator<Item = bool>,
    instances: usize,
) -> [f64; RECALL_POINTS] {
    let mut precision = Vec::new();
    let mut recall = Vec::new();
    let mut true_positives = 0usize;
    for (rank, hit) in matched.enumerate() {
        true_positives += usize::from(hit);
        precision.push(true_positives as f64 / (rank + 1) as f64);
        recall.push(true_positives as f64 / instances as f64);
    }
    // Monotone from the right: precision at a recall is the best at that recall or beyond.
    for i in (1..precision.len()).rev() {
        precision[i - 1] = precision[i - 1].max(precision[i]);
    }
    std::array::from_fn(|r| {
        // As numpy.linspace(0, 1, 101) computes them.
        let point = r as f64 * 0.01;
        let first = recall.partition_point(|&x| x < point);
        precision.get(first).copied().unwrap_or(0.0)
    })
}

/// COCO's AP: the mean of [`precision_at_recall_points`].
fn average_precision(matched: impl Iterator<Item = bool>, instances: usize) -> f64 {
    mean(&precision_at_recall_points(matched, instances))
}

/// The score threshold with the best F1 at IoU 0.5 averaged over the `evaluated` classes, and
/// per class the true positives and detections at it. Every distinct score is a candidate
/// (keeping the detections that score at least that); matches at a threshold are those of the
/// full ranking, since a detection is matched before any scoring lower.
fn best_f1_threshold(
    ranked: &[Vec<Ranked>],
    instances: &[usize],
    evaluated: &[usize],
) -> (Option<f32>, Vec<(usize, usize)>) {
    let mut all: Vec<(usize, &Ranked)> = evaluated
        .iter()
        .flat_map(|&c| ranked[c].iter().map(move |d| (c, d)))
        .collect();
    all.sort_by(|a, b| rank(a.1, b.1));
    let f1 = |true_positives: usize, predicted: usize, class: usize| {
        2.0 * true_positives as f64 / (instances[class] + predicted) as f64
    };

    let mut counts = vec![(0usize, 0usize); ranked.len()];
    let mut f1_sum = 0.0;
    // (mean F1, detections kept, threshold); starts at keeping nothing, where F1 is 0.
    let mut best = (0.0, 0, None);
    let mut i = 0;
    while i < all.len() {
        let score = all[i].1.score;
        while i < all.len() && all[i].1.score == score {
            let (class, detection) = all[i];
            let (true_positives, predicted) = &mut counts[class];
            f1_sum -= f1(*true_positives, *predicted, class);
            *true_positives += usize::from(detection.matched[0]);
            *predicted += 1;
            f1_sum += f1(*true_positives, *predicted, class);
            i += 1;
        }
        let mean_f1 = f1_sum / evaluated.len() as f64;
        // Above rounding: a running sum is not exact, and ties keep the higher threshold.
        if mean_f1 > best.0 + 1e-12 {
            best = (mean_f1, i, Some(score));
        }
    }
    let mut at_threshold = vec![(0usize, 0usize); ranked.len()];
    for &(class, detection) in &all[..best.1] {
        at_threshold[class].0 += usize::from(detection.matched[0]);
        at_threshold[class].1 += 1;
    }
    (best.2, at_threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::boxes::BoundingBox;

    /// Pixels of a 64×64 image as fractions, exact in f32.
    fn pixels(x0: u32, y0: u32, x1: u32, y1: u32) -> BoundingBox {
        let f = |v: u32| v as f32 / 64.0;
        BoundingBox {
            x0: f(x0),
            y0: f(y0),
            x1: f(x1),
            y1: f(y1),
        }
    }

    /// Ground truth `(class, x0, y0, x1, y1)` and detections `(class, score, x0, y0, x1, y1)`
    /// in pixels, as in tests/fixtures/detection_ap.py.
    type Truth = (usize, u32, u32, u32, u32);
    type Found = (usize, f32, u32, u32, u32, u32);

    struct Scenario {
        truth: Vec<Vec<LabelledBox>>,
        detections: Vec<Vec<Detection>>,
    }

    impl Scenario {
        fn new(images: &[(&[Truth], &[Found])]) -> Self {
            let truth = images
                .iter()
                .map(|(truth, _)| {
                    truth
                        .iter()
                        .map(|&(class, x0, y0, x1, y1)| LabelledBox {
                            class,
                            bbox: pixels(x0, y0, x1, y1),
                        })
                        .collect()
                })
                .collect();
            let detections = images
                .iter()
                .map(|(_, found)| {
                    found
                        .iter()
                        .map(|&(class, score, x0, y0, x1, y1)| Detection {
                            class,
                            score,
                            bbox: pixels(x0, y0, x1, y1),
                        })
                        .collect()
                })
                .collect();
            Self { truth, detections }
        }

        fn evaluate(&self, classes: usize) -> DetectionReport {
            let names: Vec<String> = (0..classes).map(|c| format!("c{c}")).collect();
            let images: Vec<ImageDetections> = self
                .truth
                .iter()
                .zip(&self.detections)
                .map(|(truth, detections)| ImageDetections { truth, detections })
                .collect();
            evaluate(&names, &images).unwrap()
        }
    }

    fn assert_close(actual: f64, expected: f64, what: &str) {
        assert!(
            (actual - expected).abs() < 1e-6,
            "{what}: {actual} != {expected}"
        );
    }

    /// Checks a report against tests/fixtures/detection_ap.py's pycocotools output.
    fn assert_matches_pycocotools(
        report: &DetectionReport,
        ap50: &[Option<f64>],
        ap50_95: &[Option<f64>],
        map50: f64,
        map50_95: f64,
    ) {
        for (class, metrics) in report.per_class.iter().enumerate() {
            for (actual, expected, what) in [
                (metrics.ap50, ap50[class], "AP50"),
                (metrics.ap50_95, ap50_95[class], "AP50-95"),
            ] {
                match (actual, expected) {
                    (Some(a), Some(e)) => assert_close(a, e, &format!("class {class} {what}")),
                    _ => assert_eq!(actual, expected, "class {class} {what}"),
                }
            }
        }
        assert_close(report.map50, map50, "mAP50");
        assert_close(report.map50_95, map50_95, "mAP50-95");
    }

    // The expected values below are pycocotools 2.0.11's, printed by
    // tests/fixtures/detection_ap.py for the same scenarios.

    #[test]
    fn misses_duplicates_and_false_positives_match_pycocotools() {
        let scenario = Scenario::new(&[
            (
                &[(0, 0, 0, 20, 20), (0, 30, 30, 50, 50), (1, 5, 40, 25, 60)],
                &[
                    (0, 0.95, 0, 0, 20, 20),
                    (0, 0.80, 32, 30, 52, 50),
                    (0, 0.60, 1, 1, 21, 21),
                    (1, 0.70, 5, 44, 25, 64),
                ],
            ),
            (
                &[(1, 10, 10, 40, 30)],
                &[(1, 0.90, 12, 10, 40, 30), (0, 0.85, 10, 10, 40, 30)],
            ),
            (
                &[(0, 40, 0, 60, 16), (1, 0, 0, 16, 16)],
                &[(1, 0.40, 40, 0, 60, 16), (1, 0.30, 0, 2, 16, 18)],
            ),
        ]);
        let report = scenario.evaluate(2);
        assert_matches_pycocotools(
            &report,
            &[Some(0.5544554455445545), Some(0.9158415841584159)],
            &[Some(0.4891089108910891), Some(0.5673267326732673)],
            0.735148514851485,
            0.5282178217821782,
        );
        // By hand for class 0 at IoU 0.5: hit, miss, hit, miss of 3 boxes; precision made
        // monotone 1, 2/3, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3: 34 recall points at 1 and 33
        // at 2/3, of 101.
        assert_close(
            report.per_class[0].ap50.unwrap(),
            (34.0 + 33.0 * 2.0 / 3.0) / 101.0,
            "class 0 AP50 by hand",
        );
        assert_eq!((report.images, report.instances), (3, 6));
        assert_eq!(report.per_class[0].detections, 4);
        // The curve behind it, by the same hand: precision 1 up to recall 1/3, 2/3 up to 2/3,
        // then never reached.
        let curve = report.per_class[0].precision_recall.as_ref().unwrap();
        assert_eq!(curve.len(), 101);
        assert_eq!((curve[0], curve[33]), (1.0, 1.0));
        assert_close(curve[34], 2.0 / 3.0, "precision at recall 0.34");
        assert_close(curve[66], 2.0 / 3.0, "precision at recall 0.66");
        assert_eq!((curve[67], curve[100]), (0.0, 0.0));
    }

    #[test]
    fn a_class_never_found_and_a_class_never_there_match_pycocotools() {
        let scenario = Scenario::new(&[
            (
                &[(0, 8, 8, 40, 40)],
                &[(0, 0.90, 8, 8, 40, 38), (2, 0.80, 0, 0, 10, 10)],
            ),
            (
                &[(1, 0, 0, 32, 32), (1, 32, 32, 64, 64)],
                &[(0, 0.70, 0, 0, 32, 32), (2, 0.60, 32, 32, 64, 64)],
            ),
        ]);
        let report = scenario.evaluate(3);
        assert_matches_pycocotools(
            &report,
            &[Some(0.9999999999999999), Some(0.0), None],
            &[Some(0.8999999999999999), Some(0.0), None],
            0.49999999999999994,
            0.44999999999999996,
        );
        // Best mean F1 (of classes 0 and 1) at 0.9: class 0 finds its box (F1 1), class 1
        // nothing (F1 0); mean 0.5. At 0.8 the same (class 2 has no truth and does not count),
        // at 0.7 class 0 adds a false positive: F1 2/3, mean 1/3.
        assert_eq!(report.score_threshold, Some(0.9));
        let class = |c: usize| {
            let m = &report.per_class[c];
            (m.precision, m.recall)
        };
        assert_eq!(class(0), (Some(1.0), Some(1.0)));
        assert_eq!(class(1), (Some(0.0), Some(0.0)));
        assert_eq!(class(2), (None, None));
        assert_eq!((report.precision, report.recall), (0.5, 0.5));
        assert_eq!(report.per_class[2].detections, 2);
    }

    #[test]
    fn greedy_matching_takes_the_best_unmatched_truth_as_pycocotools() {
        let scenario = Scenario::new(&[
            (
                &[(0, 0, 0, 20, 20), (0, 10, 0, 30, 20), (1, 40, 40, 60, 60)],
                &[
                    // IoU 0.538 with the first box, 0.667 with the second.
                    (0, 0.90, 6, 0, 26, 20),
                    // 0.905 with the first.
                    (0, 0.80, 1, 0, 21, 20),
                    // 0.903 with the second: a hit only at IoU 0.7 and up, where the first
                    // detection no longer takes it.
                    (0, 0.70, 11, 0, 30, 19),
                    // 0.81, then a duplicate at 1.0 that is a hit from IoU 0.85.
                    (1, 0.85, 42, 42, 60, 60),
                    (1, 0.50, 40, 40, 60, 60),
                ],
            ),
            (
                &[(0, 0, 40, 24, 64), (1, 30, 0, 50, 20)],
                &[(0, 0.60, 0, 40, 24, 64), (0, 0.95, 40, 0, 64, 24)],
            ),
        ]);
        assert_matches_pycocotools(
            &scenario.evaluate(2),
            &[Some(0.6442244224422441), Some(0.5049504950495048)],
            &[Some(0.5644224422442243), Some(0.4292079207920791)],
            0.5745874587458746,
            0.4968151815181518,
        );
    }

    #[test]
    fn localisation_across_iou_thresholds_matches_pycocotools() {
        let scenario = Scenario::new(&[
            (
                &[
                    (0, 0, 0, 16, 16),
                    (0, 24, 0, 40, 16),
                    (0, 46, 0, 62, 16),
                    (0, 0, 24, 16, 40),
                    (0, 24, 24, 40, 40),
                ],
                &[
                    // IoU 15/17, 225/287, 210/302, 196/316, 182/330, none, then 1.
                    (0, 0.55, 1, 0, 17, 16),
                    (0, 0.90, 25, 1, 41, 17),
                    (0, 0.80, 48, 1, 64, 17),
                    (0, 0.70, 2, 26, 18, 42),
                    (0, 0.95, 27, 26, 43, 42),
                    (0, 0.65, 48, 48, 64, 64),
                    (0, 0.45, 24, 24, 40, 40),
                ],
            ),
            (
                &[(1, 8, 8, 56, 56), (1, 0, 56, 8, 64)],
                &[(1, 0.50, 11, 11, 59, 59), (1, 0.20, 0, 56, 8, 64)],
            ),
        ]);
        assert_matches_pycocotools(
            &scenario.evaluate(2),
            &[Some(0.9669966996699667), Some(1.0)],
            &[Some(0.4005539839698256), Some(0.700990099009901)],
            0.9834983498349836,
            0.5507720414898633,
        );
    }

    #[test]
    fn no_detections_score_zero_without_nan() {
        let truth = [LabelledBox {
            class: 1,
            bbox: pixels(0, 0, 10, 10),
        }];
        let names = vec!["a".to_string(), "b".to_string()];
        let report = evaluate(
            &names,
            &[
                ImageDetections {
                    truth: &truth,
                    detections: &[],
                },
                ImageDetections {
                    truth: &[],
                    detections: &[],
                },
            ],
        )
        .unwrap();
        assert_eq!((report.map50, report.map50_95), (0.0, 0.0));
        assert_eq!((report.precision, report.recall), (0.0, 0.0));
        assert_eq!(report.score_threshold, None);
        assert_eq!(report.per_class[1].ap50, Some(0.0));
        assert_eq!(report.per_class[1].ap50_95, Some(0.0));
        assert_eq!(report.per_class[0].ap50, None);
        // serde_json would write a NaN as null: every score is a number.
        let json = serde_json::to_value(&report).unwrap();
        for key in ["mAP50", "mAP50_95", "precision", "recall"] {
            assert_eq!(json[key], 0.0, "{key}");
        }
        assert_eq!(json["perClass"][1]["ap50"], 0.0);
        assert_eq!(json["perClass"][1]["precision"], 0.0);

        // Nothing at all: still numbers.
        let empty = evaluate(&names, &[]).unwrap();
        assert_eq!((empty.map50, empty.precision), (0.0, 0.0));
        assert!(empty.per_class.iter().all(|c| c.ap50.is_none()));
    }

    #[test]
    fn only_wrong_detections_find_no_threshold() {
        let truth = [LabelledBox {
            class: 0,
            bbox: pixels(0, 0, 10, 10),
        }];
        let wrong = [
            Detection {
                class: 0,
                score: 0.9,
                bbox: pixels(30, 30, 40, 40),
            },
            Detection {
                class: 0,
                score: f32::NAN,
                bbox: pixels(0, 0, 10, 10),
            },
        ];
        let report = evaluate(
            &["a".to_string()],
            &[ImageDetections {
                truth: &truth,
                detections: &wrong,
            }],
        )
        .unwrap();
        assert_eq!(report.map50, 0.0);
        assert_eq!(report.score_threshold, None);
        assert_eq!(report.per_class[0].precision, Some(0.0));
        // The NaN-scored detection is ignored, not counted.
        assert_eq!(report.per_class[0].detections, 1);
    }

    #[test]
    fn the_report_serialises_with_ultralytics_names() {
        let scenario = Scenario::new(&[(&[(0, 0, 0, 8, 8)], &[(0, 0.5, 0, 0, 8, 8)])]);
        let json = serde_json::to_value(scenario.evaluate(1)).unwrap();
        assert_eq!(json["mAP50"], 1.0);
        assert_eq!(json["mAP50_95"], 1.0);
        assert_eq!(json["scoreThreshold"], 0.5);
        assert_eq!(json["perClass"][0]["ap50_95"], 1.0);
        assert_eq!(json["perClass"][0]["instances"], 1);
    }

    #[test]
    fn classes_beyond_the_names_are_an_error() {
        let found = [Detection {
            class: 2,
            score: 0.5,
            bbox: pixels(0, 0, 8, 8),
        }];
        let error = evaluate(
            &["a".to_string(), "b".to_string()],
            &[ImageDetections {
                truth: &[],
                detections: &found,
            }],
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("image 0") && error.contains("class 2"),
            "{error}"
        );
    }

    #[test]
    fn thresholds_are_numpy_linspace() {
        let t = iou_thresholds();
        assert_eq!(t[0], 0.5);
        assert_eq!(t[9], 0.95);
        assert!(t.windows(2).all(|w| (w[1] - w[0] - 0.05).abs() < 1e-12));
    }
}
