//! The CLI's side of detection: the images of a YOLO-layout split decoded and kept
//! letterboxed in a [`DetectionSet`]. Native only: the browser hands over decoded pixels.

use super::dataset::LabelledImage;
use super::train::DetectionSet;
use crate::data::decode::decode_file;
use crate::error::Result;

/// Every image of a split with its boxes, named by its path; `progress(done, total)` after
/// each. The caller checks the sets' size ([`DetectionSet::check_room`]) before any is read.
pub fn read_split(
    images: &[LabelledImage],
    side: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<DetectionSet> {
    let mut set = DetectionSet::new(side);
    for (done, image) in images.iter().enumerate() {
        let decoded = decode_file(&image.image)?;
        set.add(image.image.display().to_string(), &decoded, &image.boxes);
        progress(done + 1, images.len());
    }
    Ok(set)
}
