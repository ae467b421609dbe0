//! `graft eval`: a trained model measured on a labelled folder, or on exactly the images it
//! held out when it was trained.

use std::path::PathBuf;

use clap::Args;
use futures_lite::future::block_on;

use graft::data::folder::DatasetLayout;
use graft::model_file::ModelFile;
use graft::pipeline::{embed_files, evaluation_files};
use graft::predict::head_probabilities;
use graft::train::{Embedder, Embeddings, evaluate};
use graft::{GraftError, Result};

use super::{Common, json, print_skipped, progress_bar, setup};

#[derive(Args)]
pub struct EvalArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    data: PathBuf,
    /// `all` images of DATA (its val/ folder when it has train/ and val/), or only `val`: the
    /// images the model held out when it was trained, found by content, wherever it was trained.
    #[arg(long, default_value = "all", value_parser = ["all", "val"])]
    split: String,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: EvalArgs) -> Result<()> {
    if super::is_detector(&args.model) {
        return super::detect::eval(&args.model, &args.data, args.json, &args.common);
    }
    let (device, pretrained) = setup(&args.common)?;
    let file = ModelFile::load(&args.model, &device)?;
    let backbone = file.backbone(pretrained);
    let info = &file.model.info;
    let held_out = match args.split.as_str() {
        "val" => {
            let split = info.training.as_ref().and_then(|t| t.split.as_ref());
            match split.map(|s| s.held_out.as_slice()) {
                Some(hashes) if !hashes.is_empty() => Some(hashes),
                _ => {
                    return Err(GraftError::option(
                        "split",
                        format!(
                            "{} records no held-out images (it was trained without a validation \
                             split, or by an older Graft); use --split all",
                            args.model.display()
                        ),
                    ));
                }
            }
        }
        _ => None,
    };
    let layout = DatasetLayout::scan(&args.data)?;
    let (files, missing) = evaluation_files(&layout, &args.data, &info.labels, held_out)?;
    if missing > 0 {
        eprintln!(
            "warning: {missing} of the model's {} held-out images are not in {}",
            held_out.map_or(0, <[String]>::len),
            args.data.display()
        );
    }
    if files.is_empty() {
        return Err(GraftError::BadDataset {
            path: args.data.clone(),
            reason: "none of the images to evaluate on is here".into(),
        });
    }
    let bar = progress_bar(files.len(), "evaluating");
    let embedder = Embedder::new(&backbone, &device)?;
    let embedded = embed_files(&embedder, &files, &args.data, |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    print_skipped(&embedded.skipped);
    let embeddings = Embeddings {
        labels: embedded.examples.iter().map(|e| e.label).collect(),
        features: embedded.embeddings,
    };
    let probabilities = block_on(head_probabilities(&file.model.head, &embeddings, &device))?;
    let evaluation = evaluate(&info.labels, &embeddings.labels, &probabilities);
    if args.json {
        println!("{}", json(&evaluation));
    } else {
        print!("{evaluation}");
    }
    Ok(())
}
