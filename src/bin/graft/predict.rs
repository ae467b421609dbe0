//! `graft predict`: the top classes of each image, with a trained model or the ImageNet head.

use std::path::PathBuf;

use clap::Args;
use futures_lite::future::block_on;
use serde::Serialize;

use graft::Result;
use graft::data::EFFICIENTNET_LITE;
use graft::data::decode::decode_file;
use graft::model::{ClassifierHead, ImageNetClassifier};
use graft::model_file::ModelFile;
use graft::predict::{Prediction, class_probabilities, imagenet_probabilities, top_k};
use graft::train::Embedder;
use graft::weights::{imagenet_classifier_path, load_imagenet_classifier_file};

use super::{Common, json, require_some_read, setup};

const IMAGENET_LABELS: &str = include_str!("../../../assets/imagenet1k_classes.txt");

#[derive(Args)]
pub struct PredictArgs {
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
    /// A detector's lowest score shown.
    #[arg(long, default_value_t = 0.25)]
    min_score: f32,
    /// A detector: also write each image with its boxes drawn into this folder (PNG).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// What turns an embedding into class scores: a trained model's head, or the original
/// network's ImageNet classifier.
enum Scorer<'a> {
    Model(&'a ClassifierHead),
    ImageNet(ImageNetClassifier),
}

#[derive(Serialize)]
struct ImagePrediction {
    image: String,
    predictions: Vec<Prediction>,
}

pub fn run(args: PredictArgs) -> Result<()> {
    if let Some(model) = args.model.as_deref().filter(|m| super::is_detector(m)) {
        return super::detect::predict(
            model,
            &args.images,
            args.min_score,
            args.out.as_deref(),
            args.json,
            &args.common,
        );
    }
    if args.out.is_some() {
        return Err(graft::GraftError::option(
            "out",
            "drawn boxes need a detection model; a classifier has none",
        ));
    }
    let (device, pretrained) = setup(&args.common)?;
    let file = args
        .model
        .as_deref()
        .map(|p| ModelFile::load(p, &device))
        .transpose()?;
    let backbone = match &file {
        Some(file) => file.backbone(pretrained),
        None => pretrained,
    };
    let embedder = Embedder::new(&backbone, &device)?;
    let scorer = match &file {
        Some(file) => Scorer::Model(&file.model.head),
        // The ImageNet classifier is a file of its own, next to the backbone's.
        None => Scorer::ImageNet(load_imagenet_classifier_file(
            &imagenet_classifier_path(&args.common.weights),
            &device,
        )?),
    };
    let labels: Vec<String> = match &file {
        Some(file) => file.model.info.labels.clone(),
        None => IMAGENET_LABELS.lines().map(str::to_string).collect(),
    };
    let mut results = Vec::new();
    let mut failures = 0;
    for path in &args.images {
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
            match &scorer {
                Scorer::Model(head) => class_probabilities(&embedder, head, &batch, &device).await,
                Scorer::ImageNet(classifier) => {
                    imagenet_probabilities(&embedder, classifier, &batch, &device).await
                }
            }
        })?;
        let predictions = top_k(&probabilities[0], &labels, args.top_k.max(1));
        if !args.json {
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
    if args.json {
        println!("{}", json(&results));
    }
    require_some_read(failures, args.images.len())
}
