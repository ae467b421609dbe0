//! Running a trained detector: outputs read back without blocking and decoded on the CPU,
//! boxes mapped from the letterboxed input back to each image's own pixels. The CLI's
//! `predict` and `eval` and the browser's `detect` and `evaluate` all go through here.

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbaImage;

use super::boxes::{BoundingBox, Detection};
use super::dataset::LabelledBox;
use super::encoding::{LevelMaps, decode};
use super::head::{DetectionHead, LEVELS, LevelOutput};
use super::letterbox::letterbox;
use super::model_file::DetectorFile;
use super::train::CACHE_BATCH;
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
    for chunk in inputs.chunks(CACHE_BATCH) {
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

/// Each image's detections, in its own pixels; the backbone runs on a batch at a time.
pub async fn detect_images(
    model: &DetectorFile,
    images: &[RgbaImage],
    min_score: f32,
    backbone: &EfficientNetLite0,
    device: &Device,
) -> Result<Vec<Vec<Detection>>> {
    let side = model.info.input_size;
    let mut found = Vec::with_capacity(images.len());
    for chunk in images.chunks(CACHE_BATCH) {
        let (inputs, placements): (Vec<_>, Vec<_>) =
            chunk.iter().map(|image| letterbox(image, side)).unzip();
        let detections =
            detect_inputs(backbone, &model.head, &inputs, side, min_score, device).await?;
        for (detections, placement) in detections.into_iter().zip(placements) {
            found.push(
                detections
                    .into_iter()
                    .map(|d| Detection {
                        bbox: placement.to_image(&d.bbox),
                        ..d
                    })
                    .collect(),
            );
        }
    }
    Ok(found)
}

/// Boxes given in fractions of a `width x height` image, in its pixels: what detections are
/// compared with.
pub fn in_pixels(boxes: &[LabelledBox], width: u32, height: u32) -> Vec<LabelledBox> {
    let (w, h) = (width as f32, height as f32);
    boxes
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
        .collect()
}
