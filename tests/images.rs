//! Decoding and preprocessing real encoded files: colour types, EXIF orientation, bad input.

use std::io::Cursor;

use graft::data::EFFICIENTNET_LITE;
use graft::data::decode::decode_image;
use graft::data::preprocess::PIXELS_PER_IMAGE;
use image::{DynamicImage, GrayImage, ImageFormat, Luma, Rgb, RgbImage, Rgba, RgbaImage};

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

/// A 40x20 landscape picture: red left half, blue right half.
fn landscape() -> RgbImage {
    RgbImage::from_fn(40, 20, |x, _| {
        if x < 20 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    })
}

/// Inserts an EXIF APP1 segment carrying `orientation` right after the JPEG's SOI marker,
/// as a phone camera does.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes()); // first IFD offset
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]); // padding of the 4-byte value field
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_turns_phone_photos_upright() {
    let jpeg = encode(&DynamicImage::ImageRgb8(landscape()), ImageFormat::Jpeg);
    let plain = decode_image(&jpeg, "plain.jpg").unwrap();
    assert_eq!(plain.dimensions(), (40, 20));

    // Orientation 6: the stored image must be rotated 90 degrees clockwise to display.
    let rotated = decode_image(&with_exif_orientation(&jpeg, 6), "phone.jpg").unwrap();
    assert_eq!(rotated.dimensions(), (20, 40));
    // Red (the stored left half) ends up on top after a clockwise turn.
    let top = rotated.get_pixel(10, 5).0;
    let bottom = rotated.get_pixel(10, 35).0;
    assert!(top[0] > 200 && top[2] < 60, "top {top:?}");
    assert!(bottom[2] > 200 && bottom[0] < 60, "bottom {bottom:?}");
}

#[test]
fn grayscale_becomes_equal_rgb_channels() {
    let gray = DynamicImage::ImageLuma8(GrayImage::from_pixel(50, 30, Luma([200])));
    let rgba = decode_image(&encode(&gray, ImageFormat::Png), "gray.png").unwrap();
    assert!(rgba.pixels().all(|p| p.0 == [200, 200, 200, 255]));
    let chw = EFFICIENTNET_LITE.prepare(&rgba);
    assert_eq!(chw.len(), PIXELS_PER_IMAGE);
    let expected = (200.0 - 127.0) / 128.0;
    assert!(chw.iter().all(|&v| (v - expected).abs() < 1e-6));
}

#[test]
fn rgba_png_keeps_alpha_for_flattening() {
    let rgba = RgbaImage::from_pixel(30, 30, Rgba([0, 0, 0, 0]));
    let decoded = decode_image(
        &encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png),
        "t.png",
    )
    .unwrap();
    assert_eq!(decoded.get_pixel(0, 0).0, [0, 0, 0, 0]);
    let white = (255.0 - 127.0) / 128.0;
    assert!(
        EFFICIENTNET_LITE
            .prepare(&decoded)
            .iter()
            .all(|&v| (v - white).abs() < 1e-6)
    );
}

#[test]
fn webp_and_sixteen_bit_png_decode() {
    let webp = encode(
        &DynamicImage::ImageRgba8(RgbaImage::from_pixel(8, 8, Rgba([1, 2, 3, 255]))),
        ImageFormat::WebP,
    );
    assert_eq!(
        decode_image(&webp, "a.webp").unwrap().get_pixel(0, 0).0,
        [1, 2, 3, 255]
    );
    let deep =
        DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(4, 4, Rgb([65535u16, 0, 0])));
    assert_eq!(
        decode_image(&encode(&deep, ImageFormat::Png), "d.png")
            .unwrap()
            .get_pixel(0, 0)
            .0,
        [255, 0, 0, 255]
    );
}

#[test]
fn bad_files_get_errors_that_name_them() {
    let cases: [(&str, Vec<u8>); 3] = [
        ("empty.jpg", Vec::new()),
        ("notes.txt", b"these are my notes, not an image".to_vec()),
        (
            "cut.jpg",
            encode(&DynamicImage::ImageRgb8(landscape()), ImageFormat::Jpeg)[..60].to_vec(),
        ),
    ];
    for (name, bytes) in cases {
        let err = decode_image(&bytes, name).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{name}: not a usable image")),
            "{err}"
        );
    }
}

#[test]
fn huge_images_are_reduced_to_the_input_size() {
    let big = RgbImage::from_fn(6000, 4000, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let jpeg = encode(&DynamicImage::ImageRgb8(big), ImageFormat::Jpeg);
    let rgba = decode_image(&jpeg, "big.jpg").unwrap();
    let rgb = EFFICIENTNET_LITE.resize_and_crop(&rgba);
    assert_eq!(rgb.dimensions(), (224, 224));
}

#[test]
fn absurd_dimensions_are_refused_before_allocating() {
    // A PNG header claiming 30000 x 30000 pixels (2.7 GB decoded) with no data behind it.
    let mut png = encode(
        &DynamicImage::ImageRgb8(RgbImage::new(1, 1)),
        ImageFormat::Png,
    );
    png[16..20].copy_from_slice(&30000u32.to_be_bytes());
    png[20..24].copy_from_slice(&30000u32.to_be_bytes());
    let err = decode_image(&png, "bomb.png").unwrap_err().to_string();
    assert!(err.starts_with("bomb.png: not a usable image"), "{err}");
}

#[test]
fn slivers_are_refused_before_the_resize_makes_them_huge() {
    // A real 20000 x 1 PNG (a few hundred bytes): resizing its short side to 256 pixels would
    // allocate 5 GB; it took the CLI 44 s and killed the browser's engine.
    let sliver = encode(
        &DynamicImage::ImageRgb8(RgbImage::new(20000, 1)),
        ImageFormat::Png,
    );
    let err = decode_image(&sliver, "sliver.png").unwrap_err().to_string();
    assert!(
        err.contains("sliver.png") && err.contains("20000x1: one side is more than 100 times"),
        "{err}"
    );
    // A wide panorama within the limit still goes through.
    let panorama = encode(
        &DynamicImage::ImageRgb8(RgbImage::new(3000, 300)),
        ImageFormat::Png,
    );
    let rgba = decode_image(&panorama, "panorama.png").unwrap();
    assert_eq!(
        EFFICIENTNET_LITE.resize_and_crop(&rgba).dimensions(),
        (224, 224)
    );
}

#[test]
fn gif_and_bmp_decode_like_the_browser() {
    let picture = DynamicImage::ImageRgb8(landscape());
    for (format, name) in [(ImageFormat::Gif, "a.gif"), (ImageFormat::Bmp, "a.bmp")] {
        let rgba = decode_image(&encode(&picture, format), name).unwrap();
        assert_eq!(rgba.dimensions(), (40, 20), "{name}");
        let (left, right) = (rgba.get_pixel(5, 10).0, rgba.get_pixel(35, 10).0);
        assert!(left[0] > 200 && left[2] < 60, "{name} left {left:?}");
        assert!(right[2] > 200 && right[0] < 60, "{name} right {right:?}");
    }
}

#[test]
fn a_jpeg_cut_short_is_refused_as_the_browser_refuses_it() {
    let jpeg = encode(&DynamicImage::ImageRgb8(landscape()), ImageFormat::Jpeg);
    // Complete, and complete with bytes after its end (cameras append data there).
    decode_image(&jpeg, "whole.jpg").unwrap();
    let mut trailed = jpeg.clone();
    trailed.extend_from_slice(b"camera maker's trailer");
    decode_image(&trailed, "trailed.jpg").unwrap();
    // Cut inside its image data: `image` alone would fill the rest with grey.
    let cut = &jpeg[..jpeg.len() - 40];
    let err = decode_image(cut, "cut.jpg").unwrap_err().to_string();
    assert!(
        err.contains("cut.jpg") && err.contains("the JPEG is cut short"),
        "{err}"
    );
    // An EXIF thumbnail carries its own end marker: that one does not make the image whole.
    let mut thumbnail = b"Exif\0\0".to_vec();
    thumbnail.extend_from_slice(&jpeg);
    let mut with_thumbnail = jpeg[..2].to_vec();
    with_thumbnail.extend_from_slice(&[0xFF, 0xE1]);
    with_thumbnail.extend_from_slice(&((thumbnail.len() + 2) as u16).to_be_bytes());
    with_thumbnail.extend_from_slice(&thumbnail);
    with_thumbnail.extend_from_slice(&cut[2..]);
    let err = decode_image(&with_thumbnail, "thumb.jpg")
        .unwrap_err()
        .to_string();
    assert!(err.contains("the JPEG is cut short"), "{err}");
}

#[test]
fn a_huge_file_is_refused_before_it_is_read() {
    // 4 GB named .jpg with a real JPEG's start: sparse on disk, refused from its size alone.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("movie.jpg");
    let jpeg = encode(&DynamicImage::ImageRgb8(landscape()), ImageFormat::Jpeg);
    std::fs::write(&path, &jpeg).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let started = std::time::Instant::now();
    let err = graft::data::decode::decode_file(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("movie.jpg") && err.contains("4096 MB is more than the 256 MB limit"),
        "{err}"
    );
    assert!(started.elapsed().as_secs_f64() < 1.0, "read, not refused");
}
