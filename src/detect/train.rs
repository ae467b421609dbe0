//! Training a detector. Images are kept letterboxed in 8 bits ([`DetectionSet`]); each step
//! augments its batch ([`super::augment`]), runs the frozen backbone on it without gradients
//! and trains the head on the three maps. With `fineTuneBlocks` K, the backbone's last K
//! blocks ([`PyramidTail`]) train with the head from the first step, at a fraction of its
//! learning rate, as YOLO trainers leave the first layers frozen and train the rest. Memory
//! during training is what one batch takes, whatever the number of images. One recipe for the
//! CLI and the browser: the callers decode the images and hand them over.

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use image::{RgbImage, RgbaImage};
use serde::Serialize;

use super::augment::{augmented_input, check_augmentation};
use super::dataset::LabelledBox;
use super::encoding::{InputBox, LevelGrid, targets};
use super::head::{DetectionHead, HeadConfig, LEVELS};
use super::inference::{Scoring, detect_inputs};
use super::letterbox::{letterbox_rgb, normalised};
use super::loss::{LevelTargetTensors, detection_loss};
use super::metrics::DetectionReport;
use crate::data::split::SeededRng;
use crate::data::{AugmentParams, Augmentation};
use crate::error::{GraftError, Result};
use crate::model::efficientnet_lite::{PYRAMID_TAPS, run_tapping};
use crate::model::{EfficientNetLite0, PyramidTail};
use crate::train::TrainOptions;

/// The input side when none is asked for: laptop-friendly, and objects of a tenth of the
/// image are still 32 pixels.
pub const DEFAULT_INPUT_SIZE: usize = 320;
pub const DEFAULT_EPOCHS: usize = 20;
pub const DEFAULT_BATCH_SIZE: usize = 8;
/// A fresh head with group normalisation takes a high rate: on the generated set
/// (tests/detection.rs, then trained on cached maps), 5 epochs reached mAP50 0.75 at 1e-3
/// without the normalisation, 0.90 at 3e-3 with it.
pub const DEFAULT_LEARNING_RATE: f64 = 3e-3;
/// Every augmentation a detector takes (`--augment`): all but rotation.
pub const EVERY_AUGMENTATION: Augmentation = Augmentation {
    rotate: false,
    ..Augmentation::ALL
};
/// The lowest score kept when measuring mAP (COCO evaluations keep nearly everything and let
/// the precision-recall curve rank).
pub const EVALUATION_MIN_SCORE: f32 = 0.01;
/// The kept images may take at most this much memory; more are refused before any is read,
/// with this limit in the message.
pub const MAX_SET_BYTES: usize = 2 << 30;
/// Images per backbone pass when nothing is trained (validation, detection).
pub(crate) const INFERENCE_BATCH: usize = 8;

/// How a detector is trained, resolved from [`TrainOptions`] (the options shared with
/// classifiers: epochs, batch size, learning rate, seed, augmentation) and the input side.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectPlan {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub input_size: usize,
    pub seed: u64,
    pub augment: Augmentation,
    /// The backbone's last blocks trained with the head (0: the backbone stays frozen).
    pub fine_tune_blocks: usize,
    /// Their learning rate is the head's times this.
    pub backbone_lr_factor: f64,
    /// Whether their BatchNorm statistics are updated (frozen by default).
    pub train_batch_norm: bool,
}

impl DetectPlan {
    pub fn new(options: &TrainOptions, input_size: usize) -> Result<Self> {
        options.validate()?;
        super::model_file::check_input_size(input_size)
            .map_err(|reason| GraftError::option("inputSize", reason))?;
        check_augmentation(&options.augment)
            .map_err(|reason| GraftError::option("rotate", reason))?;
        if options.augment_variants.is_some() {
            return Err(GraftError::option(
                "augmentVariants",
                "a detector draws a fresh augmentation every epoch; fixed variants are for \
                 fine-tuning a classifier",
            ));
        }
        Ok(Self {
            epochs: options.epochs.unwrap_or(DEFAULT_EPOCHS),
            batch_size: options.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
            learning_rate: options.learning_rate.unwrap_or(DEFAULT_LEARNING_RATE),
            input_size,
            seed: options.seed,
            augment: options.augment,
            fine_tune_blocks: options.fine_tune_blocks,
            backbone_lr_factor: options.backbone_lr_factor,
            train_batch_norm: options.train_batch_norm,
        })
    }
}

/// One image as training keeps it: letterboxed into the input square in 8 bits, its boxes
/// in input pixels, and the name it was given (a file's path, the page's id).
struct KeptImage {
    name: String,
    square: RgbImage,
    boxes: Vec<InputBox>,
}

/// A set of images with their boxes, letterboxed to one input side.
pub struct DetectionSet {
    side: usize,
    images: Vec<KeptImage>,
}

impl DetectionSet {
    pub fn new(side: usize) -> Self {
        Self {
            side,
            images: Vec::new(),
        }
    }

    pub fn side(&self) -> usize {
        self.side
    }

    /// Bytes one image takes.
    pub fn bytes_per_image(side: usize) -> usize {
        side * side * 3
    }

    /// Refuses `total` images at `side` pixels when they would take more than
    /// [`MAX_SET_BYTES`]; `what` says which images in the message.
    pub fn check_room(side: usize, total: usize, what: &str) -> Result<()> {
        let per_image = Self::bytes_per_image(side);
        let bytes = total.saturating_mul(per_image);
        if bytes > MAX_SET_BYTES {
            return Err(GraftError::TooLarge {
                what: format!("{total} images ({what})"),
                reason: format!(
                    "letterboxed to {side} px they take {} MB each, {} MB in all; the limit is {} \
                     MB (use a smaller input size or fewer images)",
                    per_image as f64 / 1e6,
                    bytes / 1_000_000,
                    MAX_SET_BYTES / 1_000_000
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

    /// Adds an image with its boxes in fractions of it, under `name`.
    pub fn add(&mut self, name: String, image: &RgbaImage, boxes: &[LabelledBox]) {
        let (square, placement) = letterbox_rgb(image, self.side);
        let boxes = boxes
            .iter()
            .map(|b| InputBox {
                class: b.class,
                bbox: placement.to_input(&b.bbox),
            })
            .collect();
        self.images.push(KeptImage {
            name,
            square,
            boxes,
        });
    }

    /// Removes the images named in `names`; returns how many went.
    pub fn remove(&mut self, names: &[String]) -> usize {
        let before = self.images.len();
        self.images.retain(|image| !names.contains(&image.name));
        before - self.images.len()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.images.iter().any(|image| image.name == name)
    }

    /// The class of every box of every image.
    pub fn classes(&self) -> impl Iterator<Item = usize> + '_ {
        self.images
            .iter()
            .flat_map(|i| i.boxes.iter().map(|b| b.class))
    }

    /// Images `picks` as one batch on `device`, each augmented as `draw` gives it for its
    /// index; with their boxes as augmented.
    fn augmented_batch(
        &self,
        picks: &[usize],
        draw: impl Fn(usize) -> AugmentParams,
        device: &Device,
    ) -> (Tensor<4>, Vec<Vec<InputBox>>) {
        let side = self.side;
        let mut pixels = Vec::with_capacity(picks.len() * 3 * side * side);
        let mut boxes = Vec::with_capacity(picks.len());
        for &index in picks {
            let image = &self.images[index];
            let (input, moved) = augmented_input(&image.square, &image.boxes, &draw(index));
            pixels.extend(input);
            boxes.push(moved);
        }
        let batch = Tensor::from_data(
            TensorData::new(pixels, [picks.len(), 3, side, side]),
            device,
        );
        (batch, boxes)
    }
}

/// Scores a head on a set: COCO-style mAP, boxes compared in input pixels.
pub async fn evaluate_set(
    backbone: &EfficientNetLite0,
    head: &DetectionHead,
    set: &DetectionSet,
    labels: &[String],
    device: &Device,
) -> Result<DetectionReport> {
    let mut scoring = Scoring::default();
    for chunk in set.images.chunks(INFERENCE_BATCH) {
        let inputs: Vec<Vec<f32>> = chunk
            .iter()
            .map(|image| normalised(&image.square))
            .collect();
        let found = detect_inputs(
            backbone,
            head,
            &inputs,
            set.side,
            EVALUATION_MIN_SCORE,
            device,
        )
        .await?;
        for (image, detections) in chunk.iter().zip(found) {
            let truth = image
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

/// A trained head, the backbone blocks tuned with it, and its history.
pub struct TrainedDetector {
    pub head: DetectionHead,
    /// Present when `fineTuneBlocks` was not 0.
    pub tail: Option<PyramidTail>,
    pub history: Vec<DetectEpoch>,
    /// The detector's full report on the validation images (`None` without them).
    pub evaluation: Option<DetectionReport>,
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

/// The pyramid of a training step: the frozen blocks run on the plain device and their maps
/// enter the autodiff graph as constants (no gradient flows into them); the tuned blocks, if
/// any, run on it.
fn training_pyramid(
    backbone: &EfficientNetLite0,
    tail: Option<&PyramidTail>,
    inputs: Tensor<4>,
) -> [Tensor<4>; LEVELS] {
    let frozen = tail.map_or(PYRAMID_TAPS[LEVELS - 1], PyramidTail::first_block);
    let mut taps = Vec::with_capacity(LEVELS);
    let x = run_tapping(
        &backbone.blocks[..frozen],
        0,
        backbone.forward_prefix(inputs, 0),
        &mut taps,
    );
    let taps: Vec<Tensor<4>> = taps.into_iter().map(|map| map.autodiff()).collect();
    match tail {
        Some(tail) => tail.pyramid_from(x.autodiff(), taps),
        None => taps.try_into().expect("one map per tap"),
    }
}

/// The backbone a detector with `tail` (an inference copy) sees: the pretrained one with the
/// tail grafted on.
fn tuned_backbone(backbone: &EfficientNetLite0, tail: Option<PyramidTail>) -> EfficientNetLite0 {
    match tail {
        Some(tail) => tail.graft_onto(backbone.clone()),
        None => backbone.clone(),
    }
}

/// Trains a new head (and, with `fineTuneBlocks`, the backbone's last blocks) on `train`'s
/// images, scoring it on `validation` after every epoch.
pub async fn train_detector(
    backbone: &EfficientNetLite0,
    train: &DetectionSet,
    validation: Option<&DetectionSet>,
    labels: &[String],
    plan: &DetectPlan,
    device: &Device,
    observer: &mut impl DetectObserver,
) -> Result<TrainedDetector> {
    if train.is_empty() {
        return Err(GraftError::option("data", "there are no training images"));
    }
    let validation = validation.filter(|v| !v.is_empty());
    let autodiff = device.clone().autodiff();
    let mut head = HeadConfig::new(labels.len()).init(&autodiff, plan.seed);
    let mut optimizer = AdamConfig::new().init();
    let mut tail = match plan.fine_tune_blocks {
        0 => None,
        blocks => {
            let tail = PyramidTail::of(backbone, blocks)?.fork(&autodiff);
            // As the classifier's fine-tuning: `freeze` keeps BatchNorm's statistics, then
            // every weight (BatchNorm's scale and shift included) is made trainable again.
            Some(match plan.train_batch_norm {
                true => tail.train(),
                false => tail.freeze().set_require_grad(true).train(),
            })
        }
    };
    let mut tail_optimizer = AdamConfig::new().init();
    let batches_per_epoch = train.len().div_ceil(plan.batch_size);
    let total_steps = batches_per_epoch * plan.epochs;
    let grids = LevelGrid::levels(train.side);
    let mut history = Vec::new();
    let mut evaluation = None;
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
            let (inputs, boxes) = train.augmented_batch(
                batch,
                |index| plan.augment.sample(plan.seed, epoch, index),
                device,
            );
            let image_targets: Vec<_> = boxes
                .iter()
                .map(|boxes| targets(boxes, labels.len(), train.side))
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
            let outputs = head.forward(training_pyramid(backbone, tail.as_ref(), inputs));
            let loss = detection_loss(&outputs, &target_tensors);
            let parts = [
                loss.classes.clone(),
                loss.boxes.clone(),
                loss.centredness.clone(),
            ]
            .map(|part| part.detach().mul_scalar(batch.len() as f64));
            sums = Some(match sums {
                Some(s) => std::array::from_fn(|k| s[k].clone() + parts[k].clone()),
                None => parts,
            });
            let mut grads = loss.total().backward();
            let rate = plan.learning_rate * schedule(step, total_steps);
            if let Some(tuned) = tail.take() {
                let tail_grads = GradientsParams::from_module(&mut grads, &tuned);
                tail = Some(tail_optimizer.step(rate * plan.backbone_lr_factor, tuned, tail_grads));
            }
            let head_grads = GradientsParams::from_module(&mut grads, &head);
            head = optimizer.step(rate, head, head_grads);
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
        let report = match validation {
            Some(validation) => {
                let seen = tuned_backbone(backbone, tail.as_ref().map(Module::valid));
                Some(evaluate_set(&seen, &head.valid(), validation, labels, device).await?)
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
        evaluation = report;
    }
    let head = head.valid();
    let tail = tail.map(|tail| tail.valid());
    // Stopped within an epoch, the detector has moved on since its last scoring.
    if let Some(validation) = validation.filter(|_| stopped) {
        let seen = tuned_backbone(backbone, tail.clone());
        evaluation = Some(evaluate_set(&seen, &head, validation, labels, device).await?);
    }
    Ok(TrainedDetector {
        head,
        tail,
        history,
        evaluation,
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

    /// The set's size is checked before anything is read, with the limit in the message.
    #[test]
    fn a_set_past_its_limit_is_refused_with_the_numbers() {
        let per_image = DetectionSet::bytes_per_image(DEFAULT_INPUT_SIZE);
        assert_eq!(per_image, 320 * 320 * 3);
        DetectionSet::check_room(DEFAULT_INPUT_SIZE, MAX_SET_BYTES / per_image, "fits").unwrap();
        let error = DetectionSet::check_room(
            DEFAULT_INPUT_SIZE,
            MAX_SET_BYTES / per_image + 1,
            "in the split",
        )
        .unwrap_err();
        let message = error.to_string();
        assert_eq!(error.code(), "TOO_LARGE");
        assert!(
            message.contains("in the split") && message.contains("2147 MB"),
            "{message}"
        );
    }

    fn options(augment: Augmentation) -> TrainOptions {
        TrainOptions {
            augment,
            epochs: Some(1),
            batch_size: Some(2),
            ..TrainOptions::default()
        }
    }

    #[test]
    fn a_detector_augments_as_asked_and_never_rotates() {
        let plan = |augment| DetectPlan::new(&options(augment), DEFAULT_INPUT_SIZE);
        assert_eq!(
            plan(Augmentation::NONE).unwrap().augment,
            Augmentation::NONE
        );
        assert_eq!(
            plan(EVERY_AUGMENTATION).unwrap().augment,
            EVERY_AUGMENTATION
        );
        let message = plan(Augmentation::ALL).unwrap_err().to_string();
        assert!(message.contains("rotate"), "{message}");
    }

    struct Silent;
    impl DetectObserver for Silent {
        fn on_event(&mut self, _: DetectEvent<'_>) {}
    }

    /// Two images of one object each, at 128 px.
    fn two_images() -> DetectionSet {
        let mut set = DetectionSet::new(128);
        for (i, x0) in [0.1f32, 0.5].into_iter().enumerate() {
            let image = RgbaImage::from_fn(200, 150, |x, y| {
                image::Rgba([(x + 40 * i as u32) as u8, y as u8, 90, 255])
            });
            let bbox = crate::detect::boxes::BoundingBox {
                x0,
                y0: 0.2,
                x1: x0 + 0.3,
                y1: 0.6,
            };
            set.add(format!("{i}"), &image, &[LabelledBox { class: 0, bbox }]);
        }
        set
    }

    fn train(
        backbone: &EfficientNetLite0,
        set: &DetectionSet,
        plan: &DetectPlan,
    ) -> TrainedDetector {
        let labels = ["thing".to_string()];
        let device = Device::flex();
        let mut silent = Silent;
        let training = train_detector(backbone, set, None, &labels, plan, &device, &mut silent);
        futures_lite::future::block_on(training).unwrap()
    }

    /// The first step's loss under a plan: augmentation changes what the head sees, and the
    /// same plan gives the same numbers.
    #[test]
    fn training_sees_the_augmentation_it_is_given() {
        let backbone = EfficientNetLite0::new(&Device::flex());
        let set = two_images();
        let first_loss = |augment| {
            let plan = DetectPlan::new(&options(augment), set.side()).unwrap();
            train(&backbone, &set, &plan).history[0].loss
        };
        let plain = first_loss(Augmentation::NONE);
        assert_eq!(plain, first_loss(Augmentation::NONE));
        for augment in [
            Augmentation {
                crop: true,
                ..Augmentation::NONE
            },
            Augmentation {
                brightness: true,
                ..Augmentation::NONE
            },
        ] {
            let augmented = first_loss(augment);
            assert!(
                (augmented - plain).abs() > 1e-6,
                "{augment:?}: {augmented} = {plain}"
            );
        }
    }

    /// With `fineTuneBlocks`, the last blocks' weights move (their BatchNorm statistics stay
    /// frozen by default) and the head trains on what they now compute; without it, the
    /// backbone is untouched and no tail comes back.
    #[test]
    fn fine_tuning_trains_the_last_blocks() {
        let backbone = EfficientNetLite0::new(&Device::flex());
        let set = two_images();
        let plan = |fine_tune_blocks| {
            let options = TrainOptions {
                fine_tune_blocks,
                epochs: Some(2),
                ..options(Augmentation::NONE)
            };
            DetectPlan::new(&options, set.side()).unwrap()
        };
        let frozen = train(&backbone, &set, &plan(0));
        assert!(frozen.tail.is_none());
        let tuned = train(&backbone, &set, &plan(2));
        let tail = tuned.tail.expect("the tuned blocks");
        assert_eq!(tail.first_block(), 14);
        let values = |t: &Tensor<1>| t.clone().into_data().try_into_vec::<f32>().unwrap();
        for (trained, pretrained) in tail.blocks.iter().zip(&backbone.blocks[14..]) {
            let weights = |b: &crate::model::efficientnet_lite::MbConvBlock| {
                values(&b.project_conv.weight.val().flatten(0, 3))
            };
            assert_ne!(weights(trained), weights(pretrained));
            assert_eq!(
                values(&trained.bn2.running_mean.value()),
                values(&pretrained.bn2.running_mean.value())
            );
        }
        // The first epoch is one step, scored before any update: the same loss either way.
        assert_eq!(tuned.history[0].loss, frozen.history[0].loss);
        assert_ne!(tuned.history[1].loss, frozen.history[1].loss);
    }
}
