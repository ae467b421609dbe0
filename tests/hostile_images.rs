//! The image gate and the decoders behind it, fuzzed: small valid images of every accepted
//! format are mutated thousands of times (bytes flipped, cut short, sizes rewritten, junk
//! inserted). Every mutant is refused with an error naming it, or decodes within the gate's
//! limits to finite backbone input: 0 panics, 0 aborts.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use graft::data::decode::decode_image;
use graft::data::gate::{MAX_ASPECT_RATIO, MAX_PIXELS};
use graft::data::{EFFICIENTNET_LITE, SeededRng};
use image::{DynamicImage, ImageFormat, RgbaImage};

/// A 32x24 picture with structure in it, in `format`.
fn valid(format: ImageFormat) -> Vec<u8> {
    let rgba = RgbaImage::from_fn(32, 24, |x, y| {
        image::Rgba([(x * 8) as u8, (y * 10) as u8, ((x + y) * 4) as u8, 255])
    });
    let picture = match format {
        // JPEG and BMP have no alpha channel to write.
        ImageFormat::Jpeg | ImageFormat::Bmp => {
            DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(rgba).to_rgb8())
        }
        _ => DynamicImage::ImageRgba8(rgba),
    };
    let mut bytes = Vec::new();
    picture
        .write_to(&mut Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

fn mutant(valid: &[u8], rng: &mut SeededRng) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    let index = |rng: &mut SeededRng, len: usize| (rng.unit() * len as f32) as usize % len.max(1);
    for _ in 0..1 + (rng.unit() * 3.0) as usize {
        match (rng.unit() * 5.0) as usize {
            0 => {
                // Flip a few bytes, mostly in the header, where sizes and lengths live.
                let span = if rng.unit() < 0.7 {
                    bytes.len().min(64)
                } else {
                    bytes.len()
                };
                for _ in 0..1 + (rng.unit() * 4.0) as usize {
                    let at = index(rng, span);
                    bytes[at] ^= 1 << ((rng.unit() * 8.0) as u32 % 8);
                }
            }
            1 => {
                let keep = index(rng, bytes.len());
                bytes.truncate(keep.max(1));
            }
            2 => {
                // A big number somewhere in the header (a width, a height, a length).
                let at = index(rng, bytes.len().min(48));
                let value: [u8; 4] = match (rng.unit() * 3.0) as usize {
                    0 => u32::MAX.to_le_bytes(),
                    1 => 65535u32.to_be_bytes(),
                    _ => ((rng.unit() * 70_000.0) as u32).to_le_bytes(),
                };
                for (k, b) in value.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(at + k) {
                        *slot = *b;
                    }
                }
            }
            3 => {
                let at = index(rng, bytes.len());
                let junk: Vec<u8> = (0..1 + (rng.unit() * 64.0) as usize)
                    .map(|_| (rng.unit() * 256.0) as u8)
                    .collect();
                bytes.splice(at..at, junk);
            }
            _ => {
                // Repeat a slice (segments and chunks appearing twice).
                let from = index(rng, bytes.len());
                let to = (from + 1 + index(rng, 200)).min(bytes.len());
                let copy = bytes[from..to].to_vec();
                bytes.splice(from..from, copy);
            }
        }
    }
    bytes
}

#[test]
fn fuzzed_images_never_panic_and_never_pass_the_gate_oversized() {
    const INPUTS: usize = 20_000;
    let formats = [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::WebP,
        ImageFormat::Gif,
        ImageFormat::Bmp,
    ];
    let valid: Vec<Vec<u8>> = formats.iter().map(|&f| valid(f)).collect();
    for (bytes, format) in valid.iter().zip(&formats) {
        decode_image(bytes, "valid").unwrap_or_else(|e| panic!("{format:?}: {e}"));
    }
    let mut rng = SeededRng::new(2027);
    let (mut accepted, mut refused, mut panicked, mut unnamed, mut oversized) = (0, 0, 0, 0, 0);
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for i in 0..INPUTS {
        let bytes = mutant(&valid[i % valid.len()], &mut rng);
        match catch_unwind(AssertUnwindSafe(|| {
            decode_image(&bytes, "dropped.img").map(|rgba| {
                let input = EFFICIENTNET_LITE.prepare(&rgba);
                (rgba.dimensions(), input.iter().all(|v| v.is_finite()))
            })
        })) {
            Ok(Ok(((width, height), finite))) => {
                accepted += 1;
                let (long, short) = (width.max(height) as u64, width.min(height) as u64);
                oversized += usize::from(
                    !finite
                        || short == 0
                        || width as u64 * height as u64 > MAX_PIXELS
                        || long > MAX_ASPECT_RATIO as u64 * short,
                );
            }
            Ok(Err(error)) => {
                refused += 1;
                unnamed += usize::from(!error.to_string().starts_with("dropped.img: "));
            }
            Err(_) => panicked += 1,
        }
    }
    std::panic::set_hook(quiet);
    println!(
        "fuzzed images: {INPUTS} inputs, {accepted} decoded, {refused} refused with an error, {panicked} panics, {oversized} past the gate's limits or non-finite, {unnamed} errors not naming the file"
    );
    assert_eq!((panicked, oversized, unnamed), (0, 0, 0));
    assert!(
        refused > INPUTS / 4 && accepted > INPUTS / 20,
        "the mutations exercise both outcomes"
    );
}
