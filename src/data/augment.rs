//! Training-time augmentation: the same pixels-to-tensor path as [`Preprocessing::prepare`], with
//! a random resized crop, a horizontal flip, a small rotation and brightness/contrast jitter.
//!
//! Pure Rust on RGBA pixels, so the CLI and the browser augment identically. Every random choice
//! comes from `(seed, epoch, example index)`, never from a shared generator, so a run repeats
//! exactly whatever order the driver loads images in.
//!
//! Crop, flip and rotation are one geometric warp: each output pixel is mapped back into the
//! resized image and sampled bilinearly, so the image is resampled once, not three times.
//!
//! Transcendental functions come from the `libm` crate, not the platform's maths library, so
//! the CLI and the browser augment bit for bit alike (glibc's `expf` and wasm's differ in the
//! last bit, and a fine-tuning run amplifies such differences).

use image::{RgbImage, RgbaImage};
use serde::{Deserialize, Serialize};

use super::preprocess::{Preprocessing, flatten_onto_white};
use super::split::SeededRng;

/// Smallest share of the resized image's area a random crop keeps. Higher than ImageNet's 0.08:
/// small datasets (and X-rays) lose their subject in tiny crops.
pub const MIN_CROP_AREA: f32 = 0.55;
/// Crop aspect ratios are drawn log-uniformly from `[1 / MAX_CROP_ASPECT, MAX_CROP_ASPECT]`.
pub const MAX_CROP_ASPECT: f32 = 4.0 / 3.0;
/// Largest rotation either way, in degrees.
pub const MAX_ROTATION_DEGREES: f32 = 10.0;
/// Brightness is scaled by a factor in `1 ± BRIGHTNESS_JITTER`.
pub const BRIGHTNESS_JITTER: f32 = 0.2;
/// Contrast around mid-grey is scaled by a factor in `1 ± CONTRAST_JITTER`.
pub const CONTRAST_JITTER: f32 = 0.2;
const MID_GREY: f32 = 127.5;

/// Which augmentations are on; the default is none. On the command line each is a flag
/// (`--flip`, `--crop`, ...), in JavaScript a `true` in `augment`.
///
/// Off by default because, measured, it did not pay: phase 1's head is solved on the plain
/// images, and fine-tuning on augmented ones spent its epochs on a harder task than the one it
/// is scored on (Fashion-MNIST, 4,800 training images: augmented fine-tuning never beat the
/// head alone; plain fine-tuning beat it on the test images, see `bench/README.md`). Plain
/// images also let the frozen prefix's output be cached, so epochs after the first are
/// several times faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::Args))]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Augmentation {
    /// Augment with horizontal flips (not where left and right matter, e.g. X-rays).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub flip: bool,
    /// Augment with random resized crops.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub crop: bool,
    /// Augment with small rotations.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub rotate: bool,
    /// Augment with brightness jitter.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub brightness: bool,
    /// Augment with contrast jitter.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub contrast: bool,
}

/// The random choices for one example in one epoch, in units independent of the image's size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentParams {
    pub flip: bool,
    /// Share of the resized image's area the crop keeps (1 = the centre crop's plain path).
    pub crop_area: Option<f32>,
    /// Natural log of the crop's width / height.
    pub crop_log_aspect: f32,
    /// Where the crop sits in the room left for it, 0..1 on each axis.
    pub crop_position: (f32, f32),
    pub rotation_degrees: f32,
    pub brightness: f32,
    pub contrast: f32,
}

impl AugmentParams {
    /// No change: applying it gives exactly [`Preprocessing::prepare`]'s output.
    pub const IDENTITY: Self = Self {
        flip: false,
        crop_area: None,
        crop_log_aspect: 0.0,
        crop_position: (0.5, 0.5),
        rotation_degrees: 0.0,
        brightness: 1.0,
        contrast: 1.0,
    };
}

/// A generator for one `(seed, epoch, stream)`, independent of every other's; an example's
/// stream is its index. `u64`, not `usize`: the same numbers on 32-bit wasm and 64-bit hosts.
pub fn example_rng(seed: u64, epoch: u64, stream: u64) -> SeededRng {
    let mut mixer = SeededRng::new(seed ^ 0x5EED_A0C3_17E5_0001);
    let a = mixer.next_u64();
    let b = SeededRng::new(a ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64();
    SeededRng::new(b ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

impl Augmentation {
    /// Every augmentation off (the default): training sees the plain preprocessed image.
    pub const NONE: Self = Self {
        flip: false,
        crop: false,
        rotate: false,
        brightness: false,
        contrast: false,
    };

    /// Every augmentation on.
    pub const ALL: Self = Self {
        flip: true,
        crop: true,
        rotate: true,
        brightness: true,
        contrast: true,
    };

    pub fn is_enabled(&self) -> bool {
        *self != Self::NONE
    }

    /// The random choices for example `index` in `epoch` (every value is drawn even when its
    /// augmentation is off, so turning one off does not change the others).
    pub fn sample(&self, seed: u64, epoch: usize, index: usize) -> AugmentParams {
        let mut rng = example_rng(seed, epoch as u64, index as u64);
        let mut uniform = |low: f32, high: f32| low + (high - low) * rng.unit();
        let flip = uniform(0.0, 1.0) < 0.5;
        let crop_area = uniform(MIN_CROP_AREA, 1.0);
        let crop_log_aspect = uniform(-libm::logf(MAX_CROP_ASPECT), libm::logf(MAX_CROP_ASPECT));
        let crop_position = (uniform(0.0, 1.0), uniform(0.0, 1.0));
        let rotation = uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES);
        let brightness = uniform(1.0 - BRIGHTNESS_JITTER, 1.0 + BRIGHTNESS_JITTER);
        let contrast = uniform(1.0 - CONTRAST_JITTER, 1.0 + CONTRAST_JITTER);
        AugmentParams {
            flip: self.flip && flip,
            crop_area: self.crop.then_some(crop_area),
            crop_log_aspect: if self.crop { crop_log_aspect } else { 0.0 },
            crop_position: if self.crop { crop_position } else { (0.5, 0.5) },
            rotation_degrees: if self.rotate { rotation } else { 0.0 },
            brightness: if self.brightness { brightness } else { 1.0 },
            contrast: if self.contrast { contrast } else { 1.0 },
        }
    }
}

/// A crop box in the resized image's pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CropBox {
    pub left: f32,
    pub top: f32,
    pub width: f32,
    pub height: f32,
}

/// Where `params`' crop lies in an image of `image_width x image_height` whose plain path
/// takes a centre square of `side`.
pub(crate) fn crop_box(
    params: &AugmentParams,
    image_width: f32,
    image_height: f32,
    side: f32,
) -> CropBox {
    let (width, height) = match params.crop_area {
        // The plain path's centre square (or the whole short side, if it is smaller).
        None => (side.min(image_width), side.min(image_height)),
        Some(area) => {
            let target = area * image_width * image_height;
            let aspect = libm::expf(params.crop_log_aspect);
            (
                (target * aspect).sqrt().min(image_width),
                (target / aspect).sqrt().min(image_height),
            )
        }
    };
    let room = |total: f32, used: f32, at: f32| match params.crop_area {
        // Integer offset, as the plain centre crop uses.
        None => ((total - used) / 2.0).floor(),
        Some(_) => (total - used) * at,
    };
    CropBox {
        left: room(image_width, width, params.crop_position.0),
        top: room(image_height, height, params.crop_position.1),
        width,
        height,
    }
}

/// Bilinear sample of `image` at `(x, y)` (pixel centres at integers), clamped to the edges.
pub(crate) fn sample_bilinear(image: &RgbImage, x: f32, y: f32) -> [f32; 3] {
    let max_x = (image.width() - 1) as f32;
    let max_y = (image.height() - 1) as f32;
    let x = x.clamp(0.0, max_x);
    let y = y.clamp(0.0, max_y);
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as u32, y0 as u32);
    let x1 = (x0 + 1).min(image.width() - 1);
    let y1 = (y0 + 1).min(image.height() - 1);
    let (p00, p10) = (image.get_pixel(x0, y0).0, image.get_pixel(x1, y0).0);
    let (p01, p11) = (image.get_pixel(x0, y1).0, image.get_pixel(x1, y1).0);
    let mut out = [0.0; 3];
    for c in 0..3 {
        let top = p00[c] as f32 * (1.0 - fx) + p10[c] as f32 * fx;
        let bottom = p01[c] as f32 * (1.0 - fx) + p11[c] as f32 * fx;
        out[c] = top * (1.0 - fy) + bottom * fy;
    }
    out
}

/// A channel value (0 to 255) with `params`' brightness and contrast applied.
pub(crate) fn jitter_colour(value: f32, params: &AugmentParams) -> f32 {
    ((value * params.brightness - MID_GREY) * params.contrast + MID_GREY).clamp(0.0, 255.0)
}

/// Augments and preprocesses one image: resize the short side, warp (crop, flip, rotation) to
/// the backbone's square input, jitter brightness and contrast, normalise. Channel-first floats,
/// `[3, crop, crop]` flattened, like [`Preprocessing::prepare`] (which it equals for
/// [`AugmentParams::IDENTITY`]).
pub fn augment_and_prepare(
    preprocessing: &Preprocessing,
    rgba: &RgbaImage,
    params: &AugmentParams,
) -> Vec<f32> {
    let resized = flatten_onto_white(&preprocessing.resize_short_side(rgba));
    let side = preprocessing.crop as usize;
    let crop = crop_box(
        params,
        resized.width() as f32,
        resized.height() as f32,
        side as f32,
    );
    let (sin, cos) = libm::sincosf(params.rotation_degrees.to_radians());
    let centre_x = crop.left + crop.width / 2.0;
    let centre_y = crop.top + crop.height / 2.0;
    let plane = side * side;
    let mut chw = vec![0.0f32; 3 * plane];
    for v in 0..side {
        for u in 0..side {
            let mut along_x = (u as f32 + 0.5) / side as f32;
            let along_y = (v as f32 + 0.5) / side as f32;
            if params.flip {
                along_x = 1.0 - along_x;
            }
            let dx = (along_x - 0.5) * crop.width;
            let dy = (along_y - 0.5) * crop.height;
            let x = centre_x + cos * dx - sin * dy - 0.5;
            let y = centre_y + sin * dx + cos * dy - 0.5;
            let rgb = sample_bilinear(&resized, x, y);
            for (c, value) in rgb.into_iter().enumerate() {
                let value = jitter_colour(value, params);
                chw[c * plane + v * side + u] =
                    (value - preprocessing.offset) / preprocessing.scale;
            }
        }
    }
    chw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::EFFICIENTNET_LITE;
    use crate::data::preprocess::PIXELS_PER_IMAGE;
    use image::Rgba;

    fn gradient_image(width: u32, height: u32) -> RgbaImage {
        RgbaImage::from_fn(width, height, |x, y| {
            Rgba([(x * 255 / width) as u8, (y * 255 / height) as u8, 90, 255])
        })
    }

    #[test]
    fn identity_equals_the_plain_path() {
        for (w, h) in [(224, 224), (300, 260), (256, 400)] {
            let image = gradient_image(w, h);
            let plain = EFFICIENTNET_LITE.prepare(&image);
            let augmented =
                augment_and_prepare(&EFFICIENTNET_LITE, &image, &AugmentParams::IDENTITY);
            let worst = plain
                .iter()
                .zip(&augmented)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{w}x{h}: {worst}");
        }
    }

    #[test]
    fn augmentation_is_deterministic_and_shape_preserving() {
        let image = gradient_image(320, 240);
        let augment = Augmentation::ALL;
        let a = augment_and_prepare(&EFFICIENTNET_LITE, &image, &augment.sample(7, 1, 3));
        let b = augment_and_prepare(&EFFICIENTNET_LITE, &image, &augment.sample(7, 1, 3));
        assert_eq!(a.len(), PIXELS_PER_IMAGE);
        assert_eq!(a, b);
        let other_epoch = augment_and_prepare(&EFFICIENTNET_LITE, &image, &augment.sample(7, 2, 3));
        let other_seed = augment_and_prepare(&EFFICIENTNET_LITE, &image, &augment.sample(8, 1, 3));
        assert_ne!(a, other_epoch);
        assert_ne!(a, other_seed);
        let (lo, hi) = (-127.0 / 128.0, 1.0);
        assert!(a.iter().all(|v| (lo..=hi).contains(v)));
    }

    #[test]
    fn flip_mirrors_left_and_right() {
        let image = gradient_image(224, 224);
        let flipped = AugmentParams {
            flip: true,
            ..AugmentParams::IDENTITY
        };
        let plain = augment_and_prepare(&EFFICIENTNET_LITE, &image, &AugmentParams::IDENTITY);
        let mirrored = augment_and_prepare(&EFFICIENTNET_LITE, &image, &flipped);
        for (u, v) in [(0, 0), (10, 50), (223, 100)] {
            assert_eq!(plain[v * 224 + u], mirrored[v * 224 + 223 - u]);
        }
    }

    #[test]
    fn switches_turn_each_augmentation_on_and_off() {
        assert_eq!(Augmentation::default(), Augmentation::NONE);
        assert_eq!(Augmentation::NONE.sample(1, 1, 1), AugmentParams::IDENTITY);
        let no_flip = Augmentation {
            flip: false,
            ..Augmentation::ALL
        };
        assert!((0..50).all(|i| !no_flip.sample(1, 1, i).flip));
        assert!((0..50).any(|i| no_flip.sample(1, 1, i).crop_area.is_some()));
        let only_flip = Augmentation {
            flip: true,
            ..Augmentation::NONE
        };
        assert!((0..50).any(|i| only_flip.sample(1, 1, i).flip));
        assert!((0..50).all(|i| only_flip.sample(1, 1, i).crop_area.is_none()));
    }
}
