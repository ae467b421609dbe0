//! The CPU inference path against burn's general one, natively, on the same X-rays in one
//! process (interleaved, batch after batch: the machines are noisy), on one thread and on every
//! core. Writes bench/results/cpu-path-native.json.
//!   cargo run --release --example cpu-path [-- --images N --rounds N]

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::Device;
use futures_lite::future::block_on;
use graft::model::FEATURE_DIM;
use graft::train::Embedder;

#[path = "xrays.rs"]
mod xrays;
use xrays::{argument, preprocessed_xrays, shipped_backbone};

const BATCH: usize = 8;

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Images per second of each embedder over `rounds` interleaved passes, and their lowest
/// feature cosine.
fn measure(embedders: &[(&str, &Embedder)], images: &[Vec<f32>], rounds: usize) -> (Vec<f64>, f64) {
    let mut seconds = vec![0.0; embedders.len()];
    let mut lowest: f64 = 1.0;
    for round in 0..rounds {
        for batch in images.chunks(BATCH) {
            let mut outputs = Vec::new();
            // Alternate which goes first, so neither always runs on a warmer cache.
            let mut order: Vec<usize> = (0..embedders.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let started = Instant::now();
                let features = block_on(embedders[i].1.features(batch)).expect("features");
                seconds[i] += started.elapsed().as_secs_f64();
                outputs.push(features);
            }
            for (a, b) in outputs[0]
                .chunks(FEATURE_DIM)
                .zip(outputs[1].chunks(FEATURE_DIM))
            {
                lowest = lowest.min(cosine(a, b));
            }
        }
    }
    let images = (rounds * images.len()) as f64;
    (seconds.iter().map(|s| images / s).collect(), lowest)
}

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let count = argument("--images", 48);
    let rounds = argument("--rounds", 3);
    let images = preprocessed_xrays(&repo, count / 2);
    let device = Device::flex();
    let backbone = shipped_backbone(&repo, &device);
    let fast = Embedder::new(&backbone, &device).unwrap();
    let general = Embedder::Device {
        backbone: Box::new(backbone),
        device: device.clone(),
    };
    let embedders = [("burn", &general), ("cpu path", &fast)];
    measure(&embedders, &images[..BATCH], 1); // warm-up

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut results = Vec::new();
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let (rates, lowest) = pool.install(|| measure(&embedders, &images, rounds));
        println!(
            "{threads} thread(s): burn {:.1} images/s, cpu path {:.1} images/s (x{:.2}); lowest cosine {lowest:.7}",
            rates[0],
            rates[1],
            rates[1] / rates[0]
        );
        results.push(serde_json::json!({
            "threads": threads,
            "burnImagesPerSecond": rates[0],
            "cpuPathImagesPerSecond": rates[1],
            "speedup": rates[1] / rates[0],
            "lowestFeatureCosine": lowest,
        }));
    }
    let out = repo.join("bench/results/cpu-path-native.json");
    let report = serde_json::json!({
        "what": "EfficientNet-Lite0 embeddings natively: burn's flex module against the folded CPU path, interleaved, batches of 8",
        "images": images.len(),
        "rounds": rounds,
        "cores": cores,
        "date": std::process::Command::new("date").arg("-u").arg("+%Y-%m-%dT%H:%M:%SZ").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default(),
        "results": results,
    });
    std::fs::write(
        &out,
        format!("{}\n", serde_json::to_string_pretty(&report).unwrap()),
    )
    .unwrap();
    println!("written to {}", out.display());
}
