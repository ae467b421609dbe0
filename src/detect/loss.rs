//! FCOS's training objective, summed over the levels and divided by the number of object
//! cells: focal loss on the class scores, GIoU loss on the boxes (weighted by centredness, so
//! the cells near a centre, which decide, matter most), binary cross-entropy on centredness.
//! Everything is masked by multiplication, with no gather or `topk`, so it runs on WebGPU.

use burn::tensor::activation::{log_sigmoid, sigmoid};
use burn::tensor::{Device, Tensor, TensorData};

use super::encoding::LevelTargets;
use super::head::{LEVELS, LevelOutput};

/// Focal loss's weight of positives and its focusing exponent (RetinaNet's values).
const FOCAL_ALPHA: f32 = 0.25;
const FOCAL_GAMMA: f64 = 2.0;
/// Cap on the predicted log-distances, as in decoding.
const MAX_LOG_DISTANCE: f32 = 8.0;

/// A batch's targets for one level, as tensors.
pub struct LevelTargetTensors {
    classes: Tensor<4>,
    sides: Tensor<4>,
    centredness: Tensor<4>,
    positive: Tensor<4>,
}

impl LevelTargetTensors {
    /// Stacks the images' targets for `level`; `cells` per side.
    pub fn stack(
        images: &[[LevelTargets; LEVELS]],
        level: usize,
        classes: usize,
        cells: usize,
        device: &Device,
    ) -> Self {
        let n = images.len();
        let gather = |pick: &dyn Fn(&LevelTargets) -> &Vec<f32>, channels: usize| {
            let values: Vec<f32> = images
                .iter()
                .flat_map(|t| pick(&t[level]).iter().copied())
                .collect();
            Tensor::<4>::from_data(TensorData::new(values, [n, channels, cells, cells]), device)
        };
        Self {
            classes: gather(&|t| &t.classes, classes),
            sides: gather(&|t| &t.sides, 4),
            centredness: gather(&|t| &t.centredness, 1),
            positive: gather(&|t| &t.positive, 1),
        }
    }
}

/// The three parts of the loss, each already divided by its normaliser.
pub struct DetectionLoss {
    pub classes: Tensor<1>,
    pub boxes: Tensor<1>,
    pub centredness: Tensor<1>,
}

impl DetectionLoss {
    pub fn total(&self) -> Tensor<1> {
        self.classes.clone() + self.boxes.clone() + self.centredness.clone()
    }
}

/// Binary cross-entropy from logits, stable for large logits.
fn cross_entropy(logits: Tensor<4>, targets: Tensor<4>) -> Tensor<4> {
    let positive = log_sigmoid(logits.clone()) * targets.clone();
    let negative = log_sigmoid(logits.neg()) * targets.neg().add_scalar(1.0);
    (positive + negative).neg()
}

/// The loss of a batch: `outputs` from [`super::head::DetectionHead::forward`].
pub fn detection_loss(
    outputs: &[LevelOutput; LEVELS],
    targets: &[LevelTargetTensors],
) -> DetectionLoss {
    let mut class_sum: Option<Tensor<1>> = None;
    let mut box_sum: Option<Tensor<1>> = None;
    let mut centredness_sum: Option<Tensor<1>> = None;
    let mut positives: Option<Tensor<1>> = None;
    let mut box_weight: Option<Tensor<1>> = None;
    let add = |sum: &mut Option<Tensor<1>>, value: Tensor<1>| {
        *sum = Some(match sum.take() {
            Some(s) => s + value,
            None => value,
        });
    };
    for (output, target) in outputs.iter().zip(targets) {
        // Focal loss: cross-entropy scaled down where the cell is already right.
        let p = sigmoid(output.classes.clone());
        let t = target.classes.clone();
        let p_right =
            p.clone() * t.clone() + (p.neg().add_scalar(1.0)) * t.clone().neg().add_scalar(1.0);
        let alpha = t
            .clone()
            .mul_scalar(2.0 * FOCAL_ALPHA - 1.0)
            .add_scalar(1.0 - FOCAL_ALPHA);
        let focal = cross_entropy(output.classes.clone(), t)
            * p_right.neg().add_scalar(1.0).powf_scalar(FOCAL_GAMMA)
            * alpha;
        add(&mut class_sum, focal.sum());

        // GIoU of the predicted and true distances, both in strides from the cell's centre.
        let predicted = output.sides.clone().clamp_max(MAX_LOG_DISTANCE).exp();
        let side = |t: &Tensor<4>, k: usize| t.clone().narrow(1, k, 1);
        let [pl, pt, pr, pb] = [0, 1, 2, 3].map(|k| side(&predicted, k));
        let [tl, tt, tr, tb] = [0, 1, 2, 3].map(|k| side(&target.sides, k));
        let predicted_area = (pl.clone() + pr.clone()) * (pt.clone() + pb.clone());
        let target_area = (tl.clone() + tr.clone()) * (tt.clone() + tb.clone());
        let overlap = (pl.clone().min_pair(tl.clone()) + pr.clone().min_pair(tr.clone()))
            * (pt.clone().min_pair(tt.clone()) + pb.clone().min_pair(tb.clone()));
        let union = predicted_area + target_area - overlap.clone();
        let hull = (pl.max_pair(tl) + pr.max_pair(tr)) * (pt.max_pair(tt) + pb.max_pair(tb));
        let giou = overlap / union.clone() - (hull.clone() - union) / hull;
        let weight = target.centredness.clone() * target.positive.clone();
        add(
            &mut box_sum,
            (giou.neg().add_scalar(1.0) * weight.clone()).sum(),
        );
        add(&mut box_weight, weight.sum());

        let centredness = cross_entropy(output.centredness.clone(), target.centredness.clone())
            * target.positive.clone();
        add(&mut centredness_sum, centredness.sum());
        add(&mut positives, target.positive.clone().sum());
    }
    let positives = positives.expect("levels").clamp_min(1.0);
    let box_weight = box_weight.expect("levels").clamp_min(1e-6);
    DetectionLoss {
        classes: class_sum.expect("levels") / positives.clone(),
        boxes: box_sum.expect("levels") / box_weight,
        centredness: centredness_sum.expect("levels") / positives,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::boxes::BoundingBox;
    use crate::detect::encoding::{InputBox, LevelGrid, targets};

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_data().try_into_vec::<f32>().unwrap()[0]
    }

    /// Predicting the targets themselves scores better on every part than predicting nothing,
    /// and the box part reaches 0.
    #[test]
    fn the_loss_is_lowest_where_predictions_are_the_targets() {
        let device = Device::flex();
        let side = 128;
        let boxes = [
            InputBox {
                class: 1,
                bbox: BoundingBox {
                    x0: 20.0,
                    y0: 30.0,
                    x1: 70.0,
                    y1: 90.0,
                },
            },
            InputBox {
                class: 0,
                bbox: BoundingBox {
                    x0: 5.0,
                    y0: 5.0,
                    x1: 125.0,
                    y1: 120.0,
                },
            },
        ];
        let image = targets(&boxes, 2, side);
        let grids = LevelGrid::levels(side);
        let tensors: Vec<LevelTargetTensors> = (0..LEVELS)
            .map(|l| {
                LevelTargetTensors::stack(
                    std::slice::from_ref(&image),
                    l,
                    2,
                    grids[l].cells,
                    &device,
                )
            })
            .collect();
        let map = |values: Vec<f32>, channels: usize, cells: usize| {
            Tensor::<4>::from_data(
                TensorData::new(values, [1, channels, cells, cells]),
                &device,
            )
        };
        let logit = |p: f32| (p.clamp(1e-4, 1.0 - 1e-4) / (1.0 - p.clamp(1e-4, 1.0 - 1e-4))).ln();
        let outputs = |perfect: bool| -> [LevelOutput; LEVELS] {
            std::array::from_fn(|l| {
                let (t, n) = (&image[l], grids[l].cells);
                let pick = |values: Vec<f32>| {
                    if perfect {
                        values
                    } else {
                        vec![0.0; values.len()]
                    }
                };
                LevelOutput {
                    classes: map(pick(t.classes.iter().map(|&p| logit(p)).collect()), 2, n),
                    sides: map(pick(t.sides.iter().map(|d| d.ln()).collect()), 4, n),
                    centredness: map(
                        pick(t.centredness.iter().map(|&c| logit(c)).collect()),
                        1,
                        n,
                    ),
                }
            })
        };
        let perfect = detection_loss(&outputs(true), &tensors);
        let blank = detection_loss(&outputs(false), &tensors);
        let (pc, bc) = (scalar(perfect.classes), scalar(blank.classes));
        let (pb, bb) = (scalar(perfect.boxes), scalar(blank.boxes));
        let (pz, bz) = (scalar(perfect.centredness), scalar(blank.centredness));
        assert!(pc < bc / 100.0, "class loss {pc} vs {bc}");
        assert!(pb.abs() < 1e-5 && bb > 0.1, "box loss {pb} vs {bb}");
        assert!(pz < bz, "centredness loss {pz} vs {bz}");
    }
}
