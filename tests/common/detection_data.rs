//! A detection dataset in the YOLO layout, generated: Fashion-MNIST items (trousers, sneakers,
//! bags), tinted and scaled, pasted at known places on crops of real photographs and textures
//! (`tests/fixtures/detection_sources.py` gathers both from registries). Each image holds 1 to
//! 4 objects whose larger side is 15 to 45 % of the image's shorter side. Training and
//! validation use different items and different crops. Seeded: the same set every run.

use std::path::{Path, PathBuf};

use graft::data::split::SeededRng;
use image::imageops::{self, FilterType};
use image::{GrayImage, ImageFormat, RgbImage};

pub const CLASSES: [&str; 3] = ["trouser", "sneaker", "bag"];

/// Where the sources are, failing with the command that makes them.
pub fn sources() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/detection-sources");
    assert!(
        dir.join(".done").exists(),
        "{} is missing: run `python3 tests/fixtures/detection_sources.py` (make test does)",
        dir.display()
    );
    dir
}

struct Sources {
    textures: Vec<RgbImage>,
    /// Per class, its items.
    objects: Vec<Vec<GrayImage>>,
}

fn load(sources: &Path) -> Sources {
    let mut texture_files: Vec<PathBuf> = std::fs::read_dir(sources.join("textures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    texture_files.sort();
    let textures = texture_files
        .iter()
        .map(|p| image::open(p).unwrap().to_rgb8())
        .collect();
    let objects = CLASSES
        .iter()
        .map(|class| {
            let dir = sources.join("objects").join(class);
            let count = std::fs::read_dir(&dir).unwrap().count();
            (0..count)
                .map(|n| {
                    image::open(dir.join(format!("{n}.png")))
                        .unwrap()
                        .to_luma8()
                })
                .collect()
        })
        .collect();
    Sources { textures, objects }
}

fn between(rng: &mut SeededRng, low: f32, high: f32) -> f32 {
    low + rng.unit() * (high - low)
}

/// The item cropped to its visible pixels.
fn trimmed(item: &GrayImage) -> GrayImage {
    let visible = |x: u32, y: u32| item.get_pixel(x, y)[0] > 24;
    let (w, h) = item.dimensions();
    let xs: Vec<u32> = (0..w).filter(|&x| (0..h).any(|y| visible(x, y))).collect();
    let ys: Vec<u32> = (0..h).filter(|&y| (0..w).any(|x| visible(x, y))).collect();
    let (x0, x1) = (xs[0], *xs.last().unwrap());
    let (y0, y1) = (ys[0], *ys.last().unwrap());
    imageops::crop_imm(item, x0, y0, x1 - x0 + 1, y1 - y0 + 1).to_image()
}

/// One image and its label lines.
fn compose(
    sources: &Sources,
    items: std::ops::Range<usize>,
    rng: &mut SeededRng,
) -> (RgbImage, String) {
    let width = between(rng, 256.0, 480.0) as u32;
    let height = (width as f32 * between(rng, 0.7, 1.4)).clamp(224.0, 480.0) as u32;
    let texture = &sources.textures[rng.below(sources.textures.len())];
    let (tw, th) = texture.dimensions();
    let crop_w = between(rng, 0.4, 1.0) * tw as f32;
    let crop_h = (crop_w * height as f32 / width as f32).min(th as f32);
    let (cx, cy) = (
        rng.below((tw as f32 - crop_w) as usize + 1) as u32,
        rng.below((th as f32 - crop_h) as usize + 1) as u32,
    );
    let crop = imageops::crop_imm(texture, cx, cy, crop_w as u32, crop_h as u32).to_image();
    let mut canvas = imageops::resize(&crop, width, height, FilterType::Triangle);
    let short = width.min(height) as f32;
    let mut placed: Vec<[f32; 4]> = Vec::new();
    let mut labels = String::new();
    let wanted = 1 + rng.below(4);
    for _ in 0..wanted {
        let class = rng.below(CLASSES.len());
        let pool = &sources.objects[class][items.clone()];
        let item = trimmed(&pool[rng.below(pool.len())]);
        let larger = between(rng, 0.15, 0.45) * short;
        let scale = larger / item.width().max(item.height()) as f32;
        let (ow, oh) = (
            ((item.width() as f32 * scale).round() as u32).max(4),
            ((item.height() as f32 * scale).round() as u32).max(4),
        );
        let mask = imageops::resize(&item, ow, oh, FilterType::Triangle);
        // A place inside the image, barely touching the objects already there.
        let spot = (0..50).find_map(|_| {
            let x = rng.below((width - ow) as usize + 1) as f32;
            let y = rng.below((height - oh) as usize + 1) as f32;
            let candidate = [x, y, x + ow as f32, y + oh as f32];
            let overlaps = placed.iter().any(|p| {
                let ix = (p[2].min(candidate[2]) - p[0].max(candidate[0])).max(0.0);
                let iy = (p[3].min(candidate[3]) - p[1].max(candidate[1])).max(0.0);
                ix * iy > 0.1 * (ow * oh) as f32
            });
            (!overlaps).then_some(candidate)
        });
        let Some(spot) = spot else { continue };
        let tint = [0, 1, 2].map(|_| between(rng, 0.35, 1.0));
        for (mx, my, value) in mask.enumerate_pixels() {
            let alpha = (value[0] as f32 / 255.0 * 1.6).min(1.0);
            let pixel = canvas.get_pixel_mut(spot[0] as u32 + mx, spot[1] as u32 + my);
            for c in 0..3 {
                let object = 255.0 * tint[c] * (0.45 + 0.55 * value[0] as f32 / 255.0);
                pixel[c] = (alpha * object + (1.0 - alpha) * pixel[c] as f32).round() as u8;
            }
        }
        placed.push(spot);
        let (w, h) = (width as f32, height as f32);
        labels.push_str(&format!(
            "{class} {:.6} {:.6} {:.6} {:.6}\n",
            (spot[0] + spot[2]) / 2.0 / w,
            (spot[1] + spot[3]) / 2.0 / h,
            (spot[2] - spot[0]) / w,
            (spot[3] - spot[1]) / h
        ));
    }
    (canvas, labels)
}

/// Writes `train` and `val` images (JPEG or PNG) with their labels under `out` and returns its
/// data.yaml.
pub fn generate(out: &Path, train: usize, val: usize, seed: u64, format: ImageFormat) -> PathBuf {
    let sources = load(&sources());
    let items = sources.objects[0].len();
    let held_out = items * 3 / 4;
    let mut rng = SeededRng::new(seed);
    for (split, count, range) in [("train", train, 0..held_out), ("val", val, held_out..items)] {
        let images = out.join("images").join(split);
        let labels = out.join("labels").join(split);
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(&labels).unwrap();
        for n in 0..count {
            let (image, lines) = compose(&sources, range.clone(), &mut rng);
            let name = format!("{split}_{n:04}");
            let extension = format.extensions_str()[0];
            image
                .save_with_format(images.join(format!("{name}.{extension}")), format)
                .unwrap();
            std::fs::write(labels.join(format!("{name}.txt")), lines).unwrap();
        }
    }
    let yaml = out.join("data.yaml");
    let names: String = CLASSES
        .iter()
        .enumerate()
        .map(|(i, c)| format!("  {i}: {c}\n"))
        .collect();
    std::fs::write(
        &yaml,
        format!(
            "# Generated by tests/common/detection_data.rs\npath: {}\ntrain: images/train\nval: images/val\nnames:\n{names}",
            out.display()
        ),
    )
    .unwrap();
    yaml
}
