//! `graft explain`: where in each image the evidence for a class lies, as a heat map.

use std::path::{Path, PathBuf};

use clap::Args;
use futures_lite::future::block_on;
use serde::Serialize;

use graft::data::decode::decode_file;
use graft::data::{EFFICIENTNET_LITE, Region};
use graft::explain::overlay::{DEFAULT_OPACITY, overlay};
use graft::explain::{ClassMap, Resolution, Target, explain, map_region};
use graft::model_file::{ModelFile, write_atomically};
use graft::{GraftError, Result};

use super::{Common, json, require_some_read, setup};

#[derive(Args)]
pub struct ExplainArgs {
    #[arg(long)]
    model: PathBuf,
    /// The class to explain (default: each image's predicted class).
    #[arg(long)]
    label: Option<String>,
    /// A 14x14 map (16-pixel cells) by autodiff instead of the 7x7 one in closed form: it
    /// localises better and costs a backward pass.
    #[arg(long)]
    fine: bool,
    /// Write `<image name>.explain.png` here for each image: the image with the map over it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The map's opacity in the pictures written by --out, from 0 to 1.
    #[arg(long, default_value_t = DEFAULT_OPACITY)]
    opacity: f32,
    /// Print one JSON array with an object per image.
    #[arg(long)]
    json: bool,
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Serialize)]
struct ImageExplanation {
    file: String,
    #[serde(flatten)]
    map: JsonMap,
    /// The rectangle of the image, in its own pixels, that the map covers.
    region: Region,
}

/// The map with its values as rows, row 0 at the top.
#[derive(Serialize)]
struct JsonMap {
    label: String,
    score: f32,
    heatmap: Vec<Vec<f32>>,
}

impl From<&ClassMap> for JsonMap {
    fn from(map: &ClassMap) -> Self {
        Self {
            label: map.label.clone(),
            score: map.score,
            heatmap: map
                .heatmap_rows()
                .into_iter()
                .map(<[f32]>::to_vec)
                .collect(),
        }
    }
}

pub fn run(args: ExplainArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.opacity) {
        return Err(GraftError::option(
            "--opacity",
            format!("{} (use 0 to 1)", args.opacity),
        ));
    }
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).map_err(|e| GraftError::io(out, e))?;
    }
    let (device, pretrained) = setup(&args.common)?;
    let file = ModelFile::load(&args.model, &device)?;
    let labels = &file.model.info.labels;
    let target = Target::from_label(args.label.as_deref(), labels)?;
    let backbone = file.backbone(pretrained);
    let resolution = Resolution::fine_if(args.fine);

    let mut results = Vec::new();
    let mut failures = 0;
    for path in &args.images {
        let rgba = match decode_file(path) {
            Ok(rgba) => rgba,
            Err(error) => {
                eprintln!("skipped {error}");
                failures += 1;
                continue;
            }
        };
        let batch = [EFFICIENTNET_LITE.prepare(&rgba)];
        let [explained] = <[_; 1]>::try_from(block_on(explain(
            &backbone,
            &file.model.head,
            labels,
            &batch,
            target,
            resolution,
            &device,
        ))?)
        .expect("one explanation per image");
        let region = map_region(rgba.width(), rgba.height(), resolution);
        if let Some(out) = &args.out {
            let picture = overlay(&rgba, &explained.map, region, args.opacity);
            let target = out.join(picture_name(path));
            let mut png = Vec::new();
            picture
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .map_err(|e| GraftError::io(&target, std::io::Error::other(e)))?;
            write_atomically(&target, png)?;
        }
        if !args.json {
            let map = &explained.map;
            let (row, col) = peak(map);
            println!(
                "{}: {} {:.2}%, strongest evidence in cell row {row}, column {col} of {}x{}",
                path.display(),
                map.label,
                map.score * 100.0,
                map.rows,
                map.cols
            );
        }
        results.push(ImageExplanation {
            file: path.display().to_string(),
            map: JsonMap::from(&explained.map),
            region,
        });
    }
    if args.json {
        println!("{}", json(&results));
    }
    require_some_read(failures, args.images.len())
}

/// `scan.jpg` becomes `scan.jpg.explain.png`: the original name stays recognisable.
fn picture_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    format!("{name}.explain.png")
}

/// The row and column of the map's hottest cell.
fn peak(map: &ClassMap) -> (usize, usize) {
    let index = graft::train::session::argmax(&map.heatmap);
    (index / map.cols.max(1), index % map.cols.max(1))
}
