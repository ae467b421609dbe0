//! Image files to RGBA pixels, upright and bounded in size.
//!
//! Native only: the browser decodes with its own codecs and hands over RGBA pixels.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbaImage};

use super::gate::{HEADER_BYTES, check_image_header};
use crate::error::{GraftError, Result};

/// Largest accepted side in pixels. Larger images are almost always a mistake (a scan of a
/// poster, a corrupt header) and would need gigabytes to decode.
pub const MAX_SIDE: u32 = 20_000;
/// Upper bound on the decoder's memory for one image.
const MAX_DECODE_BYTES: u64 = 2 << 30;

/// Decodes an encoded image (JPEG, PNG or WebP), applies its EXIF orientation so phone photos
/// come out upright, and converts any colour type (grey, 16-bit, RGB) to 8-bit RGBA.
/// `name` is used in the error message only.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<RgbaImage> {
    let bad = |reason: String| GraftError::BadImage {
        path: name.to_string(),
        reason,
    };
    if bytes.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    check_image_header(&bytes[..bytes.len().min(HEADER_BYTES)], name)?;
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    if reader.format().is_none() {
        return Err(bad("not a JPEG, PNG or WebP image".into()));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);

    let mut decoder = reader.into_decoder().map_err(|e| bad(e.to_string()))?;
    let orientation = decoder.orientation().map_err(|e| bad(e.to_string()))?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| bad(e.to_string()))?;
    image.apply_orientation(orientation);
    if image.width() == 0 || image.height() == 0 {
        return Err(bad("the image has no pixels".into()));
    }
    Ok(match image {
        DynamicImage::ImageRgba8(rgba) => rgba,
        other => other.to_rgba8(),
    })
}

/// Reads and decodes an image file, naming the file in any error.
pub fn decode_file(path: &std::path::Path) -> Result<RgbaImage> {
    let bytes = std::fs::read(path).map_err(|e| GraftError::io(path, e))?;
    decode_image(&bytes, &path.display().to_string())
}
