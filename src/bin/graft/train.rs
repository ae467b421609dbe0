//! `graft train`: a folder in, a model file out, progress on stderr, the report with `--json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use futures_lite::future::block_on;
use indicatif::ProgressBar;
use serde::Serialize;

use graft::Result;
use graft::data::Augmentation;
use graft::data::folder::DatasetLayout;
use graft::pipeline::FileImages;
use graft::train::limits::check_training_size;
use graft::train::{EpochReport, Observer, TrainEvent, TrainOptions, TrainReport, train};

use super::{Common, embed_folder, json, print_skipped, progress_bar, setup};

#[derive(Args)]
pub struct TrainArgs {
    /// One sub-folder per class, or `train/` and `val/` (or `validation/`) holding them; for
    /// `--task detect`, a YOLO-layout data.yaml.
    #[arg(long)]
    data: PathBuf,
    /// `classify` images, or `detect` objects with boxes.
    #[arg(long, default_value = "classify", value_parser = ["classify", "detect"])]
    task: String,
    /// `--task detect`: the side of the square, letterboxed input (a multiple of 32).
    #[arg(long, default_value_t = graft::detect::train::DEFAULT_INPUT_SIZE)]
    input_size: usize,
    #[arg(long, default_value = "model.safetensors")]
    out: PathBuf,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    options: TrainOptions,
    /// Every augmentation while fine-tuning (`--flip --crop --rotate --brightness --contrast`;
    /// a detector's, while training, is all but `--rotate`).
    #[arg(long)]
    augment: bool,
    #[command(flatten)]
    common: Common,
}

/// The report `--json` prints: the recipe's, plus where the model went and the embedding time.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CliReport<'a> {
    #[serde(flatten)]
    report: &'a TrainReport,
    model: &'a Path,
    embedding_seconds: f64,
}

/// Prints what the recipe does, as it does it.
struct Printer {
    bar: ProgressBar,
}

fn validation(report: &EpochReport) -> String {
    match (report.val_loss, report.val_accuracy) {
        (Some(loss), Some(acc)) => format!("  val_loss {loss:.4}  val_acc {:.2}%", acc * 100.0),
        _ => String::new(),
    }
}

impl Observer for Printer {
    fn on_event(&mut self, event: TrainEvent<'_>) {
        let line = match event {
            TrainEvent::Note { text } => text.to_string(),
            TrainEvent::HeadSearch { trial, index, of } => format!(
                "head: L2 {:.3e} ({index}/{of}): cross-validated loss {:.4}, accuracy {:.2}%",
                trial.l2,
                trial.cv_loss,
                trial.cv_accuracy * 100.0
            ),
            TrainEvent::HeadSolved(head) => match (head.val_loss, head.val_accuracy) {
                (Some(loss), Some(acc)) => format!(
                    "head: val_loss {loss:.4}  val_acc {:.2}%  ({:.2}s)",
                    acc * 100.0,
                    head.seconds
                ),
                _ => format!(
                    "head: solved in {:.2}s (no validation images)",
                    head.seconds
                ),
            },
            TrainEvent::Baseline(report) => {
                format!("fine-tune epoch   0 (head only){}", validation(report))
            }
            TrainEvent::Step {
                step, total_steps, ..
            } => {
                self.bar.set_length(total_steps as u64);
                self.bar.set_position(step as u64);
                return;
            }
            TrainEvent::Epoch { report, seconds } => format!(
                "fine-tune epoch {:>3}  loss {:.4}  acc {:.2}%{}  ({seconds:.1}s)",
                report.epoch,
                report.loss.unwrap_or(f64::NAN),
                report.accuracy.unwrap_or(f64::NAN) * 100.0,
                validation(report)
            ),
        };
        self.bar.suspend(|| eprintln!("{line}"));
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    let detect = args.task == "detect";
    let mut options = args.options;
    if args.augment {
        options.augment = match detect {
            true => graft::detect::train::EVERY_AUGMENTATION,
            false => Augmentation::ALL,
        };
    }
    if detect {
        return super::detect::train(
            &args.data,
            &args.out,
            &options,
            args.input_size,
            args.json,
            &args.common,
        );
    }
    // A bad option fails now, not after every image was embedded.
    options.validate()?;
    let layout = DatasetLayout::scan(&args.data)?;
    // So does a folder too large to train on.
    check_training_size(
        layout.file_count(),
        layout.classes().len(),
        options.hidden_units,
    )?;
    let (device, backbone) = setup(&args.common)?;

    let started = Instant::now();
    let (set, paths) = embed_folder(&layout, &args.data, &backbone, &device)?;
    let embedding_seconds = started.elapsed().as_secs_f64();
    print_skipped(&set.skipped);
    eprintln!(
        "{} classes: {}; {} images ({} skipped); embedded in {embedding_seconds:.1}s",
        set.labels.len(),
        set.labels.join(", "),
        set.examples.len(),
        set.skipped.len(),
    );

    let mut printer = Printer {
        bar: progress_bar(0, "fine-tuning"),
    };
    let trained = block_on(train(
        &set,
        &options,
        &mut FileImages { paths },
        &mut printer,
        &backbone,
        &device,
    ))?;
    printer.bar.finish_and_clear();
    let report = &trained.report;
    if let Some(evaluation) = &report.validation {
        eprintln!(
            "validation: {:.2}% of {} held-out images",
            evaluation.accuracy * 100.0,
            report.validation_images
        );
    }
    trained.model.save(&args.out)?;
    eprintln!("saved {}", args.out.display());
    if args.json {
        println!(
            "{}",
            json(&CliReport {
                report,
                model: &args.out,
                embedding_seconds,
            })
        );
    }
    Ok(())
}
