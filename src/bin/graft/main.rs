//! `graft`: train, evaluate and use image classifiers from the command line.
//!
//! Argument parsing and printing only, one module per command; the work is done by the `graft`
//! library, the same code the browser runs.

mod convert;
mod detect;
mod embed;
mod eval;
mod explain;
mod predict;
mod train;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::tensor::Device;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use graft::data::folder::DatasetLayout;
use graft::device::device_from_name;
use graft::model::EfficientNetLite0;
use graft::pipeline::training_set;
use graft::train::{Embedder, TrainingSet};
use graft::weights::load_backbone_file;
use graft::{GraftError, Result};

const DEFAULT_WEIGHTS: &str = "weights/efficientnet_lite0.safetensors";

#[derive(Parser)]
#[command(
    name = "graft",
    version,
    about = "Private transfer learning on EfficientNet-Lite0"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every command that runs the backbone takes.
#[derive(Args)]
struct Common {
    /// Backbone weights (made by `graft convert-weights`).
    #[arg(long, env = "GRAFT_WEIGHTS", default_value = DEFAULT_WEIGHTS)]
    weights: PathBuf,
    /// Where to compute: `cpu`, or `wgpu` in builds with the `wgpu` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Subcommand)]
enum Command {
    /// Train a new head on a folder with one sub-folder per class (or train/ and val/), or a
    /// detector on a YOLO-layout data.yaml (`--task detect`).
    Train(train::TrainArgs),
    /// Measure a trained model on a labelled folder (a detector: on a data.yaml's val split).
    Eval(eval::EvalArgs),
    /// Classify images with a trained model or the backbone's ImageNet classes, or find objects
    /// with a detector.
    Predict(predict::PredictArgs),
    /// Show where in each image the evidence for a class lies, as a heat map.
    Explain(explain::ExplainArgs),
    /// Export every image's 1280 backbone features (safetensors) for your own analysis.
    Embed(embed::EmbedArgs),
    /// Convert the original PyTorch checkpoint to the safetensors files Graft loads.
    ConvertWeights(convert::ConvertArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Embed(args) => embed::run(args),
        Command::ConvertWeights(args) => convert::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the device and backbone, saying which file is missing and how to make it.
fn setup(common: &Common) -> Result<(Device, EfficientNetLite0)> {
    let device = device_from_name(&common.device)?;
    if !common.weights.exists() {
        return Err(GraftError::BadWeights {
            origin: common.weights.display().to_string(),
            expected: "backbone weights file",
            reason: "it does not exist; run `./setup.sh` (or `graft convert-weights`) first, \
                     or point --weights / GRAFT_WEIGHTS at it"
                .into(),
        });
    }
    let backbone = load_backbone_file(&common.weights, &device)?;
    Ok((device, backbone))
}

/// Embeds a dataset folder with a progress bar: its training set and the file of each example.
fn embed_folder(
    layout: &DatasetLayout,
    data: &Path,
    backbone: &EfficientNetLite0,
    device: &Device,
) -> Result<(TrainingSet, Vec<PathBuf>)> {
    let bar = progress_bar(0, "embedding");
    let embedded = training_set(
        layout,
        data,
        &Embedder::new(backbone, device)?,
        |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    );
    bar.finish_and_clear();
    embedded
}

fn progress_bar(total: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Prints the files that were left out, one line each.
fn print_skipped(skipped: &[graft::train::SkippedImage]) {
    for skipped in skipped {
        eprintln!("skipped {}: {}", skipped.name, skipped.reason);
    }
}

/// Fails a command given images when none of them could be read (each was reported already).
fn require_some_read(failures: usize, images: usize) -> Result<()> {
    if failures == images {
        return Err(GraftError::option(
            "images",
            "none of the given images could be read",
        ));
    }
    Ok(())
}

/// Whether a model file is a detector, by the kind its header declares (a file that cannot be
/// read is left to the classifier's loader, which says what is wrong with it).
fn is_detector(path: &Path) -> bool {
    use std::io::Read;
    /// safetensors' own limit on a header.
    const MAX_HEADER: u64 = 100_000_000;
    let read_header = || -> std::io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(path)?;
        let mut length = [0u8; 8];
        file.read_exact(&mut length)?;
        let mut start = length.to_vec();
        file.take(u64::from_le_bytes(length).min(MAX_HEADER))
            .read_to_end(&mut start)?;
        Ok(start)
    };
    read_header()
        .ok()
        .and_then(|start| graft::weights::declared_kind(&start))
        .as_deref()
        == Some(graft::detect::model_file::DETECTOR_KIND)
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("reports serialise")
}
