//! Training a detector with the backbone frozen: every image goes through the backbone once
//! (and once mirrored), its three maps are kept in half precision ([`FeatureCache`]), and the
//! head trains on them for as many epochs as asked. One recipe for the CLI and the browser: the
//! callers decode and letterbox the images and hand over the inputs.

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use half::f16;
use serde::Serialize;

use super::dataset::LabelledBox;
use super::encoding::{InputBox, LevelGrid, targets};
use super::head::{DetectionHead, HeadConfig, LEVELS};
use super::inference::{Scoring, read_detections};
use super::letterbox::{mirrored, mirrored_box};
use super::loss::{LevelTargetTensors, detection_loss};
use super::metrics::DetectionReport;
use crate::data::split::SeededRng;
use crate::error::{GraftError, Result};
use crate::model::EfficientNetLite0;
use crate::model::efficientnet_lite::PYRAMID_CHANNELS;
use crate::train::TrainOptions;

/// The input side when none is asked for: laptop-friendly, and objects of a tenth of the
/// image are still 32 pixels.
pub const DEFAULT_INPUT_SIZE: usize = 320;
pub const DEFAULT_EPOCHS: usize = 20;
pub const DEFAULT_BATCH_SIZE: usize = 8;
/// A fresh head with group normalisation takes a high rate: on the generated set
/// (tests/detection.rs), 5 epochs reached mAP50 0.75 at 1e-3 without the normalisation, 0.90
/// at 3e-3 with it.
pub const DEFAULT_LEARNING_RATE: f64 = 3e-3;
/// The lowest score kept when measuring mAP (COCO evaluations keep nearly everything and let
/// the precision-recall curve rank).
pub const EVALUATION_MIN_SCORE: f32 = 0.01;
/// The cached maps may take at most this much memory; more images are refused before any is
/// read, with this limit in the message.
pub const MAX_CACHE_BYTES: usize = 3 << 30;
/// Images per backbone pass.
pub(crate) const CACHE_BATCH: usize = 8;

/// How a detector is trained, resolved from [`TrainOptions`] (the options shared with
/// classifiers: epochs, batch size, learning rate, seed) and the input side.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectPlan {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub input_size: usize,
    pub seed: u64,
}

impl DetectPlan {
    pub fn new(options: &TrainOptions, input_size: usize) -> Result<Self> {
        options.validate()?;
        super::model_file::check_input_size(input_size)
            .map_err(|reason| GraftError::option("inputSize", reason))?;
        if options.fine_tune_blocks > 0 {
            return Err(GraftError::option(
                "fineTuneBlocks",
                "a detector trains its head on the frozen backbone; fine-tuning it is not available yet",
            ));
        }
        Ok(Self {
            epochs: options.epochs.unwrap_or(DEFAULT_EPOCHS),
            batch_size: options.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
            learning_rate: options.learning_rate.unwrap_or(DEFAULT_LEARNING_RATE),
            input_size,
            seed: options.seed,
        })
    }
}

/// One image's maps (each variant: as is, mirrored) and its boxes in input pixels.
struct CachedImage {
    variants: Vec<[Vec<f16>; LEVELS]>,
    boxes: Vec<InputBox>,
}

/// The frozen backbone's maps of a set of images, in half precision.
pub struct FeatureCache {
    side: usize,
    mirror: bool,
    images: Vec<CachedImage>,
}

impl FeatureCache {
    /// An empty cache for inputs of `side` pixels; `mirror` also keeps each image mirrored
    /// (training's augmentation; validation keeps the images as they are).
    pub fn new(side: usize, mirror: bool) -> Self {
        Self {
            side,
            mirror,
            images: Vec::new(),
        }
    }

    /// Bytes one image takes.
    pub fn bytes_per_image(side: usize, mirror: bool) -> usize {
        let values: usize = LevelGrid::levels(side)
            .iter()
            .zip(PYRAMID_CHANNELS)
            .map(|(grid, channels)| grid.cell_count() * channels)
            .sum();
        values * size_of::<f16>() * if mirror { 2 } else { 1 }
    }

    /// Refuses `images` more images when they would take the cache past [`MAX_CACHE_BYTES`].
    pub fn check_room(&self, images: usize, what: &str) -> Result<()> {
        let per_image = Self::bytes_per_image(self.side, self.mirror);
        let total = (self.images.len() + images).saturating_mul(per_image);
        if total > MAX_CACHE_BYTES {
            return Err(GraftError::TooLarge {
                what: format!("{} images ({what})", self.images.len() + images),
                reason: format!(
                    "their backbone maps at {} px take {} MB each, {} MB in all; the limit is {} MB \
                     (use a smaller --input-size or fewer images)",
                    self.side,
                    per_image as f64 / 1e6,
                    total / 1_000_000,
                    MAX_CACHE_BYTES / 1_000_000
                ),
            });
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Runs the backbone on letterboxed inputs (`[3, side, side]` each, from
    /// [`super::letterbox::letterbox`]) and keeps their maps with their boxes: all of them, or
    /// none when the device fails.
    pub async fn add(
        &mut self,
        backbone: &EfficientNetLite0,
        inputs: Vec<(Vec<f32>, Vec<InputBox>)>,
        device: &Device,
    ) -> Result<()> {
        self.check_room(inputs.len(), "to train on")?;
        let side = self.side;
        let mut added = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(CACHE_BATCH) {
            let mut pixels: Vec<f32> = Vec::new();
            for (input, _) in chunk {
                pixels.extend_from_slice(input);
                if self.mirror {
                    pixels.extend(mirrored(input, side));
                }
            }
            let variants = if self.mirror { 2 } else { 1 };
            let count = chunk.len() * variants;
            let batch =
                Tensor::<4>::from_data(TensorData::new(pixels, [count, 3, side, side]), device);
            let mut per_level: Vec<Vec<f32>> = Vec::with_capacity(LEVELS);
            for map in backbone.pyramid(batch) {
                per_level.push(
                    map.into_data_async()
                        .await?
                        .convert::<f32>()
                        .try_into_vec::<f32>()?,
                );
            }
            let mut levels: Vec<_> = per_level
                .iter()
                .map(|values| values.chunks_exact(values.len() / count))
                .collect();
            for (_, boxes) in chunk {
                let variants = (0..variants)
                    .map(|_| {
                        std::array::from_fn(|level| {
                            let values = levels[level].next().expect("one map per input");
                            values.iter().map(|&v| f16::from_f32(v)).collect()
                        })
                    })
                    .collect();
                added.push(CachedImage {
                    variants,
                    boxes: boxes.clone(),
                });
            }
        }
        self.images.extend(added);
        Ok(())
    }

    /// The maps of `(image, variant)` pairs as one batch per level, on `device`.
    fn batch(&self, picks: &[(usize, usize)], device: &Device) -> [Tensor<4>; LEVELS] {
        let grids = LevelGrid::levels(self.side);
        std::array::from_fn(|level| {
            let values: Vec<f32> = picks
                .iter()
                .flat_map(|&(image, variant)| {
                    self.images[image].variants[variant][level]
                        .iter()
                        .map(|v| v.to_f32())
                })
                .collect();
            let cells = grids[level].cells;
            Tensor::from_data(
                TensorData::new(values, [picks.len(), PYRAMID_CHANNELS[level], cells, cells]),
                device,
            )
        })
    }

    /// The class of every box of every image.
    pub fn classes(&self) -> impl Iterator<Item = usize> + '_ {
        self.images
            .iter()
            .flat_map(|i| i.boxes.iter().map(|b| b.class))
    }

    /// An image's boxes in a variant (mirrored for variant 1).
    fn boxes(&self, image: usize, variant: usize) -> Vec<InputBox> {
        let boxes = &self.images[image].boxes;
        if variant == 0 {
            return boxes.clone();
        }
        boxes
            .iter()
            .map(|b| InputBox {
                class: b.class,
                bbox: mirrored_box(&b.bbox, self.side),
            })
            .collect()
    }
}

/// Scores a head on cached (validation) maps: COCO-style mAP, boxes compared in input pixels.
pub async fn evaluate_cached(
    head: &DetectionHead,
    cache: &FeatureCache,
    labels: &[String],
    device: &Device,
) -> Result<DetectionReport> {
    let mut scoring = Scoring::default();
    let indices: Vec<usize> = (0..cache.len()).collect();
    for chunk in indices.chunks(CACHE_BATCH) {
        let picks: Vec<(usize, usize)> = chunk.iter().map(|&i| (i, 0)).collect();
        let outputs = head.forward(cache.batch(&picks, device));
        let found =
            read_detections(outputs, labels.len(), cache.side, EVALUATION_MIN_SCORE).await?;
        for (&image, detections) in chunk.iter().zip(found) {
            let truth = cache.images[image]
                .boxes
                .iter()
                .map(|b| LabelledBox {
                    class: b.class,
                    bbox: b.bbox,
                })
                .collect();
            scoring.add_in_pixels(truth, detections);
        }
    }
    scoring.report(labels)
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectEpoch {
    pub epoch: usize,
    /// Mean training loss, and its parts.
    pub loss: f64,
    pub class_loss: f64,
    pub box_loss: f64,
    pub centredness_loss: f64,
    #[serde(rename = "valMAP50")]
    pub val_map50: Option<f64>,
    #[serde(rename = "valMAP50_95")]
    pub val_map50_95: Option<f64>,
    pub seconds: f64,
}

/// What training reports as it goes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum DetectEvent<'a> {
    Step {
        epoch: usize,
        step: usize,
        #[serde(rename = "totalSteps")]
        total_steps: usize,
    },
    Epoch(&'a DetectEpoch),
}

/// Receives [`DetectEvent`]s; stopping keeps the head as it is after the current step.
#[allow(async_fn_in_trait)] // driven in one task; never sent between threads
pub trait DetectObserver {
    fn on_event(&mut self, event: DetectEvent<'_>);
    fn should_stop(&mut self) -> bool {
        false
    }
    /// Awaited after every step: the browser gives its event loop a turn (a cancel arrives).
    async fn pause(&mut self) {}
}

/// A trained head and its history.
pub struct TrainedDetector {
    pub head: DetectionHead,
    pub history: Vec<DetectEpoch>,
    /// Whether the observer stopped training early.
    pub stopped: bool,
    /// Optimisation steps taken.
    pub steps: usize,
}

/// The learning rate's multiplier at `step` of `total`: a linear warm-up over the first tenth,
/// then a cosine decay to a twentieth.
fn schedule(step: usize, total: usize) -> f64 {
    let warm_up = (total / 10).max(1);
    if step < warm_up {
        return (step + 1) as f64 / warm_up as f64;
    }
    let progress = (step - warm_up) as f64 / (total - warm_up).max(1) as f64;
    0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Trains a new head on `train`'s maps, scoring it on `validation` after every epoch.
pub async fn train_detector(
    train: &FeatureCache,
    validation: Option<&FeatureCache>,
    labels: &[String],
    plan: &DetectPlan,
    device: &Device,
    observer: &mut impl DetectObserver,
) -> Result<TrainedDetector> {
    if train.is_empty() {
        return Err(GraftError::option("data", "there are no training images"));
    }
    let autodiff = device.clone().autodiff();
    let mut head = HeadConfig::new(labels.len()).init(&autodiff, plan.seed);
    let mut optimizer = AdamConfig::new().init();
    let batches_per_epoch = train.len().div_ceil(plan.batch_size);
    let total_steps = batches_per_epoch * plan.epochs;
    let variants = if train.mirror { 2 } else { 1 };
    let grids = LevelGrid::levels(train.side);
    let mut history = Vec::new();
    let mut stopped = false;
    let mut step = 0;
    'epochs: for epoch in 1..=plan.epochs {
        let started = web_time::Instant::now();
        let mut rng = SeededRng::new(plan.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9));
        let mut order: Vec<usize> = (0..train.len()).collect();
        rng.shuffle(&mut order);
        let mut sums: Option<[Tensor<1>; 3]> = None;
        for batch in order.chunks(plan.batch_size) {
            if observer.should_stop() {
                stopped = true;
                break 'epochs;
            }
            let picks: Vec<(usize, usize)> =
                batch.iter().map(|&i| (i, rng.below(variants))).collect();
            let image_targets: Vec<_> = picks
                .iter()
                .map(|&(image, variant)| {
                    targets(&train.boxes(image, variant), labels.len(), train.side)
                })
                .collect();
            let target_tensors: Vec<LevelTargetTensors> = (0..LEVELS)
                .map(|level| {
                    LevelTargetTensors::stack(
                        &image_targets,
                        level,
                        labels.len(),
                        grids[level].cells,
                        &autodiff,
                    )
                })
                .collect();
            let outputs = head.forward(train.batch(&picks, &autodiff));
            let loss = detection_loss(&outputs, &target_tensors);
            let parts = [
                loss.classes.clone(),
                loss.boxes.clone(),
                loss.centredness.clone(),
            ]
            .map(|part| part.detach().mul_scalar(picks.len() as f64));
            sums = Some(match sums {
                Some(s) => std::array::from_fn(|k| s[k].clone() + parts[k].clone()),
                None => parts,
            });
            let grads = GradientsParams::from_grads(loss.total().backward(), &head);
            head = optimizer.step(
                plan.learning_rate * schedule(step, total_steps),
                head,
                grads,
            );
            step += 1;
            observer.on_event(DetectEvent::Step {
                epoch,
                step,
                total_steps,
            });
            observer.pause().await;
        }
        let mut mean = [0.0; 3];
        for (k, sum) in sums.into_iter().flatten().enumerate() {
            let value = sum
                .into_data_async()
                .await?
                .convert::<f64>()
                .try_into_vec::<f64>()?;
            mean[k] = value[0] / train.len() as f64;
        }
        let report = match validation.filter(|v| !v.is_empty()) {
            Some(validation) => {
                Some(evaluate_cached(&head.valid(), validation, labels, device).await?)
            }
            None => None,
        };
        let epoch_report = DetectEpoch {
            epoch,
            loss: mean.iter().sum(),
            class_loss: mean[0],
            box_loss: mean[1],
            centredness_loss: mean[2],
            val_map50: report.as_ref().map(|r| r.map50),
            val_map50_95: report.as_ref().map(|r| r.map50_95),
            seconds: started.elapsed().as_secs_f64(),
        };
        observer.on_event(DetectEvent::Epoch(&epoch_report));
        history.push(epoch_report);
    }
    Ok(TrainedDetector {
        head: head.valid(),
        history,
        stopped,
        steps: step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_warms_up_then_decays_to_a_twentieth() {
        let total = 100;
        assert!(schedule(0, total) < 0.2);
        assert_eq!(schedule(9, total), 1.0);
        assert!((schedule(10, total) - 1.0).abs() < 1e-12);
        assert!(schedule(50, total) < schedule(20, total));
        assert!((schedule(100, total) - 0.05).abs() < 1e-9);
    }

    /// The cache's size is checked before anything is read, with the limit in the message.
    #[test]
    fn a_cache_past_its_limit_is_refused_with_the_numbers() {
        let cache = FeatureCache::new(DEFAULT_INPUT_SIZE, true);
        let per_image = FeatureCache::bytes_per_image(DEFAULT_INPUT_SIZE, true);
        assert_eq!(
            per_image,
            2 * 2 * (40 * 40 * 40 + 112 * 20 * 20 + 320 * 10 * 10)
        );
        cache
            .check_room(MAX_CACHE_BYTES / per_image, "fits")
            .unwrap();
        let error = cache
            .check_room(MAX_CACHE_BYTES / per_image + 1, "in the split")
            .unwrap_err();
        let message = error.to_string();
        assert_eq!(error.code(), "TOO_LARGE");
        assert!(
            message.contains("in the split") && message.contains("3221 MB"),
            "{message}"
        );
    }
}
