//! Training-time augmentation that keeps the boxes right: the classifier's random draws
//! ([`crate::data::augment`]: flip, crop, brightness, contrast, seeded by `(seed, epoch,
//! image)`) applied to a letterboxed image, its boxes moved with its pixels.
//!
//! The crop is a window on the letterboxed square, scaled back up to the whole input: objects
//! grow (scale jitter) and shift (translation jitter). A box the window cuts keeps its visible
//! part, or is dropped when less than [`MIN_VISIBLE_SHARE`] of it is left (a sliver would teach
//! the head to find objects in their edges).

use image::RgbImage;

use super::boxes::BoundingBox;
use super::encoding::InputBox;
use super::letterbox::normalised;
use crate::data::EFFICIENTNET_LITE;
use crate::data::augment::{crop_box, jitter_colour, sample_bilinear};
use crate::data::{AugmentParams, Augmentation};

/// A box cut by the crop is kept when at least this share of its area is still in view.
pub const MIN_VISIBLE_SHARE: f32 = 0.4;

/// Rotation would turn a box into one that no longer fits its object; a detector does not
/// rotate.
pub fn check_augmentation(augment: &Augmentation) -> Result<(), String> {
    match augment.rotate {
        true => Err("a detector does not rotate: a rotated box no longer fits its object".into()),
        false => Ok(()),
    }
}

/// The backbone's input (`[3, side, side]` normalised, flattened) from a letterboxed square
/// and its boxes in input pixels, augmented by `params`. [`AugmentParams::IDENTITY`] gives the
/// plain input and the same boxes.
pub fn augmented_input(
    square: &RgbImage,
    boxes: &[InputBox],
    params: &AugmentParams,
) -> (Vec<f32>, Vec<InputBox>) {
    if *params == AugmentParams::IDENTITY {
        return (normalised(square), boxes.to_vec());
    }
    let side = square.width() as usize;
    let extent = side as f32;
    let crop = crop_box(params, extent, extent, extent);
    let plane = side * side;
    let mut chw = vec![0.0f32; 3 * plane];
    for v in 0..side {
        for u in 0..side {
            let mut along_x = (u as f32 + 0.5) / extent;
            let along_y = (v as f32 + 0.5) / extent;
            if params.flip {
                along_x = 1.0 - along_x;
            }
            let x = crop.left + along_x * crop.width - 0.5;
            let y = crop.top + along_y * crop.height - 0.5;
            for (c, value) in sample_bilinear(square, x, y).into_iter().enumerate() {
                chw[c * plane + v * side + u] = (jitter_colour(value, params)
                    - EFFICIENTNET_LITE.offset)
                    / EFFICIENTNET_LITE.scale;
            }
        }
    }
    let to_input_x = |x: f32| {
        let along = (x - crop.left) / crop.width * extent;
        if params.flip { extent - along } else { along }
    };
    let to_input_y = |y: f32| (y - crop.top) / crop.height * extent;
    let moved = boxes
        .iter()
        .filter_map(|b| {
            let (xa, xb) = (to_input_x(b.bbox.x0), to_input_x(b.bbox.x1));
            let whole = BoundingBox {
                x0: xa.min(xb),
                y0: to_input_y(b.bbox.y0),
                x1: xa.max(xb),
                y1: to_input_y(b.bbox.y1),
            };
            let clip = |v: f32| v.clamp(0.0, extent);
            let visible = BoundingBox {
                x0: clip(whole.x0),
                y0: clip(whole.y0),
                x1: clip(whole.x1),
                y1: clip(whole.y1),
            };
            (visible.area() >= MIN_VISIBLE_SHARE * whole.area()).then_some(InputBox {
                class: b.class,
                bbox: visible,
            })
        })
        .collect();
    (chw, moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// A grey square with a red rectangle where `object` says.
    fn scene(side: u32, object: &BoundingBox) -> RgbImage {
        RgbImage::from_fn(side, side, |x, y| {
            let (x, y) = (x as f32 + 0.5, y as f32 + 0.5);
            let inside = x > object.x0 && x < object.x1 && y > object.y0 && y < object.y1;
            Rgb(if inside { [255, 0, 0] } else { [114, 114, 114] })
        })
    }

    fn red_channel_at(chw: &[f32], side: usize, x: usize, y: usize) -> f32 {
        chw[y * side + x]
    }

    const OBJECT: BoundingBox = BoundingBox {
        x0: 8.0,
        y0: 16.0,
        x1: 24.0,
        y1: 40.0,
    };

    #[test]
    fn identity_is_the_plain_input() {
        let square = scene(64, &OBJECT);
        let boxes = [InputBox {
            class: 2,
            bbox: OBJECT,
        }];
        let (input, moved) = augmented_input(&square, &boxes, &AugmentParams::IDENTITY);
        assert_eq!(input, normalised(&square));
        assert_eq!(moved, boxes);
    }

    /// Under every draw of flip, crop and colour, the moved box still frames the red pixels:
    /// red inside it (well within), grey outside (well without).
    #[test]
    fn boxes_follow_their_pixels_through_flips_and_crops() {
        let side = 64;
        let square = scene(side as u32, &OBJECT);
        let boxes = [InputBox {
            class: 0,
            bbox: OBJECT,
        }];
        let augment = Augmentation {
            rotate: false,
            ..Augmentation::ALL
        };
        let mut checked = 0;
        for index in 0..40 {
            let params = augment.sample(3, 1, index);
            let (input, moved) = augmented_input(&square, &boxes, &params);
            let Some(found) = moved.first() else { continue };
            let b = found.bbox;
            assert!(
                b.x0 >= 0.0 && b.x1 <= side as f32 && b.area() > 0.0,
                "{b:?}"
            );
            let grey = (jitter_colour(114.0, &params) - EFFICIENTNET_LITE.offset)
                / EFFICIENTNET_LITE.scale;
            let middle = (b.y0 + b.y1) / 2.0;
            let centre = red_channel_at(
                &input,
                side,
                ((b.x0 + b.x1) / 2.0) as usize,
                middle as usize,
            );
            assert!(
                centre - grey > 0.5,
                "draw {index}: the box's centre is not on the object ({params:?})"
            );
            for x in [b.x0 - 3.0, b.x1 + 3.0] {
                if (0.0..side as f32).contains(&x) {
                    let outside = red_channel_at(&input, side, x as usize, middle as usize);
                    assert!(
                        (outside - grey).abs() < 0.05,
                        "draw {index}: red outside the box"
                    );
                }
            }
            checked += 1;
        }
        assert!(checked > 30, "only {checked} draws kept the object");
    }

    #[test]
    fn a_flip_mirrors_the_box() {
        let square = scene(64, &OBJECT);
        let boxes = [InputBox {
            class: 1,
            bbox: OBJECT,
        }];
        let flip = AugmentParams {
            flip: true,
            ..AugmentParams::IDENTITY
        };
        let (input, moved) = augmented_input(&square, &boxes, &flip);
        assert_eq!(
            moved[0].bbox,
            BoundingBox {
                x0: 40.0,
                y0: 16.0,
                x1: 56.0,
                y1: 40.0
            }
        );
        assert_eq!(input[20 * 64 + 50], normalised(&square)[20 * 64 + 13]);
    }

    /// A crop that leaves a sliver of a box drops it; one that leaves most keeps the visible
    /// part.
    #[test]
    fn a_box_mostly_cropped_away_is_dropped() {
        let square = scene(64, &OBJECT);
        let boxes = [InputBox {
            class: 0,
            bbox: OBJECT,
        }];
        // The right half of the square, full height: x 32..64 scaled by 2 (crop area 0.5).
        let right_half = AugmentParams {
            crop_area: Some(0.5),
            crop_log_aspect: (0.5f32).ln(),
            crop_position: (1.0, 0.5),
            ..AugmentParams::IDENTITY
        };
        let (_, moved) = augmented_input(&square, &boxes, &right_half);
        assert!(moved.is_empty(), "{moved:?}");
        let left_half = AugmentParams {
            crop_position: (0.0, 0.5),
            ..right_half
        };
        let (_, moved) = augmented_input(&square, &boxes, &left_half);
        let b = moved[0].bbox;
        assert!(
            (b.x0 - 16.0).abs() < 1e-3 && (b.x1 - 48.0).abs() < 1e-3,
            "{b:?}"
        );
        assert!(
            (b.y0 - 16.0).abs() < 1e-3 && (b.y1 - 40.0).abs() < 1e-3,
            "{b:?}"
        );
    }

    #[test]
    fn rotation_is_refused() {
        assert!(check_augmentation(&Augmentation::ALL).is_err());
        assert!(
            check_augmentation(&Augmentation {
                rotate: false,
                ..Augmentation::ALL
            })
            .is_ok()
        );
    }
}
