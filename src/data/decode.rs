//! Image files to RGBA pixels, upright and bounded in size.
//!
//! Native only: the browser decodes with its own codecs and hands over RGBA pixels.

use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbaImage};

use super::gate::{
    HEADER_BYTES, ImageFormat, MAX_FILE_BYTES, check_image_file, image_format, jpeg_segments,
};
use crate::error::{GraftError, Result};

/// Largest accepted side in pixels. Larger images are almost always a mistake (a scan of a
/// poster, a corrupt header) and would need gigabytes to decode.
pub const MAX_SIDE: u32 = 20_000;
/// Upper bound on the decoder's memory for one image.
const MAX_DECODE_BYTES: u64 = 2 << 30;

/// Decodes an encoded image (see [`ImageFormat`]; a GIF's first frame), applies its EXIF
/// orientation so phone photos come out upright, and converts any colour type (grey, 16-bit,
/// RGB) to 8-bit RGBA. `name` is used in the error message only.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<RgbaImage> {
    let bad = |reason: String| GraftError::BadImage {
        path: name.to_string(),
        reason,
    };
    check_image_file(
        &bytes[..bytes.len().min(HEADER_BYTES)],
        bytes.len() as u64,
        name,
    )?;
    // The browser's decoders refuse a JPEG cut short; `image`'s would fill in grey.
    if image_format(bytes) == Some(ImageFormat::Jpeg) && !jpeg_is_complete(bytes) {
        return Err(bad(
            "the JPEG is cut short (no end-of-image marker after its data)".into(),
        ));
    }
    // The gate has named the format; the reader finds the same one.
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
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

/// Whether a JPEG's entropy-coded data ends: an end-of-image marker follows its first scan.
/// Inside that data 0xFF is always followed by 0x00 or a restart marker, so the first
/// `FF D9` after the scan header is the image's end (an EXIF thumbnail's, inside an earlier
/// segment, is skipped with that segment).
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some((_, _, data)) = jpeg_segments(bytes).find(|&(marker, _, _)| marker == 0xda) else {
        return false;
    };
    bytes[data.min(bytes.len())..]
        .windows(2)
        .any(|pair| pair == [0xff, 0xd9])
}

/// Reads an image file whole, after checking its size against the gate's byte limit (so a
/// 4 GB file named `.jpg` is refused, not read). Errors name the file.
pub fn read_image_file(path: &Path) -> Result<Vec<u8>> {
    let name = path.display().to_string();
    let mut file = std::fs::File::open(path).map_err(|e| GraftError::io(path, e))?;
    let length = file.metadata().map_err(|e| GraftError::io(path, e))?.len();
    let mut header = vec![0; HEADER_BYTES.min(length as usize)];
    file.read_exact(&mut header)
        .map_err(|e| GraftError::io(path, e))?;
    check_image_file(&header, length, &name)?;
    // Bounded: a file that grew since its size was read is refused, not read without end.
    let mut bytes = header;
    file.take(MAX_FILE_BYTES + 1 - bytes.len() as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| GraftError::io(path, e))?;
    check_image_file(
        &bytes[..bytes.len().min(HEADER_BYTES)],
        bytes.len() as u64,
        &name,
    )?;
    Ok(bytes)
}

/// Reads and decodes an image file, naming the file in any error.
pub fn decode_file(path: &Path) -> Result<RgbaImage> {
    decode_image(&read_image_file(path)?, &path.display().to_string())
}
