//! The image gate: an image's size read from its header, and refused before any decoder
//! allocates for it. The CLI and the browser call the same code, so they accept the same
//! images.

use crate::error::{GraftError, Result};

/// Largest image accepted, in pixels (a 50-megapixel photo needs 200 MB decoded).
pub const MAX_PIXELS: u64 = 50_000_000;

/// Largest ratio of an image's long side to its short side. Preprocessing resizes the short
/// side to 256 pixels, so a 20000x1 sliver would become 5,120,000x256 (5 GB; the browser's
/// engine died of it); at this limit the resized image stays under 26,000 pixels long.
pub const MAX_ASPECT_RATIO: u32 = 100;

/// Bytes of a file's start that hold every format's size.
pub const HEADER_BYTES: usize = 64 * 1024;

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?) as u32)
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as u32)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(s[0] as u32 | (s[1] as u32) << 8 | (s[2] as u32) << 16)
}

/// Width and height from a PNG, JPEG, WebP, GIF or BMP header (`None` for other formats, or
/// when the header is cut short).
pub fn image_size(header: &[u8]) -> Option<(u32, u32)> {
    let b = header;
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some((be32(b, 16)?, be32(b, 20)?));
    }
    if b.starts_with(b"GIF8") {
        return Some((le16(b, 6)?, le16(b, 8)?));
    }
    if b.starts_with(b"BM") {
        let width = i32::from_le_bytes(b.get(18..22)?.try_into().ok()?);
        let height = i32::from_le_bytes(b.get(22..26)?.try_into().ok()?);
        return Some((width.unsigned_abs(), height.unsigned_abs()));
    }
    if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        return match b.get(12..16)? {
            b"VP8 " => Some((le16(b, 26)? & 0x3fff, le16(b, 28)? & 0x3fff)),
            b"VP8L" => {
                let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
                Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
            }
            b"VP8X" => Some((le24(b, 24)? + 1, le24(b, 27)? + 1)),
            _ => None,
        };
    }
    if b.starts_with(b"\xff\xd8") {
        // Walk the JPEG segments to the first start-of-frame marker.
        let mut at = 2;
        while at + 4 <= b.len() {
            if b[at] != 0xff {
                return None;
            }
            let marker = b[at + 1];
            if marker == 0xff {
                at += 1;
                continue;
            }
            let is_frame = (0xc0..=0xcf).contains(&marker) && ![0xc4, 0xc8, 0xcc].contains(&marker);
            if is_frame {
                return Some((be16(b, at + 7)?, be16(b, at + 5)?));
            }
            at += 2 + be16(b, at + 2)? as usize;
        }
    }
    None
}

/// Refuses an image whose header declares more than [`MAX_PIXELS`], no pixels at all, or a
/// long side more than [`MAX_ASPECT_RATIO`] times its short side, naming it. Images whose size the header does not tell are left to the decoder's limits.
pub fn check_image_header(header: &[u8], name: &str) -> Result<()> {
    match image_size(header) {
        Some((width, height)) => check_dimensions(width, height, name),
        None => Ok(()),
    }
}

/// The same limits for pixels that arrive decoded (a canvas's `ImageData`).
pub fn check_dimensions(width: u32, height: u32, name: &str) -> Result<()> {
    let bad = |reason: String| {
        Err(GraftError::BadImage {
            path: name.to_string(),
            reason,
        })
    };
    if width == 0 || height == 0 {
        return bad(format!("{width}x{height}: the image has no pixels"));
    }
    if width as u64 * height as u64 > MAX_PIXELS {
        return bad(format!(
            "{width}x{height} pixels is more than the {}-megapixel limit; downscale it first",
            MAX_PIXELS / 1_000_000
        ));
    }
    let (long, short) = (width.max(height), width.min(height));
    if long as u64 > MAX_ASPECT_RATIO as u64 * short as u64 {
        return bad(format!(
            "{width}x{height}: one side is more than {MAX_ASPECT_RATIO} times the other; crop it \
             first"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend(width.to_be_bytes());
        b.extend(height.to_be_bytes());
        b.extend([8, 6, 0, 0, 0]);
        b
    }

    #[test]
    fn sizes_come_from_headers() {
        assert_eq!(image_size(&png(640, 480)), Some((640, 480)));
        let mut gif = b"GIF89a".to_vec();
        gif.extend([0x20, 0x03, 0x58, 0x02]);
        assert_eq!(image_size(&gif), Some((800, 600)));
        // A JPEG with an APP0 segment before its baseline frame header.
        let mut jpeg = b"\xff\xd8\xff\xe0\x00\x04ab".to_vec();
        jpeg.extend(b"\xff\xc0\x00\x11\x08\x01\x2c\x01\x90");
        assert_eq!(image_size(&jpeg), Some((400, 300)));
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        webp.extend([0x7f, 0x02, 0x00, 0xdf, 0x01, 0x00]);
        assert_eq!(image_size(&webp), Some((640, 480)));
        assert_eq!(image_size(b"not an image"), None);
        assert_eq!(image_size(&png(640, 480)[..18]), None, "cut short");
    }

    #[test]
    fn huge_and_empty_images_are_refused_by_name() {
        check_image_header(&png(8000, 6000), "big.png").unwrap();
        let error = check_image_header(&png(12000, 12000), "huge.png")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("huge.png")
                && error.contains("12000x12000 pixels is more than the 50-megapixel limit"),
            "{error}"
        );
        let error = check_image_header(&png(20000, 0), "flat.png")
            .unwrap_err()
            .to_string();
        assert!(error.contains("no pixels"), "{error}");
    }

    #[test]
    fn slivers_are_refused_and_panoramas_kept() {
        check_image_header(&png(10000, 100), "panorama.png").unwrap();
        check_image_header(&png(100, 10000), "tall.png").unwrap();
        for (width, height) in [(10001, 100), (1, 65535), (20000, 1)] {
            let error = check_image_header(&png(width, height), "sliver.png")
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("sliver.png")
                    && error.contains(&format!(
                        "{width}x{height}: one side is more than 100 times the other"
                    )),
                "{error}"
            );
        }
    }
}
