//! The CLI's side of detection: images of a YOLO-layout split decoded, letterboxed and run
//! through the backbone into a [`FeatureCache`], a batch at a time. Native only: the browser
//! hands over decoded pixels.

use burn::tensor::Device;
use futures_lite::future::block_on;

use super::dataset::LabelledImage;
use super::encoding::InputBox;
use super::inference::letterboxed_example;
use super::train::FeatureCache;
use crate::data::decode::decode_file;
use crate::error::Result;
use crate::model::EfficientNetLite0;

/// Images decoded before each backbone pass.
const BATCH: usize = 16;

/// An image file as the detector's input, with its boxes in input pixels.
pub fn load_input(image: &LabelledImage, side: usize) -> Result<(Vec<f32>, Vec<InputBox>)> {
    Ok(letterboxed_example(
        &decode_file(&image.image)?,
        &image.boxes,
        side,
    ))
}

/// The backbone's maps of every image of a split; `progress(done, total)` after each batch.
/// The cache's size is checked before the first image is read.
pub fn cache_split(
    backbone: &EfficientNetLite0,
    images: &[LabelledImage],
    side: usize,
    mirror: bool,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> Result<FeatureCache> {
    let mut cache = FeatureCache::new(side, mirror);
    cache.check_room(images.len(), "in the split")?;
    for (done, chunk) in images.chunks(BATCH).enumerate() {
        let inputs = chunk
            .iter()
            .map(|image| load_input(image, side))
            .collect::<Result<Vec<_>>>()?;
        block_on(cache.add(backbone, inputs, device))?;
        progress((done * BATCH + chunk.len()).min(images.len()), images.len());
    }
    Ok(cache)
}
