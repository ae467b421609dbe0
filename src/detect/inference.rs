//! Running a trained detector: outputs read back without blocking and decoded on the CPU,
//! boxes mapped from the letterboxed input back to each image's own pixels. The CLI's
//! `predict` and `eval` and the browser's `detect` and `evaluate` all go through here.

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbaImage;

use serde::Serialize;

use super::boxes::{BoundingBox, Detection};
use super::dataset::LabelledBox;
use super::encoding::{LevelMaps, decode};
use super::head::{DetectionHead, LEVELS, LevelOutput};
use super::letterbox::letterbox;
use super::metrics::{DetectionReport, ImageDetections, evaluate};
use super::model_file::DetectorFile;
use super::train::INFERENCE_BATCH;
use crate::error::Result;
use crate::model::EfficientNetLite0;

/// Reads the head's outputs back (asynchronously: WebGPU cannot block) and decodes each
/// image's detections, in input pixels.
pub async fn read_detections(
    outputs: [LevelOutput; LEVELS],
    classes: usize,
    side: usize,
    min_score: f32,
) -> Result<Vec<Vec<Detection>>> {
    let images = outputs[0].classes.dims()[0];
    let mut levels: Vec<[Vec<f32>; 3]> = Vec::with_capacity(LEVELS);
    for output in outputs {
        let mut read = Vec::with_capacity(3);
        for map in [output.classes, output.sides, output.centredness] {
            read.push(
                map.into_data_async()
                    .await?
                    .convert::<f32>()
                    .try_into_vec::<f32>()?,
            );
        }
        levels.push(read.try_into().expect("three maps"));
    }
    Ok((0..images)
        .map(|image| {
            let maps: [LevelMaps; LEVELS] = std::array::from_fn(|level| {
                let [classes_map, sides, centredness] = &levels[level];
                fn part(values: &[f32], image: usize, images: usize) -> &[f32] {
                    let per_image = values.len() / images;
                    &values[image * per_image..(image + 1) * per_image]
                }
                LevelMaps {
                    classes: part(classes_map, image, images),
                    sides: part(sides, image, images),
                    centredness: part(centredness, image, images),
                }
            });
            decode(&maps, classes, side, min_score)
        })
        .collect())
}

/// Detections for letterboxed inputs, in input pixels.
pub async fn detect_inputs(
    backbone: &EfficientNetLite0,
    head: &DetectionHead,
    inputs: &[Vec<f32>],
    side: usize,
    min_score: f32,
    device: &Device,
) -> Result<Vec<Vec<Detection>>> {
    let classes = head.config().classes;
    let mut found = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(INFERENCE_BATCH) {
        let pixels: Vec<f32> = chunk.iter().flatten().copied().collect();
        let batch = Tensor::<4>::from_data(
            TensorData::new(pixels, [chunk.len(), 3, side, side]),
            device,
        );
        let outputs = head.forward(backbone.pyramid(batch));
        found.extend(read_detections(outputs, classes, side, min_score).await?);
    }
    Ok(found)
}

/// Each image's detections, in its own pixels (clipped to it); the backbone runs on a batch
/// at a time. `backbone` is the pretrained one: the model's fine-tuned blocks, if any, replace
/// its own.
pub async fn detect_images(
    model: &DetectorFile,
    images: &[RgbaImage],
    min_score: f32,
    backbone: &EfficientNetLite0,
    device: &Device,
) -> Result<Vec<Vec<Detection>>> {
    let backbone = model.backbone(backbone.clone());
    let side = model.info.input_size;
    let mut found = Vec::with_capacity(images.len());
    for chunk in images.chunks(INFERENCE_BATCH) {
        let (inputs, placements): (Vec<_>, Vec<_>) =
            chunk.iter().map(|image| letterbox(image, side)).unzip();
        let detections =
            detect_inputs(&backbone, &model.head, &inputs, side, min_score, device).await?;
        for (detections, placement) in detections.into_iter().zip(placements) {
            found.push(
                detections
                    .into_iter()
                    .map(|d| Detection {
                        bbox: placement.to_image(&d.bbox),
                        ..d
                    })
                    // A box that lay in the letterbox's border has nothing left of the image.
                    .filter(|d| d.bbox.area() > 0.0)
                    .collect(),
            );
        }
    }
    Ok(found)
}

/// A detection as the CLI's `--json` and the JavaScript API give it.
#[derive(Debug, Clone, Serialize)]
pub struct Found<'a> {
    pub label: &'a str,
    pub score: f32,
    /// `[x0, y0, x1, y1]` in the image's pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

impl<'a> Found<'a> {
    pub fn new(detection: &Detection, labels: &'a [String]) -> Self {
        let b = detection.bbox;
        Self {
            label: &labels[detection.class],
            score: detection.score,
            bbox: [b.x0, b.y0, b.x1, b.y1],
        }
    }
}

/// Detections and the truth, image by image, for [`evaluate`]: boxes compared in each image's
/// own pixels, what the user sees.
#[derive(Default)]
pub struct Scoring {
    truth: Vec<Vec<LabelledBox>>,
    detections: Vec<Vec<Detection>>,
}

impl Scoring {
    /// One image of `width x height`: its true boxes in fractions of it, its detections in its
    /// pixels.
    pub fn add(
        &mut self,
        truth: &[LabelledBox],
        width: u32,
        height: u32,
        detections: Vec<Detection>,
    ) {
        let (w, h) = (width as f32, height as f32);
        self.truth.push(
            truth
                .iter()
                .map(|b| LabelledBox {
                    class: b.class,
                    bbox: BoundingBox {
                        x0: b.bbox.x0 * w,
                        y0: b.bbox.y0 * h,
                        x1: b.bbox.x1 * w,
                        y1: b.bbox.y1 * h,
                    },
                })
                .collect(),
        );
        self.detections.push(detections);
    }

    /// One image whose true boxes are already in the detections' unit.
    pub fn add_in_pixels(&mut self, truth: Vec<LabelledBox>, detections: Vec<Detection>) {
        self.truth.push(truth);
        self.detections.push(detections);
    }

    /// COCO-style mAP and the rest (see [`evaluate`]).
    pub fn report(&self, labels: &[String]) -> Result<DetectionReport> {
        let images: Vec<ImageDetections> = self
            .truth
            .iter()
            .zip(&self.detections)
            .map(|(truth, detections)| ImageDetections { truth, detections })
            .collect();
        evaluate(labels, &images)
    }
}
