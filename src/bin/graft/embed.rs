//! `graft embed`: every image's backbone features, for analysis outside Graft.

use std::path::PathBuf;

use clap::Args;

use graft::Result;
use graft::data::folder::DatasetLayout;
use graft::embeddings_file::embeddings_to_bytes;
use graft::model_file::write_atomically;

use super::{Common, embed_folder, print_skipped, setup};

#[derive(Args)]
pub struct EmbedArgs {
    /// One sub-folder per class, or `train/` and `val/` holding them.
    #[arg(long)]
    data: PathBuf,
    /// The safetensors file to write: `features` [n, 1280], `labels` [n], and each image's file
    /// and content hash in its metadata.
    #[arg(long, default_value = "embeddings.safetensors")]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: EmbedArgs) -> Result<()> {
    let layout = DatasetLayout::scan(&args.data)?;
    let (device, backbone) = setup(&args.common)?;
    let (set, _) = embed_folder(&layout, &args.data, &backbone, &device)?;
    print_skipped(&set.skipped);
    write_atomically(
        &args.out,
        embeddings_to_bytes(&set.labels, &set.examples, &set.embeddings)?,
    )?;
    eprintln!(
        "wrote {} images' embeddings to {}",
        set.examples.len(),
        args.out.display()
    );
    Ok(())
}
