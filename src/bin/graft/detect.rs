//! Object detection from the command line: `graft train --task detect`, and `graft eval` and
//! `graft predict` given a detector file. Argument handling and printing only; the work is
//! `graft::detect`'s, the code the browser runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use futures_lite::future::block_on;
use image::{Rgba, RgbaImage};
use indicatif::ProgressBar;
use serde::Serialize;

use graft::data::decode::decode_file;
use graft::detect::boxes::{BoundingBox, Detection};
use graft::detect::dataset::{FileSystem, Split, load_split, read_data_yaml};
use graft::detect::files::read_split;
use graft::detect::inference::{Found, Scoring, detect_images};
use graft::detect::metrics::DetectionReport;
use graft::detect::model_file::{DetectorFile, DetectorTraining};
use graft::detect::train::{
    DetectEvent, DetectObserver, DetectPlan, DetectionSet, EVALUATION_MIN_SCORE, TrainedDetector,
    train_detector,
};
use graft::model::EfficientNetLite0;
use graft::train::TrainOptions;
use graft::{GraftError, Result};

use super::{Common, json, progress_bar, require_some_read, setup};

/// Prints epochs as they end, a progress bar between.
struct Printer {
    bar: ProgressBar,
}

impl DetectObserver for Printer {
    fn on_event(&mut self, event: DetectEvent<'_>) {
        match event {
            DetectEvent::Step {
                step, total_steps, ..
            } => {
                self.bar.set_length(total_steps as u64);
                self.bar.set_position(step as u64);
            }
            DetectEvent::Epoch(epoch) => {
                let validation = match (epoch.val_map50, epoch.val_map50_95) {
                    (Some(map50), Some(map)) => {
                        format!("  val mAP50 {map50:.3}  mAP50-95 {map:.3}")
                    }
                    _ => String::new(),
                };
                let line = format!(
                    "epoch {:>3}  loss {:.4} (class {:.4}, box {:.4}, centre {:.4}){validation}  ({:.1}s)",
                    epoch.epoch,
                    epoch.loss,
                    epoch.class_loss,
                    epoch.box_loss,
                    epoch.centredness_loss,
                    epoch.seconds
                );
                self.bar.suspend(|| eprintln!("{line}"));
            }
        }
    }
}

/// A split's images, read and letterboxed with a progress bar.
fn read_images(
    images: &[graft::detect::dataset::LabelledImage],
    side: usize,
    what: &str,
) -> Result<DetectionSet> {
    let bar = progress_bar(images.len(), what);
    let set = read_split(images, side, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    Ok(set)
}

/// What `graft train --task detect --json` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TrainReport<'a> {
    plan: &'a DetectPlan,
    history: &'a [graft::detect::train::DetectEpoch],
    /// The last epoch's report on the val split, as `graft eval --json` prints it.
    evaluation: Option<&'a DetectionReport>,
    model: &'a Path,
    reading_seconds: f64,
    training_seconds: f64,
}

pub fn train(
    data: &Path,
    out: &Path,
    options: &TrainOptions,
    input_size: usize,
    print_json: bool,
    common: &Common,
) -> Result<()> {
    let plan = DetectPlan::new(options, input_size)?;
    let config = read_data_yaml(data)?;
    // Every label file is read and checked before the backbone runs on any image.
    let train_images = load_split(&FileSystem, &config, data, Split::Train)?;
    let val_images = load_split(&FileSystem, &config, data, Split::Val)?;
    DetectionSet::check_room(
        plan.input_size,
        train_images.len() + val_images.len(),
        "in the train and val splits",
    )?;
    let (device, backbone) = setup(common)?;
    let started = Instant::now();
    let train_set = read_images(&train_images, plan.input_size, "reading train")?;
    let val_set = read_images(&val_images, plan.input_size, "reading val")?;
    let reading_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{} classes: {}; {} training and {} validation images, read in {reading_seconds:.1}s",
        config.names.len(),
        config.names.join(", "),
        train_images.len(),
        val_images.len(),
    );
    let mut printer = Printer {
        bar: progress_bar(0, "training"),
    };
    let started = Instant::now();
    let TrainedDetector {
        head,
        tail,
        history,
        evaluation,
        ..
    } = block_on(train_detector(
        &backbone,
        &train_set,
        Some(&val_set),
        &config.names,
        &plan,
        &device,
        &mut printer,
    ))?;
    printer.bar.finish_and_clear();
    let training_seconds = started.elapsed().as_secs_f64();
    let last = history.last();
    let mut file = DetectorFile::new(config.names.clone(), plan.input_size, head, tail);
    file.info.training = Some(DetectorTraining {
        train_images: train_images.len(),
        validation_images: val_images.len(),
        epochs: history.len(),
        val_map50: last.and_then(|e| e.val_map50),
        val_map50_95: last.and_then(|e| e.val_map50_95),
    });
    file.save(out)?;
    eprintln!(
        "saved {} (trained in {training_seconds:.1}s)",
        out.display()
    );
    if print_json {
        println!(
            "{}",
            json(&TrainReport {
                plan: &plan,
                history: &history,
                evaluation: evaluation.as_ref(),
                model: out,
                reading_seconds,
                training_seconds,
            })
        );
    }
    Ok(())
}

/// One image file and its detections, in its own pixels.
fn detect_file(
    path: &Path,
    backbone: &EfficientNetLite0,
    file: &DetectorFile,
    min_score: f32,
    device: &Device,
) -> Result<(RgbaImage, Vec<Detection>)> {
    let rgba = decode_file(path)?;
    let found = block_on(detect_images(
        file,
        std::slice::from_ref(&rgba),
        min_score,
        backbone,
        device,
    ))?;
    Ok((rgba, found.into_iter().flatten().collect()))
}

/// `graft eval` with a detector: COCO-style mAP on the data.yaml's validation split.
pub fn eval(model: &Path, data: &Path, print_json: bool, common: &Common) -> Result<()> {
    let (device, backbone) = setup(common)?;
    let file = DetectorFile::load(model, &device)?;
    let config = read_data_yaml(data)?;
    let class_numbers =
        file.info
            .class_numbers(&config.names)
            .map_err(|reason| GraftError::BadDataset {
                path: data.to_path_buf(),
                reason,
            })?;
    let mut images = load_split(&FileSystem, &config, data, Split::Val)?;
    for labelled in images.iter_mut().flat_map(|image| image.boxes.iter_mut()) {
        labelled.class = class_numbers[labelled.class];
    }
    let bar = progress_bar(images.len(), "evaluating");
    let mut scoring = Scoring::default();
    for image in &images {
        // One image at a time: memory stays that of one decoded image.
        let (rgba, found) = detect_file(
            &image.image,
            &backbone,
            &file,
            EVALUATION_MIN_SCORE,
            &device,
        )?;
        scoring.add(&image.boxes, rgba.width(), rgba.height(), found);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let report = scoring.report(&file.info.labels)?;
    if print_json {
        println!("{}", json(&report));
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(report: &DetectionReport) {
    println!(
        "{} images, {} objects: mAP50 {:.4}  mAP50-95 {:.4}  precision {:.4}  recall {:.4}",
        report.images,
        report.instances,
        report.map50,
        report.map50_95,
        report.precision,
        report.recall
    );
    for class in &report.per_class {
        println!(
            "  {:<20} {:>5} objects  AP50 {}  AP50-95 {}",
            class.name,
            class.instances,
            class.ap50.map_or("-".into(), |v| format!("{v:.4}")),
            class.ap50_95.map_or("-".into(), |v| format!("{v:.4}")),
        );
    }
}

#[derive(Serialize)]
struct ImageFound<'a> {
    image: String,
    detections: Vec<Found<'a>>,
}

/// A colour per class, far apart around the hue circle.
fn class_colour(class: usize) -> Rgba<u8> {
    const COLOURS: [[u8; 3]; 8] = [
        [230, 25, 75],
        [60, 180, 75],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
    ];
    let [r, g, b] = COLOURS[class % COLOURS.len()];
    Rgba([r, g, b, 255])
}

/// Draws a box's outline, `thickness` pixels wide, inside the image.
fn draw_box(image: &mut RgbaImage, bbox: &BoundingBox, colour: Rgba<u8>, thickness: u32) {
    let (width, height) = image.dimensions();
    let clamp = |v: f32, max: u32| (v.max(0.0) as u32).min(max.saturating_sub(1));
    let (x0, y0, x1, y1) = (
        clamp(bbox.x0, width),
        clamp(bbox.y0, height),
        clamp(bbox.x1, width),
        clamp(bbox.y1, height),
    );
    for t in 0..thickness {
        for x in x0..=x1 {
            for y in [y0.saturating_add(t).min(y1), y1.saturating_sub(t).max(y0)] {
                image.put_pixel(x, y, colour);
            }
        }
        for y in y0..=y1 {
            for x in [x0.saturating_add(t).min(x1), x1.saturating_sub(t).max(x0)] {
                image.put_pixel(x, y, colour);
            }
        }
    }
}

/// `graft predict` with a detector.
pub fn predict(
    model: &Path,
    images: &[PathBuf],
    min_score: f32,
    out: Option<&Path>,
    print_json: bool,
    common: &Common,
) -> Result<()> {
    if !(0.0..=1.0).contains(&min_score) {
        return Err(GraftError::option(
            "min-score",
            format!("{min_score} (use 0 to 1)"),
        ));
    }
    let (device, backbone) = setup(common)?;
    let file = DetectorFile::load(model, &device)?;
    if let Some(out) = out {
        std::fs::create_dir_all(out).map_err(|e| GraftError::io(out, e))?;
    }
    let labels = &file.info.labels;
    let mut results = Vec::new();
    let mut failures = 0;
    for path in images {
        let (mut rgba, detections) = match detect_file(path, &backbone, &file, min_score, &device) {
            Ok(found) => found,
            Err(error @ GraftError::BadImage { .. }) => {
                eprintln!("skipped {error}");
                failures += 1;
                continue;
            }
            Err(error) => return Err(error),
        };
        if !print_json {
            println!("{}: {} object(s)", path.display(), detections.len());
            for d in &detections {
                let b = d.bbox;
                println!(
                    "  {:>6.2}%  {}  [{:.0}, {:.0}, {:.0}, {:.0}]",
                    d.score * 100.0,
                    labels[d.class],
                    b.x0,
                    b.y0,
                    b.x1,
                    b.y1
                );
            }
        }
        if let Some(out) = out {
            let thickness = (rgba.width().max(rgba.height()) / 300).max(2);
            for d in &detections {
                draw_box(&mut rgba, &d.bbox, class_colour(d.class), thickness);
            }
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            let target = out.join(format!("{name}.png"));
            rgba.save(&target)
                .map_err(|e| GraftError::io(&target, std::io::Error::other(e)))?;
        }
        results.push(ImageFound {
            image: path.display().to_string(),
            detections: detections.iter().map(|d| Found::new(d, labels)).collect(),
        });
    }
    if print_json {
        println!("{}", json(&results));
    }
    if let Some(out) = out {
        eprintln!("drew the boxes into {}", out.display());
    }
    require_some_read(failures, images.len())
}
