//! Explanations: where in an image the evidence for a class lies.
//!
//! A map is gradient x activation on one of the backbone's feature maps, summed over channels,
//! kept where positive (Grad-CAM's recipe without its spatial averaging of the gradient, which
//! HiResCAM showed is what keeps the map faithful), and scaled so its peak is 1. The score
//! explained is the class's log-probability: softmax ignores any vector added to every class's
//! weights, so a raw logit's map could show evidence the model does not use.
//!
//! - [`Resolution::Coarse`], the default: the last feature map `A` (`1280 x 7 x 7`). The
//!   embedding is its spatial mean, so the gradient is the same at every position and comes in
//!   closed form from the head's weights (through its hidden ReLU layer when there is one): one
//!   forward pass, and exactly Grad-CAM.
//! - [`Resolution::Fine`]: the last map at stride 16 (`112 x 14 x 14`, before the final
//!   downsampling), the gradient by autodiff through the rest of the network. One forward and
//!   one partial backward pass; it localises better (see `tests/explain.rs`).
//!
//! A fine-tuned model's map comes from its own (fine-tuned) layers.

pub mod overlay;

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use crate::data::preprocess::batch_tensor;
use crate::data::{EFFICIENTNET_LITE, Region};
use crate::error::{GraftError, Result};
use crate::model::efficientnet_lite::{Grid, blocks_before_last_downsampling, global_pool};
use crate::model::{BackboneTail, ClassifierHead, EfficientNetLite0, NUM_BLOCKS};
use crate::predict::{Prediction, label_of, top_k};

/// How fine a map is, and so how it is computed (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resolution {
    /// 7 x 7 cells of 32 input pixels, in closed form.
    #[default]
    Coarse,
    /// 14 x 14 cells of 16 input pixels, by autodiff.
    Fine,
}

impl Resolution {
    /// `true` for [`Resolution::Fine`]: the form the CLI flag and the JS option take.
    pub fn fine_if(fine: bool) -> Self {
        if fine { Self::Fine } else { Self::Coarse }
    }

    /// The number of backbone blocks before the map this resolution explains.
    fn blocks(self) -> usize {
        match self {
            Self::Coarse => NUM_BLOCKS,
            Self::Fine => blocks_before_last_downsampling(),
        }
    }

    fn grid(self) -> Grid {
        Grid::after(self.blocks())
    }
}

/// Which class to explain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The most probable class of each image.
    Predicted,
    /// This class (an index into the model's labels) for every image.
    Class(usize),
}

impl Target {
    /// The class named `label`, or the predicted one when there is no name; an unknown name is
    /// an error that lists the model's classes.
    pub fn from_label(label: Option<&str>, labels: &[String]) -> Result<Self> {
        let Some(label) = label else {
            return Ok(Target::Predicted);
        };
        labels
            .iter()
            .position(|l| l == label)
            .map(Target::Class)
            .ok_or_else(|| {
                GraftError::option(
                    "label",
                    format!(
                        "'{label}' is not one of the model's classes ({})",
                        labels.join(", ")
                    ),
                )
            })
    }
}

/// A class-activation map for one image and one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassMap {
    /// The class explained.
    pub label: String,
    #[serde(skip)]
    pub index: usize,
    /// Its probability.
    pub score: f32,
    /// `rows x cols` values in [0, 1], row 0 at the top, row-major; the peak is 1 unless the
    /// map is all 0 (no positive evidence anywhere).
    pub heatmap: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
}

impl ClassMap {
    /// The map as rows, row 0 at the top (the CLI's JSON).
    pub fn heatmap_rows(&self) -> Vec<&[f32]> {
        self.heatmap.chunks(self.cols.max(1)).collect()
    }
}

/// An image's predictions with the map of the class explained.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Over every class, in the model's label order.
    pub probabilities: Vec<f32>,
    pub map: ClassMap,
}

impl Explanation {
    /// The `k` most probable classes, best first.
    pub fn top_k(&self, labels: &[String], k: usize) -> Vec<Prediction> {
        top_k(&self.probabilities, labels, k)
    }
}

/// The rectangle of an image of `width x height` that a map's cells cover: the centre crop
/// that preprocessing keeps, moved by where the cells actually look ([`Grid::offset`]: half a
/// cell to the bottom right).
pub fn map_region(width: u32, height: u32, resolution: Resolution) -> Region {
    let crop = EFFICIENTNET_LITE.crop_region(width, height);
    let lean = resolution.grid().offset / EFFICIENTNET_LITE.crop as f32;
    Region {
        x: crop.x + lean * crop.width,
        y: crop.y + lean * crop.height,
        ..crop
    }
}

/// Maps of `target` at `resolution` for preprocessed `images` (see
/// [`crate::data::Preprocessing`]), with the class probabilities, one per image. Reads back
/// without blocking.
pub async fn explain(
    backbone: &EfficientNetLite0,
    head: &ClassifierHead,
    labels: &[String],
    images: &[Vec<f32>],
    target: Target,
    resolution: Resolution,
    device: &Device,
) -> Result<Vec<Explanation>> {
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let input = batch_tensor(images, device);
    let (scores, maps) = match resolution {
        Resolution::Coarse => coarse_maps(backbone, head, input, target).await?,
        Resolution::Fine => fine_maps(backbone, head, input, target, device).await?,
    };
    let cells = resolution.grid().cells();
    Ok(scores
        .probabilities
        .into_iter()
        .zip(maps.chunks(cells * cells))
        .zip(scores.chosen)
        .map(|((probabilities, map), index)| Explanation {
            map: ClassMap {
                label: label_of(labels, index),
                index,
                score: probabilities[index],
                heatmap: peak_normalised(map),
                rows: cells,
                cols: cells,
            },
            probabilities,
        })
        .collect())
}

/// Each image's logits and probabilities, and the class explained for it.
struct Scores {
    logits: Vec<Vec<f32>>,
    probabilities: Vec<Vec<f32>>,
    chosen: Vec<usize>,
}

impl Scores {
    async fn read(logits: Tensor<2>, target: Target) -> Result<Self> {
        let classes = logits.dims()[1];
        let logits: Vec<Vec<f32>> = logits
            .into_data_async()
            .await?
            .try_into_vec::<f32>()?
            .chunks(classes)
            .map(<[f32]>::to_vec)
            .collect();
        let probabilities: Vec<Vec<f32>> =
            logits.iter().map(|row| softmax_row(row, None)).collect();
        let chosen: Vec<usize> = probabilities
            .iter()
            .map(|row| match target {
                Target::Predicted => crate::train::session::argmax(row),
                Target::Class(index) => index,
            })
            .collect();
        if let Some(&bad) = chosen.iter().find(|&&c| c >= classes) {
            return Err(GraftError::option(
                "label",
                format!("class {bad} of a model with {classes} classes"),
            ));
        }
        Ok(Self {
            logits,
            probabilities,
            chosen,
        })
    }

    /// The direction of each image's log p(class) in logit space, `[batch, classes]`, up to a
    /// positive scale: the class against the others weighted by their share of the rest.
    /// Stable where p(class) rounds to 1 (autodiff through log-softmax would then see only the
    /// other classes' evidence, and nothing at all past a margin of about 100).
    fn directions(&self, device: &Device) -> Tensor<2> {
        let classes = self.logits.first().map_or(0, Vec::len);
        let mut values = Vec::with_capacity(self.chosen.len() * classes);
        for (row, &class) in self.logits.iter().zip(&self.chosen) {
            let rest = softmax_row(row, Some(class));
            values.extend((0..classes).map(|k| if k == class { 1.0 } else { -rest[k] }));
        }
        Tensor::from_data(
            TensorData::new(values, [self.chosen.len(), classes]),
            device,
        )
    }
}

/// Grad-CAM on the last feature map, in closed form: maps `[batch * 49]`, before scaling.
async fn coarse_maps(
    backbone: &EfficientNetLite0,
    head: &ClassifierHead,
    input: Tensor<4>,
    target: Target,
) -> Result<(Scores, Vec<f32>)> {
    let device = input.device();
    let feature_map = backbone.feature_map(input);
    let [batch, channels, rows, cols] = feature_map.dims();
    let embeddings = global_pool(feature_map.clone());
    let scores = Scores::read(head.forward(embeddings.clone()), target).await?;
    let gradient = logit_gradient(head, embeddings, scores.directions(&device));
    let weighted = gradient
        .reshape([batch, 1, channels])
        .matmul(feature_map.reshape([batch, channels, rows * cols]));
    let maps = relu(weighted).into_data_async().await?.try_into_vec()?;
    Ok((scores, maps))
}

/// Gradient x activation on the 14x14 map, the gradient of log p(class) (in its stable
/// direction, [`Scores::directions`]) by autodiff through the blocks after it, the head conv
/// and the head: maps `[batch * 196]`, before scaling.
async fn fine_maps(
    backbone: &EfficientNetLite0,
    head: &ClassifierHead,
    input: Tensor<4>,
    target: Target,
    device: &Device,
) -> Result<(Scores, Vec<f32>)> {
    let first = blocks_before_last_downsampling();
    let activations = backbone.forward_prefix(input, first);
    let autodiff = device.clone().autodiff();
    // Frozen: inference BatchNorm, and no gradient kept for any weight.
    let rest = BackboneTail::of(backbone, NUM_BLOCKS - first)?
        .fork(&autodiff)
        .freeze();
    let head = head.clone().fork(&autodiff).freeze();
    let tracked = activations.clone().autodiff().require_grad();
    let logits = head.forward(rest.forward(tracked.clone()));
    let scores = Scores::read(logits.clone(), target).await?;
    let objective = (logits * scores.directions(&autodiff)).sum();
    let gradient = tracked
        .grad(&objective.backward())
        .expect("the activations are tracked");
    let maps = relu((gradient * activations).sum_dim(1))
        .into_data_async()
        .await?
        .try_into_vec()?;
    Ok((scores, maps))
}

/// The gradient of each image's `directions · logits` (`[batch, classes]`) with respect to its
/// embedding, `[batch, 1280]`, in closed form.
fn logit_gradient(
    head: &ClassifierHead,
    embeddings: Tensor<2>,
    directions: Tensor<2>,
) -> Tensor<2> {
    // burn's Linear stores `[inputs, outputs]`, so a row of `one_hot x W^T` is a class's column.
    let output_weight = head.output.weight.val().transpose();
    match &head.hidden {
        None => directions.matmul(output_weight),
        Some(hidden) => {
            let pre_activation = hidden.forward(embeddings);
            let through_relu = directions
                .matmul(output_weight)
                .mask_fill(pre_activation.lower_equal_elem(0.0), 0.0);
            through_relu.matmul(hidden.weight.val().transpose())
        }
    }
}

/// Softmax of one row of logits, computed stably; with `without`, over the other classes only
/// (that class gets 0).
fn softmax_row(logits: &[f32], without: Option<usize>) -> Vec<f32> {
    let kept = |k: usize| Some(k) != without;
    let max = (0..logits.len())
        .filter(|&k| kept(k))
        .map(|k| logits[k])
        .fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = (0..logits.len())
        .map(|k| {
            if kept(k) {
                (logits[k] - max).exp()
            } else {
                0.0
            }
        })
        .collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Scales a map so its peak is 1; a map with no positive (or no finite) value is all 0.
fn peak_normalised(map: &[f32]) -> Vec<f32> {
    let peak = map
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f32, f32::max);
    map.iter()
        .map(|&v| {
            if peak > 0.0 && v.is_finite() {
                (v / peak).clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::split::SeededRng;
    use crate::model::{FEATURE_DIM, HeadConfig};
    use burn::tensor::Distribution;

    /// The closed-form gradient equals autodiff's, for both head shapes.
    #[test]
    fn closed_form_gradient_matches_autodiff() {
        let device = Device::flex();
        let autodiff = device.clone().autodiff();
        for hidden_units in [None, Some(16)] {
            let head = HeadConfig::new(3)
                .with_hidden_units(hidden_units)
                .init(&autodiff, 5);
            let embeddings =
                Tensor::<2>::random([4, FEATURE_DIM], Distribution::Uniform(0.0, 6.0), &autodiff)
                    .require_grad();
            let one_hot = Tensor::<2>::from_data(
                TensorData::new(vec![0., 1., 0., 1., 0., 0., 0., 0., 1., 0., 1., 0.], [4, 3]),
                &autodiff,
            );
            let logits = head.forward(embeddings.clone());
            let grads = (logits * one_hot.clone()).sum().backward();
            let expected = embeddings.grad(&grads).unwrap().into_data();
            let closed = logit_gradient(&head, embeddings.detach(), one_hot).into_data();
            closed.assert_approx_eq::<f32>(&expected, burn::tensor::Tolerance::absolute(1e-5));
        }
    }

    /// Redraws every weight matrix and kernel from a seeded generator (flex's own is shared by
    /// every test running in parallel, so a scene drawn from it differs per run), with the
    /// scale of a uniform fan-in initialisation; vectors (BatchNorm's constants at init) are
    /// kept.
    struct SeededWeights<'a> {
        rng: SeededRng,
        device: &'a Device,
    }

    impl burn::module::ModuleMapper for SeededWeights<'_> {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            let rng = &mut self.rng;
            let device = self.device;
            param.map(|value| {
                let shape = value.shape();
                if D < 2 {
                    return value;
                }
                let fan_in: usize = shape.dims::<D>()[1..].iter().product();
                let values = rng.uniform(shape.num_elements(), (1.0 / fan_in as f32).sqrt());
                Tensor::from_data(TensorData::new(values, shape), device)
            })
        }
    }

    /// A fixed pseudo-random image through a backbone with fixed pseudo-random weights: enough
    /// to compare maps, and the same scene in every run.
    struct RandomScene {
        device: Device,
        backbone: EfficientNetLite0,
        image: Vec<f32>,
    }

    impl RandomScene {
        fn new() -> Self {
            let device = Device::flex();
            let mut rng = SeededRng::new(7);
            let image = rng.uniform(3 * 224 * 224, 1.0);
            let backbone = EfficientNetLite0::new(&device).map(&mut SeededWeights {
                rng,
                device: &device,
            });
            Self {
                backbone,
                device,
                image,
            }
        }

        fn explain(
            &self,
            head: &ClassifierHead,
            class: usize,
            resolution: Resolution,
        ) -> Explanation {
            let labels: Vec<String> = (0..head.output.weight.dims()[1])
                .map(|c| c.to_string())
                .collect();
            let images = [self.image.clone()];
            let run = explain(
                &self.backbone,
                head,
                &labels,
                &images,
                Target::Class(class),
                resolution,
                &self.device,
            );
            futures_lite::future::block_on(run).unwrap().remove(0)
        }
    }

    /// The largest difference between two maps' cells.
    fn largest_difference(a: &Explanation, b: &Explanation) -> f32 {
        a.map
            .heatmap
            .iter()
            .zip(&b.map.heatmap)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Adding one vector to every class's weights changes no probability, so it must change no
    /// map: the log-probability is explained, not the raw logit.
    #[test]
    fn maps_ignore_what_softmax_ignores() {
        let scene = RandomScene::new();
        let head = HeadConfig::new(3).init(&scene.device, 3);
        let shift = SeededRng::new(11).uniform(FEATURE_DIM, 0.5);
        let shift = Tensor::<2>::from_data(TensorData::new(shift, [FEATURE_DIM, 1]), &scene.device);
        let mut shifted = HeadConfig::new(3).init(&scene.device, 3);
        shifted.output.weight = shifted.output.weight.map(|w| w + shift.clone());
        for (resolution, cells) in [(Resolution::Coarse, 7), (Resolution::Fine, 14)] {
            let (a, b) = (
                scene.explain(&head, 1, resolution),
                scene.explain(&shifted, 1, resolution),
            );
            for (x, y) in a.probabilities.iter().zip(&b.probabilities) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
            let largest = largest_difference(&a, &b);
            assert!(largest < 1e-3, "{resolution:?} maps differ by {largest}");
            assert!(a.map.heatmap.contains(&1.0), "a map with a peak");
            assert_eq!((a.map.rows, a.map.cols), (cells, cells));
        }
    }

    /// A model sure of its answer (p = 1 in f32) still shows its evidence: a bias moves no
    /// gradient, so a head made certain by one has the same maps.
    #[test]
    fn confident_models_keep_their_maps() {
        let scene = RandomScene::new();
        let head = HeadConfig::new(2).init(&scene.device, 4);
        let mut sure = HeadConfig::new(2).init(&scene.device, 4);
        let certainty =
            Tensor::<1>::from_data(TensorData::new(vec![200.0f32, 0.0], [2]), &scene.device);
        sure.output.bias = sure.output.bias.map(|b| b.map(|b| b + certainty.clone()));
        for resolution in [Resolution::Coarse, Resolution::Fine] {
            let (plain, confident) = (
                scene.explain(&head, 0, resolution),
                scene.explain(&sure, 0, resolution),
            );
            assert_eq!(confident.probabilities[0], 1.0, "the biased head is sure");
            assert!(
                confident.map.heatmap.contains(&1.0),
                "{resolution:?}: a map with a peak"
            );
            let largest = largest_difference(&plain, &confident);
            assert!(largest < 1e-3, "{resolution:?} maps differ by {largest}");
        }
    }

    #[test]
    fn maps_are_scaled_to_a_peak_of_one() {
        assert_eq!(peak_normalised(&[0.0, 2.0, 1.0]), [0.0, 1.0, 0.5]);
        assert_eq!(peak_normalised(&[0.0, 0.0]), [0.0, 0.0]);
        assert_eq!(peak_normalised(&[f32::NAN, 4.0]), [0.0, 1.0]);
    }

    #[test]
    fn an_unknown_label_names_the_classes() {
        let labels = vec!["cat".to_string(), "dog".into()];
        assert_eq!(
            Target::from_label(Some("dog"), &labels).unwrap(),
            Target::Class(1)
        );
        assert_eq!(
            Target::from_label(None, &labels).unwrap(),
            Target::Predicted
        );
        let error = Target::from_label(Some("cow"), &labels)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cow") && error.contains("cat, dog"),
            "{error}"
        );
    }
}
