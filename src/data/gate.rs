//! The image gate: a file's size, format and pixel dimensions checked from its first bytes,
//! before anything reads the rest or any decoder allocates for it. The CLI and the browser
//! call the same code, so they accept the same images.

use crate::error::{GraftError, Result};

/// Largest image accepted, in pixels (a 50-megapixel photo needs 200 MB decoded).
pub const MAX_PIXELS: u64 = 50_000_000;

/// Largest ratio of an image's long side to its short side. Preprocessing resizes the short
/// side to 256 pixels, so a 20000x1 sliver would become 5,120,000x256 (5 GB; the browser's
/// engine died of it); at this limit the resized image stays under 26,000 pixels long.
pub const MAX_ASPECT_RATIO: u32 = 100;

/// Bytes of a file's start that hold every format's size.
pub const HEADER_BYTES: usize = 64 * 1024;

/// Largest image file accepted, in bytes: far above any photo or scan within [`MAX_PIXELS`]
/// (a 50-megapixel JPEG is 10-30 MB), and a bound on what is read before decoding starts.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// The formats the CLI and the browser both decode (GIFs by their first frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    WebP,
    Gif,
    Bmp,
}

/// The accepted formats, as error messages name them.
pub const ACCEPTED_FORMATS: &str = "JPEG, PNG, WebP, GIF or BMP";

/// The format a file's first bytes announce, if it is one of [`ImageFormat`].
pub fn image_format(header: &[u8]) -> Option<ImageFormat> {
    let b = header;
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if b.starts_with(b"\xff\xd8\xff") {
        Some(ImageFormat::Jpeg)
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some(ImageFormat::Gif)
    } else if b.starts_with(b"BM") {
        Some(ImageFormat::Bmp)
    } else if b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        Some(ImageFormat::WebP)
    } else {
        None
    }
}

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
    match image_format(b)? {
        ImageFormat::Png => Some((be32(b, 16)?, be32(b, 20)?)),
        ImageFormat::Gif => Some((le16(b, 6)?, le16(b, 8)?)),
        ImageFormat::Bmp => {
            // OS/2's 12-byte header stores 16-bit sizes; every later one 32-bit (signed:
            // a negative height is a top-down image).
            if u32::from_le_bytes(b.get(14..18)?.try_into().ok()?) == 12 {
                return Some((le16(b, 18)?, le16(b, 20)?));
            }
            let width = i32::from_le_bytes(b.get(18..22)?.try_into().ok()?);
            let height = i32::from_le_bytes(b.get(22..26)?.try_into().ok()?);
            Some((width.unsigned_abs(), height.unsigned_abs()))
        }
        ImageFormat::WebP => match b.get(12..16)? {
            b"VP8 " => Some((le16(b, 26)? & 0x3fff, le16(b, 28)? & 0x3fff)),
            b"VP8L" => {
                let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
                Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
            }
            b"VP8X" => Some((le24(b, 24)? + 1, le24(b, 27)? + 1)),
            _ => None,
        },
        ImageFormat::Jpeg => {
            let (_, frame, _) = jpeg_segments(b).find(|&(marker, _, _)| {
                (0xc0..=0xcf).contains(&marker) && ![0xc4, 0xc8, 0xcc].contains(&marker)
            })?;
            Some((be16(b, frame + 7)?, be16(b, frame + 5)?))
        }
    }
}

/// A JPEG's marker segments from the start: `(marker, offset of its 0xFF, offset after it)`,
/// up to and including the first start-of-scan (after which entropy-coded data follows), or
/// until the bytes run out. Like libjpeg, stray bytes between segments and markers without a
/// length (restart, TEM) are stepped over.
pub(crate) fn jpeg_segments(bytes: &[u8]) -> impl Iterator<Item = (u8, usize, usize)> + '_ {
    let mut at = 2; // after SOI
    let mut done = false;
    std::iter::from_fn(move || {
        while !done && at + 4 <= bytes.len() {
            if bytes[at] != 0xff {
                at += 1; // an extraneous byte
                continue;
            }
            let marker = bytes[at + 1];
            if marker == 0xff {
                at += 1; // fill byte
                continue;
            }
            if marker == 0x01 || (0xd0..=0xd7).contains(&marker) {
                at += 2;
                continue;
            }
            let start = at;
            at += 2 + be16(bytes, at + 2)? as usize;
            done = marker == 0xda;
            return Some((marker, start, at));
        }
        None
    })
}

/// Refuses, naming it, an image file of `file_bytes` bytes whose first bytes are `header`
/// (at least [`HEADER_BYTES`] of them, or the whole file): over [`MAX_FILE_BYTES`], not one of
/// the [`ImageFormat`]s, or declaring a size [`check_dimensions`] refuses. A JPEG whose frame
/// header lies beyond `header` is left to the decoder's limits.
pub fn check_image_file(header: &[u8], file_bytes: u64, name: &str) -> Result<()> {
    let bad = |reason: String| {
        Err(GraftError::BadImage {
            path: name.to_string(),
            reason,
        })
    };
    if file_bytes == 0 {
        return bad("the file is empty".into());
    }
    if file_bytes > MAX_FILE_BYTES {
        return bad(format!(
            "{} MB is more than the {} MB limit for an image file",
            file_bytes.div_ceil(1 << 20),
            MAX_FILE_BYTES >> 20
        ));
    }
    if image_format(header).is_none() {
        return bad(format!("not a {ACCEPTED_FORMATS} image"));
    }
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
        // Stray bytes and a restart marker before the frame header, which libjpeg steps over.
        let mut sloppy = b"\xff\xd8\xff\xe0\x00\x04ab\x00\x00\xff\xd0".to_vec();
        sloppy.extend(b"\xff\xc0\x00\x11\x08\x01\x2c\x01\x90");
        assert_eq!(image_size(&sloppy), Some((400, 300)));
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        webp.extend([0x7f, 0x02, 0x00, 0xdf, 0x01, 0x00]);
        assert_eq!(image_size(&webp), Some((640, 480)));
        let mut bmp = b"BM\0\0\0\0\0\0\0\0\0\0\0\0".to_vec();
        bmp.extend(40u32.to_le_bytes());
        bmp.extend(640i32.to_le_bytes());
        bmp.extend((-480i32).to_le_bytes());
        assert_eq!(image_size(&bmp), Some((640, 480)), "a top-down BMP");
        let mut os2 = b"BM\0\0\0\0\0\0\0\0\0\0\0\0".to_vec();
        os2.extend(12u32.to_le_bytes());
        os2.extend([0x80, 0x02, 0xe0, 0x01, 1, 0, 24, 0]);
        assert_eq!(image_size(&os2), Some((640, 480)), "an OS/2 BMP");
        assert_eq!(image_size(b"not an image"), None);
        assert_eq!(image_size(&png(640, 480)[..18]), None, "cut short");
    }

    fn check_image_header(header: &[u8], name: &str) -> Result<()> {
        check_image_file(header, 1000, name)
    }

    #[test]
    fn files_too_big_empty_or_of_another_format_are_refused_by_name() {
        let header = png(640, 480);
        check_image_file(&header, MAX_FILE_BYTES, "large.png").unwrap();
        let error = check_image_file(&header, 4 << 30, "movie.png")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("movie.png")
                && error.contains("4096 MB is more than the 256 MB limit for an image file"),
            "{error}"
        );
        let error = check_image_file(&header, 0, "empty.png")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("empty.png") && error.contains("the file is empty"),
            "{error}"
        );
        for other in [
            &b"<svg xmlns="[..],
            b"\0\0\0\x1cftypavif",
            b"\0\0\x01\0",
            b"plain text",
        ] {
            let error = check_image_header(other, "odd.png")
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("odd.png")
                    && error.contains("not a JPEG, PNG, WebP, GIF or BMP image"),
                "{error}"
            );
        }
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
