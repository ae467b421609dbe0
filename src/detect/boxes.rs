//! Axis-aligned boxes, how much two overlap, and non-maximum suppression.
//!
//! A detector's raw output is decoded on the CPU after an asynchronous read-back (natively and
//! in the browser alike), so everything here works on plain slices, not tensors.

/// An axis-aligned box by its corners, `x0 <= x1` and `y0 <= y1` in a proper box. The unit is
/// the caller's: datasets keep fractions of the image's width and height.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl BoundingBox {
    /// 0 for an inverted box (`x1 < x0`).
    pub fn width(&self) -> f32 {
        (self.x1 - self.x0).max(0.0)
    }

    /// 0 for an inverted box (`y1 < y0`).
    pub fn height(&self) -> f32 {
        (self.y1 - self.y0).max(0.0)
    }

    /// 0 for an empty or inverted box.
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    fn is_finite(&self) -> bool {
        [self.x0, self.y0, self.x1, self.y1]
            .iter()
            .all(|v| v.is_finite())
    }
}

/// Intersection over union, from 0 (apart, or only touching) to 1 (the same box). Never NaN:
/// boxes with no area between them (both empty) and boxes with a coordinate that is not finite
/// overlap nothing, so their IoU is 0.
pub fn iou(a: &BoundingBox, b: &BoundingBox) -> f32 {
    if !(a.is_finite() && b.is_finite()) {
        return 0.0;
    }
    let overlap = BoundingBox {
        x0: a.x0.max(b.x0),
        y0: a.y0.max(b.y0),
        x1: a.x1.min(b.x1),
        y1: a.y1.min(b.y1),
    }
    .area();
    let union = a.area() + b.area() - overlap;
    if union > 0.0 {
        (overlap / union).min(1.0)
    } else {
        0.0
    }
}

/// One object a model found: its class, its confidence and where it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub class: usize,
    pub score: f32,
    pub bbox: BoundingBox,
}

/// Class-aware non-maximum suppression: best score first, a detection is kept unless it
/// overlaps one already kept of the same class by IoU above `iou_threshold` (strictly, as
/// torchvision and Ultralytics do); at most `max_detections` are kept. The result is sorted by
/// score, highest first; equal scores keep their input order, so the result is deterministic.
/// Detections whose score is NaN are dropped.
pub fn nms(detections: &[Detection], iou_threshold: f32, max_detections: usize) -> Vec<Detection> {
    let mut order: Vec<&Detection> = detections.iter().filter(|d| !d.score.is_nan()).collect();
    // A stable sort: ties stay in input order.
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for candidate in order {
        if kept.len() >= max_detections {
            break;
        }
        let suppressed = kept
            .iter()
            .any(|k| k.class == candidate.class && iou(&k.bbox, &candidate.bbox) > iou_threshold);
        if !suppressed {
            kept.push(*candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corners(x0: f32, y0: f32, x1: f32, y1: f32) -> BoundingBox {
        BoundingBox { x0, y0, x1, y1 }
    }

    fn found(class: usize, score: f32, bbox: BoundingBox) -> Detection {
        Detection { class, score, bbox }
    }

    #[test]
    fn iou_matches_hand_computed_values() {
        // Overlap 1×1 = 1; union 4 + 4 - 1 = 7.
        assert_eq!(
            iou(&corners(0.0, 0.0, 2.0, 2.0), &corners(1.0, 1.0, 3.0, 3.0)),
            1.0 / 7.0
        );
        // One inside the other: 2×2 = 4 of 4×4 = 16.
        assert_eq!(
            iou(&corners(0.0, 0.0, 4.0, 4.0), &corners(1.0, 1.0, 3.0, 3.0)),
            0.25
        );
        // Shifted by 1 of 10: overlap 9×10 = 90; union 100 + 100 - 90 = 110.
        assert_eq!(
            iou(
                &corners(0.0, 0.0, 10.0, 10.0),
                &corners(1.0, 0.0, 11.0, 10.0)
            ),
            90.0 / 110.0
        );
        let a = corners(0.1, 0.2, 0.5, 0.6);
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(corners(0.0, 0.0, 2.0, 3.0).area(), 6.0);
    }

    #[test]
    fn iou_is_zero_apart_touching_and_degenerate_never_nan() {
        let unit = corners(0.0, 0.0, 1.0, 1.0);
        assert_eq!(iou(&unit, &corners(2.0, 2.0, 3.0, 3.0)), 0.0);
        // Sharing an edge is no overlap.
        assert_eq!(iou(&unit, &corners(1.0, 0.0, 2.0, 1.0)), 0.0);
        // Two empty boxes at the same point: union 0.
        let point = corners(0.5, 0.5, 0.5, 0.5);
        assert_eq!(iou(&point, &point), 0.0);
        assert_eq!(iou(&point, &unit), 0.0);
        // An inverted box has no area and overlaps nothing.
        let inverted = corners(1.0, 1.0, 0.0, 0.0);
        assert_eq!(inverted.area(), 0.0);
        assert_eq!(iou(&inverted, &unit), 0.0);
        assert_eq!(iou(&inverted, &inverted), 0.0);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert_eq!(iou(&corners(bad, 0.0, 0.5, 1.0), &unit), 0.0);
            assert_eq!(iou(&unit, &corners(0.0, 0.0, 1.0, bad)), 0.0);
        }
    }

    #[test]
    fn nms_keeps_the_best_of_each_cluster_per_class() {
        let detections = [
            found(0, 0.9, corners(0.0, 0.0, 10.0, 10.0)),
            // IoU with the first: 90 / 110 = 0.818 > 0.5, suppressed.
            found(0, 0.8, corners(1.0, 0.0, 11.0, 10.0)),
            // The same box as the one above, but another class: kept.
            found(1, 0.85, corners(1.0, 0.0, 11.0, 10.0)),
            // IoU with the first: overlap 5×10 = 50, union 150: 0.333, kept.
            found(0, 0.7, corners(5.0, 0.0, 15.0, 10.0)),
            // The same score, apart from everything: kept, after the one above (input order).
            found(0, 0.7, corners(20.0, 20.0, 30.0, 30.0)),
            // IoU with [5, 15]: 90 / 110 = 0.818, suppressed (with the first: 40 / 160).
            found(0, 0.6, corners(6.0, 0.0, 16.0, 10.0)),
        ];
        let kept = nms(&detections, 0.5, 100);
        assert_eq!(
            kept,
            vec![detections[0], detections[2], detections[3], detections[4]]
        );
        assert_eq!(
            nms(&detections, 0.5, 3),
            vec![detections[0], detections[2], detections[3]]
        );
        assert!(nms(&detections, 0.5, 0).is_empty());
        // Nothing overlaps by more than 1: every detection is kept, best first.
        assert_eq!(nms(&detections, 1.0, 100).len(), detections.len());
    }

    #[test]
    fn nms_suppresses_above_the_threshold_only_and_drops_nan_scores() {
        // IoU exactly 0.5: overlap 10×5 = 50, union 100.
        let detections = [
            found(0, 0.5, corners(0.0, 0.0, 10.0, 5.0)),
            found(0, 0.9, corners(0.0, 0.0, 10.0, 10.0)),
            found(0, f32::NAN, corners(50.0, 50.0, 60.0, 60.0)),
        ];
        assert_eq!(
            nms(&detections, 0.5, 10),
            vec![detections[1], detections[0]]
        );
        assert_eq!(nms(&detections, 0.49, 10), vec![detections[1]]);
        assert!(nms(&[], 0.5, 10).is_empty());
    }
}
