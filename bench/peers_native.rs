//! Graft's side of the native peer benchmark (`make bench-peers`): the CPU path on the same 48
//! X-rays that onnxruntime gets. Writes the preprocessed pixels and Graft's features for
//! `bench/peers/native.py` to read, then times the embedder on one thread and on every core,
//! wall and CPU seconds, into `bench/peers/build/graft-native.json`.
//!   cargo run --release --example peers-native [-- --rounds N]

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use futures_lite::future::block_on;
use graft::train::Embedder;

#[path = "xrays.rs"]
mod xrays;
use xrays::{argument, preprocessed_xrays, shipped_backbone};

const BATCH: usize = 8;
const IMAGES_PER_CLASS: usize = 24;

/// This process's user + system CPU seconds (Linux: /proc/self/stat, in clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks = |i: usize| fields[i].parse::<f64>().unwrap();
    (ticks(11) + ticks(12)) / 100.0 // utime and stime: fields 14 and 15 of proc(5)
}

fn write_floats(path: &Path, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rounds = argument("--rounds", 3);
    let images = preprocessed_xrays(&repo, IMAGES_PER_CLASS);
    let device = Device::flex();
    let backbone = shipped_backbone(&repo, &device);
    let embedder = Embedder::new(&backbone, &device).unwrap();

    let build = repo.join("bench/peers/build");
    std::fs::create_dir_all(&build).unwrap();
    write_floats(&build.join("pixels.f32"), &images.concat());
    let features = block_on(embedder.features(&images)).unwrap();
    write_floats(&build.join("graft-features.f32"), &features);

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut runs = Vec::new();
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let (wall, cpu) = pool.install(|| {
            block_on(embedder.features(&images[..BATCH])).unwrap(); // warm-up
            let (started, cpu_started) = (Instant::now(), cpu_seconds());
            for _ in 0..rounds {
                for batch in images.chunks(BATCH) {
                    block_on(embedder.features(batch)).unwrap();
                }
            }
            (started.elapsed().as_secs_f64(), cpu_seconds() - cpu_started)
        });
        let count = rounds * images.len();
        println!(
            "graft, {threads} thread(s): {:.1} images/s, {:.1} images per CPU-second",
            count as f64 / wall,
            count as f64 / cpu
        );
        runs.push(serde_json::json!({
            "threads": threads, "images": count, "wallSeconds": wall, "cpuSeconds": cpu,
        }));
    }
    let out = build.join("graft-native.json");
    let report = serde_json::json!({ "batch": BATCH, "runs": runs });
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap() + "\n").unwrap();
    println!("written to {}", out.display());
}
