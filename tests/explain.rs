//! Explanations, checked for what makes them explanations: on images whose evidence is at a
//! known place, the map's peak falls on it; the map depends on the trained weights; the same
//! input gives the same map; and `graft explain` writes what it promises.
//!
//! The images are generated here: one object of the class (a disc, a ring or a bullseye) pasted
//! at a random place on a random cloudy, grainy background, beside a distractor of another kind
//! (a soft smudge) that every class has, so only the object tells the classes apart.

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

use burn::tensor::Device;
use futures_lite::future::block_on;
use graft::data::decode::decode_file;
use graft::data::{EFFICIENTNET_LITE, SeededRng};
use graft::explain::{Explanation, Resolution, Target, explain, map_region};
use graft::model::HeadConfig;
use graft::model_file::ModelFile;
use graft::weights::load_backbone_file;
use image::{Rgba, RgbaImage};

use common::{graft, weights};

const SIDE: u32 = 256;
const CLASSES: [&str; 3] = ["bullseye", "disc", "ring"];
const TRAIN_PER_CLASS: usize = 100;
const TEST_PER_CLASS: usize = 30;

/// An object's bounding box, in the image's pixels.
#[derive(Clone, Copy, Debug)]
struct Box2 {
    x: f32,
    y: f32,
    side: f32,
}

impl Box2 {
    fn contains(&self, x: f32, y: f32) -> bool {
        (self.x..=self.x + self.side).contains(&x) && (self.y..=self.y + self.side).contains(&y)
    }

    fn overlaps(&self, other: &Box2, gap: f32) -> bool {
        self.x < other.x + other.side + gap
            && other.x < self.x + self.side + gap
            && self.y < other.y + other.side + gap
            && other.y < self.y + self.side + gap
    }
}

fn bright_colour(rng: &mut SeededRng) -> [f32; 3] {
    // A saturated colour: one channel high, one low, one anywhere.
    let mut c = [230.0, 30.0 + 40.0 * rng.unit(), 30.0 + 200.0 * rng.unit()];
    let shift = (rng.unit() * 3.0) as usize % 3;
    c.rotate_left(shift);
    c
}

/// Whether pixel `(px, py)` belongs to the shape `kind` drawn in `b`.
fn inside(kind: &str, b: &Box2, px: f32, py: f32) -> bool {
    let (u, v) = ((px - b.x) / b.side, (py - b.y) / b.side); // 0..1 across the box
    if !(0.0..=1.0).contains(&u) || !(0.0..=1.0).contains(&v) {
        return false;
    }
    let r = ((u - 0.5).powi(2) + (v - 0.5).powi(2)).sqrt();
    match kind {
        "disc" => r <= 0.5,
        "ring" => (0.3..=0.5).contains(&r),
        "bullseye" => r <= 0.15 || (0.3..=0.5).contains(&r),
        other => unreachable!("{other}"),
    }
}

/// A random place for a box of `side` inside the centre crop (what the network sees).
fn place(rng: &mut SeededRng, side: f32) -> Box2 {
    let (low, high) = (20.0, SIDE as f32 - 20.0 - side);
    Box2 {
        x: low + rng.unit() * (high - low),
        y: low + rng.unit() * (high - low),
        side,
    }
}

/// One image of `class`, and where its object is.
fn scene(class: &str, rng: &mut SeededRng) -> (RgbaImage, Box2, Box2) {
    // Both anywhere in the centre crop, apart (drawn again together until they are).
    let (object, distractor) = loop {
        let (object_side, distractor_side) = (80.0 + 32.0 * rng.unit(), 56.0 + 32.0 * rng.unit());
        let object = place(rng, object_side);
        let distractor = place(rng, distractor_side);
        if !distractor.overlaps(&object, 8.0) {
            break (object, distractor);
        }
    };
    let (object_colour, distractor_colour) = (bright_colour(rng), bright_colour(rng));
    let base = [
        60.0 + 120.0 * rng.unit(),
        60.0 + 120.0 * rng.unit(),
        60.0 + 120.0 * rng.unit(),
    ];
    // Clouds: random values on a coarse grid (a 16 px cell), interpolated smoothly, plus grain.
    let mut noise = SeededRng::new((rng.unit() * 1e9) as u64);
    const GRID: usize = SIDE as usize / 16 + 2;
    let clouds: Vec<f32> = (0..GRID * GRID)
        .map(|_| 70.0 * (noise.unit() - 0.5))
        .collect();
    let cloud = |px: f32, py: f32| {
        let (gx, gy) = (px / 16.0, py / 16.0);
        let (x0, y0) = (gx.floor() as usize, gy.floor() as usize);
        let smooth = |t: f32| t * t * (3.0 - 2.0 * t);
        let (tx, ty) = (smooth(gx.fract()), smooth(gy.fract()));
        let at = |x: usize, y: usize| clouds[y * GRID + x];
        let top = at(x0, y0) * (1.0 - tx) + at(x0 + 1, y0) * tx;
        let bottom = at(x0, y0 + 1) * (1.0 - tx) + at(x0 + 1, y0 + 1) * tx;
        top * (1.0 - ty) + bottom * ty
    };
    let image = RgbaImage::from_fn(SIDE, SIDE, |x, y| {
        let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
        let colour = if inside(class, &object, px, py) {
            object_colour
        } else {
            let grain = 30.0 * (noise.unit() - 0.5);
            let background = base.map(|c| c + cloud(px, py) + grain);
            // The distractor: a soft round smudge, edgeless, unlike any class's object.
            let (cx, cy) = (
                distractor.x + distractor.side / 2.0,
                distractor.y + distractor.side / 2.0,
            );
            let r = ((px - cx).powi(2) + (py - cy).powi(2)).sqrt() / (0.35 * distractor.side);
            let weight = (-r * r).exp();
            std::array::from_fn(|c| background[c] * (1.0 - weight) + distractor_colour[c] * weight)
        };
        let [r, g, b] = colour.map(|c| c.clamp(0.0, 255.0) as u8);
        Rgba([r, g, b, 255])
    });
    (image, object, distractor)
}

struct TestImage {
    path: PathBuf,
    label: usize,
    object: Box2,
    distractor: Box2,
}

/// The generated set, trained once for every test in this file.
struct Fixture {
    _dir: tempfile::TempDir,
    model: PathBuf,
    test: Vec<TestImage>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = SeededRng::new(2024);
        let mut test = Vec::new();
        for (label, class) in CLASSES.iter().enumerate() {
            for split in ["train", "test"] {
                let folder = dir.path().join(split).join(class);
                std::fs::create_dir_all(&folder).unwrap();
                let count = if split == "train" {
                    TRAIN_PER_CLASS
                } else {
                    TEST_PER_CLASS
                };
                for i in 0..count {
                    let (image, object, distractor) = scene(class, &mut rng);
                    let path = folder.join(format!("{i}.png"));
                    image.save(&path).unwrap();
                    if split == "test" {
                        test.push(TestImage {
                            path,
                            label,
                            object,
                            distractor,
                        });
                    }
                }
            }
        }
        let model = dir.path().join("shapes.safetensors");
        let out = graft(&[
            "train",
            "--data",
            dir.path().join("train").to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Fixture {
            _dir: dir,
            model,
            test,
        }
    })
}

/// Maps of each test image's true class, with `head_seed` replacing the trained head by a
/// random one.
fn true_class_maps(head_seed: Option<u64>, resolution: Resolution) -> Vec<Explanation> {
    let fixture = fixture();
    let device = Device::flex();
    let mut file = ModelFile::load(&fixture.model, &device).unwrap();
    if let Some(seed) = head_seed {
        file.model.head = HeadConfig::new(CLASSES.len()).init(&device, seed);
    }
    let labels = file.model.info.labels.clone();
    assert_eq!(labels, CLASSES);
    let backbone = file.backbone(load_backbone_file(&weights(), &device).unwrap());
    fixture
        .test
        .iter()
        .map(|image| {
            let prepared = [EFFICIENTNET_LITE.prepare(&decode_file(&image.path).unwrap())];
            let target = Target::Class(image.label);
            block_on(explain(
                &backbone,
                &file.model.head,
                &labels,
                &prepared,
                target,
                resolution,
                &device,
            ))
            .unwrap()
            .remove(0)
        })
        .collect()
}

fn trained_maps(resolution: Resolution) -> &'static [Explanation] {
    static COARSE: OnceLock<Vec<Explanation>> = OnceLock::new();
    static FINE: OnceLock<Vec<Explanation>> = OnceLock::new();
    let maps = match resolution {
        Resolution::Coarse => &COARSE,
        Resolution::Fine => &FINE,
    };
    maps.get_or_init(|| true_class_maps(None, resolution))
}

/// Where the map's peak lies in the image's own pixels: the centre of its hottest cell.
fn peak_point(explained: &Explanation, resolution: Resolution, side: u32) -> (f32, f32) {
    let map = &explained.map;
    let hottest = graft::train::session::argmax(&map.heatmap);
    let (row, col) = (hottest / map.cols, hottest % map.cols);
    let region = map_region(side, side, resolution);
    (
        region.x + (col as f32 + 0.5) / map.cols as f32 * region.width,
        region.y + (row as f32 + 0.5) / map.rows as f32 * region.height,
    )
}

/// The share of held-out images whose true class's map peaks inside the object, printed.
fn localisation_rate(resolution: Resolution) -> f64 {
    let fixture = fixture();
    let maps = trained_maps(resolution);
    let mut hits = 0;
    let mut on_distractor = 0;
    let mut correct = 0;
    for (image, explained) in fixture.test.iter().zip(maps) {
        let (x, y) = peak_point(explained, resolution, SIDE);
        hits += usize::from(image.object.contains(x, y));
        on_distractor += usize::from(image.distractor.contains(x, y));
        let predicted = graft::train::session::argmax(&explained.probabilities);
        correct += usize::from(predicted == image.label);
        assert_eq!(explained.map.label, CLASSES[image.label]);
        assert!(
            explained
                .map
                .heatmap
                .iter()
                .all(|v| (0.0..=1.0).contains(v))
        );
    }
    let n = fixture.test.len();
    let rate = hits as f64 / n as f64;
    let map = &maps[0].map;
    println!(
        "localisation ({}x{} map): the peak of the true class's map is inside the object for {hits} of {n} held-out images ({:.1} %), on the distractor for {on_distractor}; accuracy {:.1} %",
        map.rows,
        map.cols,
        100.0 * rate,
        100.0 * correct as f64 / n as f64
    );
    rate
}

#[test]
fn the_fine_maps_peak_falls_on_the_object_of_the_class() {
    // Measured 90.0 % (81 of 90); issue 12 asks for 85 %.
    let rate = localisation_rate(Resolution::Fine);
    assert!(
        rate >= 0.85,
        "peak inside the object for only {:.1} % of images",
        100.0 * rate
    );
    assert_eq!(trained_maps(Resolution::Fine)[0].map.rows, 14);
}

#[test]
fn the_coarse_maps_peak_falls_on_the_object_of_the_class() {
    // Measured 80.0 % (72 of 90): most misses are cells centred just outside the object's
    // edge (32-pixel cells on objects of 80-112 pixels). Below 75 % is a regression.
    let rate = localisation_rate(Resolution::Coarse);
    assert!(
        rate >= 0.75,
        "peak inside the object for only {:.1} % of images",
        100.0 * rate
    );
}

/// Spearman's rank correlation (ties get their average rank).
fn rank_correlation(a: &[f32], b: &[f32]) -> f64 {
    fn ranks(values: &[f32]) -> Vec<f64> {
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
        let mut ranks = vec![0.0; values.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            while end + 1 < order.len() && values[order[end + 1]] == values[order[start]] {
                end += 1;
            }
            for &i in &order[start..=end] {
                ranks[i] = (start + end) as f64 / 2.0;
            }
            start = end + 1;
        }
        ranks
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
    let (ma, mb) = (mean(&ra), mean(&rb));
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let var = |r: &[f64], m: f64| r.iter().map(|x| (x - m).powi(2)).sum::<f64>();
    let denominator = (var(&ra, ma) * var(&rb, mb)).sqrt();
    if denominator == 0.0 {
        0.0
    } else {
        cov / denominator
    }
}

/// The mean rank correlation of the trained maps with those of three random heads, printed.
fn correlations_with_random_heads(resolution: Resolution) -> Vec<f64> {
    let trained = trained_maps(resolution);
    let mut correlations = Vec::new();
    for seed in [1, 2, 3] {
        let random = true_class_maps(Some(seed), resolution);
        let mean = trained
            .iter()
            .zip(&random)
            .map(|(t, r)| rank_correlation(&t.map.heatmap, &r.map.heatmap))
            .sum::<f64>()
            / trained.len() as f64;
        correlations.push(mean);
    }
    println!(
        "randomisation check ({resolution:?}): mean rank correlation of the trained map with a random head's, per seed: {correlations:.3?}"
    );
    // The statistic can see agreement: a map against itself correlates 1.
    let map = &trained[0].map.heatmap;
    assert!((rank_correlation(map, map) - 1.0).abs() < 1e-9);
    correlations
}

#[test]
fn the_map_depends_on_the_trained_head() {
    for resolution in [Resolution::Coarse, Resolution::Fine] {
        for correlation in correlations_with_random_heads(resolution) {
            assert!(
                correlation < 0.5,
                "{resolution:?} maps with a random head correlate {correlation:.3} with the trained ones"
            );
        }
    }
}

#[test]
fn the_same_input_gives_the_same_map() {
    for resolution in [Resolution::Coarse, Resolution::Fine] {
        let again = true_class_maps(None, resolution);
        assert_eq!(again.len(), trained_maps(resolution).len());
        for (a, b) in again.iter().zip(trained_maps(resolution)) {
            assert_eq!(a.map, b.map);
        }
    }
}

fn cli_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "graft failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn graft_explain_prints_json_and_writes_overlays() {
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    // A wide image (the region is its centre square) beside a square one.
    let wide = dir.path().join("wide.png");
    let (scene_image, _, _) = scene("disc", &mut SeededRng::new(9));
    let mut canvas = RgbaImage::from_pixel(2 * SIDE, SIDE, Rgba([90, 90, 90, 255]));
    image::imageops::overlay(&mut canvas, &scene_image, SIDE as i64 / 2, 0);
    canvas.save(&wide).unwrap();
    let square = &fixture.test[0].path;
    let out_dir = dir.path().join("maps");
    let args = |label: Option<&str>| {
        let mut args = vec![
            "explain",
            "--model",
            fixture.model.to_str().unwrap(),
            "--json",
        ];
        if let Some(label) = label {
            args.extend(["--label", label]);
        }
        args.extend([
            "--out",
            out_dir.to_str().unwrap(),
            wide.to_str().unwrap(),
            square.to_str().unwrap(),
        ]);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |label| {
        cli_json(&graft(
            &args(label).iter().map(String::as_str).collect::<Vec<_>>(),
        ))
    };

    let predicted = run(None);
    let items = predicted.as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        let rows = item["heatmap"].as_array().unwrap();
        assert_eq!(rows.len(), 7);
        let values: Vec<f64> = rows
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
            .collect();
        assert_eq!(values.len(), 49);
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(values.contains(&1.0), "the peak is 1");
        let score = item["score"].as_f64().unwrap();
        assert!(score > 0.0 && score <= 1.0);
    }
    // The map covers the centre crop, in the image's own pixels, moved half a cell (15.5 px) to
    // the bottom right where its cells look: for 512x256 the crop is x 144, y 16, 224 x 224.
    let region = &items[0]["region"];
    assert_eq!(items[0]["file"], wide.to_str().unwrap());
    for (key, expected) in [
        ("x", 159.5),
        ("y", 31.5),
        ("width", 224.0),
        ("height", 224.0),
    ] {
        assert!(
            (region[key].as_f64().unwrap() - expected).abs() < 1e-3,
            "{region}"
        );
    }
    assert_eq!(
        items[0]["label"], "disc",
        "the disc scene is classified as a disc"
    );

    // Pictures at the images' own size, one per image, named after them.
    let picture = image::open(out_dir.join("wide.png.explain.png")).unwrap();
    assert_eq!((picture.width(), picture.height()), (2 * SIDE, SIDE));
    assert!(out_dir.join("0.png.explain.png").is_file());

    // Naming a class explains that class, with its own (lower) probability and another map.
    let named = run(Some("ring"));
    assert_eq!(named[0]["label"], "ring");
    assert!(named[0]["score"].as_f64().unwrap() < items[0]["score"].as_f64().unwrap());
    assert_ne!(named[0]["heatmap"], items[0]["heatmap"]);

    // --fine: 14x14 cells of 16 px, half a fine cell (7.5 px) to the bottom right of the crop.
    let fine = cli_json(&graft(&[
        "explain",
        "--model",
        fixture.model.to_str().unwrap(),
        "--fine",
        "--json",
        square.to_str().unwrap(),
    ]));
    let rows = fine[0]["heatmap"].as_array().unwrap();
    assert_eq!(rows.len(), 14);
    assert!(rows.iter().all(|row| row.as_array().unwrap().len() == 14));
    assert_eq!(fine[0]["region"]["x"].as_f64().unwrap(), 23.5);
    assert_eq!(fine[0]["region"]["width"].as_f64().unwrap(), 224.0);

    // An unknown class is refused by name, listing the model's.
    let out = graft(&[
        "explain",
        "--model",
        fixture.model.to_str().unwrap(),
        "--label",
        "cow",
        square.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("'cow'") && message.contains("bullseye, disc, ring"),
        "{message}"
    );
}
