//! Pixels to backbone input: the one preprocessing path shared by the CLI and the browser.
//!
//! The browser hands over RGBA pixels it decoded itself; the CLI decodes files into the same
//! RGBA buffer. From there both run this code, so a model predicts the same everywhere.

use burn::tensor::{Device, Tensor, TensorData};
use image::imageops::{self, FilterType};
use image::{RgbImage, RgbaImage};
use serde::{Deserialize, Serialize};

use crate::model::INPUT_SIZE;

/// How images are turned into backbone input; stored in every model file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// The short side is resized to this many pixels (aspect ratio kept)...
    pub resize_short_side: u32,
    /// ...then a centred square of this side is cropped.
    pub crop: u32,
    /// Each channel value `v` in 0..=255 becomes `(v - offset) / scale`.
    pub offset: f32,
    pub scale: f32,
}

/// EfficientNet-Lite0's preprocessing, checked against the stem BN's running statistics.
pub const EFFICIENTNET_LITE: Preprocessing = Preprocessing {
    resize_short_side: 256,
    crop: INPUT_SIZE as u32,
    offset: 127.0,
    scale: 128.0,
};

/// A rectangle in an image's own pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Region {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

/// Values per preprocessed image: 3 x 224 x 224.
pub const PIXELS_PER_IMAGE: usize = 3 * INPUT_SIZE * INPUT_SIZE;

impl Preprocessing {
    /// Resizes the short side, centre-crops and flattens transparency onto white.
    pub fn resize_and_crop(&self, rgba: &RgbaImage) -> RgbImage {
        let resized = self.resize_short_side(rgba);
        let crop = self.crop.min(resized.width()).min(resized.height());
        let left = (resized.width() - crop) / 2;
        let top = (resized.height() - crop) / 2;
        let cropped = imageops::crop_imm(&resized, left, top, crop, crop).to_image();
        let square = if crop == self.crop {
            cropped
        } else {
            // Only for images thinner than the crop after resizing (extreme aspect ratios).
            imageops::resize(&cropped, self.crop, self.crop, FilterType::Triangle)
        };
        flatten_onto_white(&square)
    }

    /// The rectangle of an image of `width x height` that [`Self::resize_and_crop`] keeps, in
    /// the image's own pixels: what the network sees, and what an explanation covers.
    pub fn crop_region(&self, width: u32, height: u32) -> Region {
        let (resized_width, resized_height) = self.resized_size(width, height);
        let crop = self.crop.min(resized_width).min(resized_height);
        let (scale_x, scale_y) = (
            width as f32 / resized_width as f32,
            height as f32 / resized_height as f32,
        );
        Region {
            x: ((resized_width - crop) / 2) as f32 * scale_x,
            y: ((resized_height - crop) / 2) as f32 * scale_y,
            width: crop as f32 * scale_x,
            height: crop as f32 * scale_y,
        }
    }

    /// The size [`Self::resize_short_side`] gives an image of `width x height`.
    fn resized_size(&self, width: u32, height: u32) -> (u32, u32) {
        let short = width.min(height).max(1) as u64;
        let target = self.resize_short_side as u64;
        let scaled = |side: u32| ((side as u64 * target + short / 2) / short).max(1) as u32;
        (scaled(width), scaled(height))
    }

    /// Resizes so the short side is `resize_short_side`, keeping the aspect ratio; the first
    /// step of both the plain path and augmentation.
    ///
    /// Large images are first reduced by integer area averaging (cheap, and never a float copy
    /// of the full image), then resampled with a bilinear filter to the exact size.
    pub fn resize_short_side(&self, rgba: &RgbaImage) -> RgbaImage {
        let (width, height) = rgba.dimensions();
        let target = self.resize_short_side;
        let reduced;
        let mut source = rgba;
        if width.min(height) > 2 * target {
            let twice = Preprocessing {
                resize_short_side: 2 * target,
                ..*self
            };
            let (w, h) = twice.resized_size(width, height);
            reduced = imageops::thumbnail(rgba, w, h);
            source = &reduced;
        }
        let (w, h) = self.resized_size(width, height);
        imageops::resize(source, w, h, FilterType::Triangle)
    }

    /// Channel-first normalised floats, `[3, crop, crop]` flattened.
    pub fn normalise(&self, rgb: &RgbImage) -> Vec<f32> {
        let plane = (rgb.width() * rgb.height()) as usize;
        let mut chw = vec![0.0f32; 3 * plane];
        for (i, pixel) in rgb.pixels().enumerate() {
            for channel in 0..3 {
                chw[channel * plane + i] = (pixel[channel] as f32 - self.offset) / self.scale;
            }
        }
        chw
    }

    /// The whole path: RGBA pixels of any size to backbone input.
    pub fn prepare(&self, rgba: &RgbaImage) -> Vec<f32> {
        self.normalise(&self.resize_and_crop(rgba))
    }
}

/// Composites RGBA over a white background (transparent PNGs are usually drawn on white).
pub(crate) fn flatten_onto_white(rgba: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let alpha = a as u32;
        let blend = |c: u8| ((c as u32 * alpha + 255 * (255 - alpha) + 127) / 255) as u8;
        image::Rgb([blend(r), blend(g), blend(b)])
    })
}

/// Stacks preprocessed images into one batch tensor `[n, 3, 224, 224]`.
pub fn batch_tensor(images: &[Vec<f32>], device: &Device) -> Tensor<4> {
    let mut flat = Vec::with_capacity(images.len() * PIXELS_PER_IMAGE);
    for image in images {
        debug_assert_eq!(image.len(), PIXELS_PER_IMAGE);
        flat.extend_from_slice(image);
    }
    let data = TensorData::new(flat, [images.len(), 3, INPUT_SIZE, INPUT_SIZE]);
    Tensor::from_data(data, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    #[test]
    fn any_aspect_ratio_becomes_a_224_square() {
        for (w, h) in [
            (640, 480),
            (480, 640),
            (224, 224),
            (100, 30),
            (3000, 2000),
            (1, 1),
        ] {
            let rgba = RgbaImage::from_pixel(w, h, Rgba([10, 20, 30, 255]));
            let rgb = EFFICIENTNET_LITE.resize_and_crop(&rgba);
            assert_eq!(rgb.dimensions(), (224, 224), "{w}x{h}");
        }
    }

    #[test]
    fn values_are_normalised_channel_first() {
        let rgba = RgbaImage::from_pixel(300, 300, Rgba([255, 127, 0, 255]));
        let chw = EFFICIENTNET_LITE.prepare(&rgba);
        assert_eq!(chw.len(), PIXELS_PER_IMAGE);
        let plane = 224 * 224;
        assert!(chw[..plane].iter().all(|&v| (v - 1.0).abs() < 1e-6)); // (255-127)/128
        assert!(chw[plane..2 * plane].iter().all(|&v| v.abs() < 1e-6));
        assert!(
            chw[2 * plane..]
                .iter()
                .all(|&v| (v + 127.0 / 128.0).abs() < 1e-6)
        );
        let (min, max) = chw
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(min >= -127.0 / 128.0 && max <= 1.0);
    }

    #[test]
    fn transparency_is_flattened_onto_white() {
        let rgba = RgbaImage::from_pixel(256, 256, Rgba([0, 0, 0, 0]));
        let rgb = EFFICIENTNET_LITE.resize_and_crop(&rgba);
        assert!(rgb.pixels().all(|p| p.0 == [255, 255, 255]));
    }

    #[test]
    fn crop_region_is_the_centre_square_in_the_images_own_pixels() {
        let region = EFFICIENTNET_LITE.crop_region(640, 480);
        // 640x480 -> 341x256, crop 224 at (58, 16) -> x 4/3 the resized pixels.
        let close = |a: f32, b: f32| (a - b).abs() < 1e-3;
        assert!(close(region.x, 58.0 * 640.0 / 341.0), "{region:?}");
        assert!(close(region.y, 16.0 * 480.0 / 256.0), "{region:?}");
        assert!(close(region.width, 224.0 * 640.0 / 341.0), "{region:?}");
        assert!(close(region.height, 224.0 * 480.0 / 256.0), "{region:?}");
        // Centred: margins on both sides of the long axis equal to one resized pixel (the odd
        // one goes right, as in the crop itself).
        assert!(
            (region.x * 2.0 + region.width - 640.0).abs() <= 640.0 / 341.0 + 1e-3,
            "{region:?}"
        );
        let square = EFFICIENTNET_LITE.crop_region(224, 224);
        assert!(
            close(square.x, 14.0) && close(square.width, 196.0),
            "{square:?}"
        );
    }

    #[test]
    fn centre_crop_keeps_the_middle() {
        // Left third red, middle third green, right third blue: the crop must be green in its
        // centre column and never see the outer thirds' far edges.
        let rgba = RgbaImage::from_fn(768, 256, |x, _| match x / 256 {
            0 => Rgba([255, 0, 0, 255]),
            1 => Rgba([0, 255, 0, 255]),
            _ => Rgba([0, 0, 255, 255]),
        });
        let rgb = EFFICIENTNET_LITE.resize_and_crop(&rgba);
        assert_eq!(rgb.get_pixel(112, 112).0, [0, 255, 0]);
        assert_eq!(rgb.get_pixel(0, 0).0, [0, 255, 0]);
    }
}
