//! Shared fixtures for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` beside the repository (reference data and datasets), or `GRAFT_SHARED`.
pub fn shared() -> PathBuf {
    std::env::var_os("GRAFT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"))
}

pub fn reference(name: &str) -> PathBuf {
    shared().join("reference/efficientnet_lite0").join(name)
}

pub fn xray_dataset() -> PathBuf {
    shared().join("datasets/chest_xray_pneumonia")
}

/// The converted backbone. Its absence fails the test: `./setup.sh` makes it.
pub fn weights() -> PathBuf {
    let path = std::env::var_os("GRAFT_WEIGHTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("weights/efficientnet_lite0.safetensors"));
    assert!(
        path.is_file(),
        "{} is missing: run ./setup.sh first",
        path.display()
    );
    path
}

/// Runs the `graft` command with the converted backbone.
pub fn graft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .env("GRAFT_WEIGHTS", weights())
        .output()
        .expect("graft runs")
}

/// A safetensors tensor as stored: name, dtype, shape, little-endian bytes.
pub type StoredTensor = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

/// A safetensors file's tensors and metadata, to edit and [`build_safetensors`] again.
pub fn safetensors_parts(
    bytes: &[u8],
) -> (Vec<StoredTensor>, std::collections::HashMap<String, String>) {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let tensors = file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                view.dtype(),
                view.shape().to_vec(),
                view.data().to_vec(),
            )
        })
        .collect();
    (tensors, header.metadata().clone().unwrap_or_default())
}

/// A safetensors file from tensors and metadata.
pub fn build_safetensors(
    tensors: &[StoredTensor],
    metadata: std::collections::HashMap<String, String>,
) -> Vec<u8> {
    let views: Vec<(&str, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            let view = safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap();
            (name.as_str(), view)
        })
        .collect();
    safetensors::serialize(views, Some(metadata)).unwrap()
}

/// Reads a little-endian float32 `.npy` file (the reference fixtures).
pub fn read_npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{} is not .npy", path.display());
    let header_len = match bytes[6] {
        1 => u16::from_le_bytes([bytes[8], bytes[9]]) as usize + 10,
        _ => u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize + 12,
    };
    let header = std::str::from_utf8(&bytes[10..header_len]).unwrap_or("");
    assert!(
        header.contains("'<f4'") && header.contains("'fortran_order': False"),
        "{header}"
    );
    bytes[header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// A command's standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A successful command's `--json` output.
pub fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "graft failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

/// A path as a command-line argument.
pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
