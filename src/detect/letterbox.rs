//! Letterboxing: an image of any shape scaled to fit a square input whole, the rest filled
//! with grey, so a detector sees every object with its proportions (a centre crop, as the
//! classifier uses, would cut objects at the edges off).

use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage, RgbaImage};

use super::boxes::BoundingBox;
use crate::data::EFFICIENTNET_LITE;
use crate::data::preprocess::flatten_onto_white;

/// The grey of the border (Ultralytics' 114), before normalisation.
const BORDER: u8 = 114;

/// Where an image of `width x height` lies in the square input of side `side`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub width: u32,
    pub height: u32,
    /// Input pixels per image pixel.
    pub scale: f32,
    /// The image's top-left corner in the input.
    pub left: u32,
    pub top: u32,
}

impl Letterbox {
    pub fn new(width: u32, height: u32, side: usize) -> Self {
        let scale = side as f32 / width.max(height).max(1) as f32;
        let (scaled_width, scaled_height) = Self::scaled(width, height, scale, side);
        Self {
            width,
            height,
            scale,
            left: (side as u32 - scaled_width) / 2,
            top: (side as u32 - scaled_height) / 2,
        }
    }

    fn scaled(width: u32, height: u32, scale: f32, side: usize) -> (u32, u32) {
        let fit = |v: u32| ((v as f32 * scale).round() as u32).clamp(1, side as u32);
        (fit(width), fit(height))
    }

    /// A box given as fractions of the image (a dataset's), in input pixels.
    pub fn to_input(&self, fractions: &BoundingBox) -> BoundingBox {
        let (w, h) = (
            self.width as f32 * self.scale,
            self.height as f32 * self.scale,
        );
        BoundingBox {
            x0: self.left as f32 + fractions.x0 * w,
            y0: self.top as f32 + fractions.y0 * h,
            x1: self.left as f32 + fractions.x1 * w,
            y1: self.top as f32 + fractions.y1 * h,
        }
    }

    /// A box in input pixels, in the image's own pixels, clipped to the image.
    pub fn to_image(&self, input: &BoundingBox) -> BoundingBox {
        let x = |v: f32| ((v - self.left as f32) / self.scale).clamp(0.0, self.width as f32);
        let y = |v: f32| ((v - self.top as f32) / self.scale).clamp(0.0, self.height as f32);
        BoundingBox {
            x0: x(input.x0),
            y0: y(input.y0),
            x1: x(input.x1),
            y1: y(input.y1),
        }
    }
}

/// The image letterboxed into a `side x side` square of 8-bit RGB, and where it lies in it:
/// how training keeps its images (a quarter of the floats' size).
pub fn letterbox_rgb(rgba: &RgbaImage, side: usize) -> (RgbImage, Letterbox) {
    let placement = Letterbox::new(rgba.width(), rgba.height(), side);
    let (w, h) = Letterbox::scaled(rgba.width(), rgba.height(), placement.scale, side);
    // Very large images are first reduced by area averaging: cheaper, and no aliasing.
    let reduced;
    let mut source = rgba;
    if rgba.width() > 2 * w && rgba.height() > 2 * h {
        reduced = imageops::thumbnail(rgba, 2 * w, 2 * h);
        source = &reduced;
    }
    let resized = flatten_onto_white(&imageops::resize(source, w, h, FilterType::Triangle));
    let mut square = RgbImage::from_pixel(side as u32, side as u32, Rgb([BORDER; 3]));
    imageops::replace(
        &mut square,
        &resized,
        placement.left.into(),
        placement.top.into(),
    );
    (square, placement)
}

/// An 8-bit RGB square as the backbone's input: `[3, side, side]` normalised, flattened.
pub fn normalised(rgb: &RgbImage) -> Vec<f32> {
    let plane = (rgb.width() * rgb.height()) as usize;
    let mut chw = vec![0.0; 3 * plane];
    for (at, pixel) in rgb.pixels().enumerate() {
        for channel in 0..3 {
            chw[channel * plane + at] =
                (pixel[channel] as f32 - EFFICIENTNET_LITE.offset) / EFFICIENTNET_LITE.scale;
        }
    }
    chw
}

/// The letterboxed image as the backbone's input, `[3, side, side]` normalised and flattened,
/// and where the image lies in it.
pub fn letterbox(rgba: &RgbaImage, side: usize) -> (Vec<f32>, Letterbox) {
    let (square, placement) = letterbox_rgb(rgba, side);
    (normalised(&square), placement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_image_is_centred_vertically_and_boxes_round_trip() {
        let placement = Letterbox::new(640, 320, 320);
        assert_eq!(
            (placement.left, placement.top, placement.scale),
            (0, 80, 0.5)
        );
        let fractions = BoundingBox {
            x0: 0.25,
            y0: 0.5,
            x1: 0.75,
            y1: 1.0,
        };
        let input = placement.to_input(&fractions);
        assert_eq!(
            input,
            BoundingBox {
                x0: 80.0,
                y0: 160.0,
                x1: 240.0,
                y1: 240.0
            }
        );
        let image = placement.to_image(&input);
        assert_eq!(
            (image.x0, image.y0, image.x1, image.y1),
            (160.0, 160.0, 480.0, 320.0)
        );
    }

    #[test]
    fn pixels_land_where_the_placement_says() {
        // A 4x2 image, red on the left half and blue on the right, into an 8x8 input.
        let image = RgbaImage::from_fn(4, 2, |x, _| {
            if x < 2 {
                image::Rgba([255, 0, 0, 255])
            } else {
                image::Rgba([0, 0, 255, 255])
            }
        });
        let (chw, placement) = letterbox(&image, 8);
        assert_eq!((placement.left, placement.top), (0, 2));
        let red = |x: usize, y: usize| chw[y * 8 + x];
        let border = (114.0 - 127.0) / 128.0;
        assert_eq!(red(0, 0), border, "above the image: border");
        assert!(red(0, 3) > 0.9, "the left half is red");
        assert!(red(7, 3) < -0.9, "the right half is not");
    }
}
