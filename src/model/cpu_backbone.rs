//! The frozen backbone's forward pass on the CPU, for embedding and prediction.
//!
//! burn's module runs each layer as separate tensor operations: a convolution, then BatchNorm,
//! then ReLU6, each a pass over memory with its own allocation, in NCHW. Inference needs none of
//! that generality, so here every BatchNorm is folded into its convolution when the backbone is
//! loaded (exact in real arithmetic: `scale * (w * x) + shift` is one convolution with scaled
//! weights and a bias), activations stay in NHWC, so that the 1x1 convolutions (most of the
//! work) are single matrix products (`gemm`, with its SIMD kernels: AVX/FMA natively,
//! simd128 in wasm) and the depthwise ones run along contiguous channels; a product starts
//! from its bias (plus the block's input, where there is a residual), and the depthwise loop
//! clamps as it writes, so neither costs a pass of its own. Training, fine-tuning,
//! explanations and WebGPU keep burn's module; `tests/parity.rs` holds this path to it, and
//! `make bench-cpu-path` measures it against burn's.

use burn::module::Param;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

use super::efficientnet_lite::{EfficientNetLite0, INPUT_SIZE, MbConvBlock, same_padding};
use crate::error::Result;
use crate::model::FEATURE_DIM;

/// A convolution with its BatchNorm folded in: `weight` laid out for the NHWC loops below.
struct FoldedConv {
    /// Pointwise: `[in, out]`; depthwise: `[kernel * kernel, channels]`; the stem:
    /// `[kernel * kernel * in, out]` (im2col order).
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
    kernel: usize,
    stride: usize,
}

struct Block {
    expand: Option<FoldedConv>,
    depthwise: FoldedConv,
    project: FoldedConv,
    residual: bool,
}

/// EfficientNet-Lite0 up to the pooled embedding, folded for the CPU.
pub struct CpuBackbone {
    stem: FoldedConv,
    blocks: Vec<Block>,
    head: FoldedConv,
}

/// A CPU tensor's values (read synchronously: the folded path is only built on the CPU).
fn values<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    Ok(tensor.into_data().convert::<f32>().try_into_vec::<f32>()?)
}

/// Reads a convolution (burn's `[out, in / groups, kh, kw]`) and its BatchNorm, folded.
fn fold(conv: &Conv2d, bn: &BatchNorm, depthwise: bool) -> Result<FoldedConv> {
    let [outputs, per_group, kernel, _] = conv.weight.dims();
    let weight = values(Param::val(&conv.weight))?;
    let gamma = values(bn.gamma.val())?;
    let beta = values(bn.beta.val())?;
    let mean = values(bn.running_mean.value())?;
    let variance = values(bn.running_var.value())?;
    let scale: Vec<f32> = (0..outputs)
        .map(|o| (gamma[o] as f64 / (variance[o] as f64 + bn.epsilon).sqrt()) as f32)
        .collect();
    let bias = (0..outputs).map(|o| beta[o] - mean[o] * scale[o]).collect();
    let taps = kernel * kernel;
    let inputs = if depthwise { outputs } else { per_group };
    let mut folded = vec![0.0; outputs * per_group * taps];
    for o in 0..outputs {
        for i in 0..per_group {
            for t in 0..taps {
                let value = weight[(o * per_group + i) * taps + t] * scale[o];
                let at = if depthwise {
                    t * outputs + o
                } else {
                    (t * per_group + i) * outputs + o
                };
                folded[at] = value;
            }
        }
    }
    Ok(FoldedConv {
        weight: folded,
        bias,
        inputs,
        outputs,
        kernel,
        stride: conv.stride[0],
    })
}

fn fold_block(block: &MbConvBlock) -> Result<Block> {
    let expand = match (&block.expand_conv, &block.bn0) {
        (Some(conv), Some(bn)) => Some(fold(conv, bn, false)?),
        _ => None,
    };
    Ok(Block {
        expand,
        depthwise: fold(&block.depthwise_conv, &block.bn1, true)?,
        project: fold(&block.project_conv, &block.bn2, false)?,
        residual: block.residual,
    })
}

/// `out = clamp(out, 0, 6)`.
fn relu6(values: &mut [f32]) {
    values.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
}

/// `out[p] = start[p] + input[p] x weight` for each of `pixels` rows: a 1x1 convolution (or
/// the stem's im2col product) as one matrix product, `start` holding the bias (and the
/// residual, when there is one).
fn matmul_accumulate(input: &[f32], pixels: usize, conv: &FoldedConv, out: &mut [f32]) {
    let (k, n) = (conv.weight.len() / conv.outputs, conv.outputs);
    debug_assert_eq!(input.len(), pixels * k);
    debug_assert_eq!(out.len(), pixels * n);
    // SAFETY: the three buffers hold `pixels x k`, `k x n` and `pixels x n` row-major values
    // (checked above), and `out` does not alias the others.
    unsafe {
        gemm::gemm(
            pixels,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            input.as_ptr(),
            1,
            k as isize,
            conv.weight.as_ptr(),
            1,
            n as isize,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Fills each of `pixels` rows of `out` with the bias.
fn fill_bias(out: &mut [f32], bias: &[f32]) {
    out.chunks_exact_mut(bias.len())
        .for_each(|row| row.copy_from_slice(bias));
}

/// A depthwise kxk convolution with "SAME" padding on an NHWC map of `side x side`, then ReLU6.
/// Returns the output side.
fn depthwise(input: &[f32], side: usize, conv: &FoldedConv, out: &mut [f32]) -> usize {
    let (c, k, stride) = (conv.outputs, conv.kernel, conv.stride);
    let out_side = side.div_ceil(stride);
    let (pad, _) = same_padding(side, k, stride);
    for oy in 0..out_side {
        for ox in 0..out_side {
            let acc = &mut out[(oy * out_side + ox) * c..][..c];
            acc.copy_from_slice(&conv.bias);
            for ky in 0..k {
                let Some(iy) = (oy * stride + ky).checked_sub(pad).filter(|&y| y < side) else {
                    continue;
                };
                for kx in 0..k {
                    let Some(ix) = (ox * stride + kx).checked_sub(pad).filter(|&x| x < side) else {
                        continue;
                    };
                    let pixel = &input[(iy * side + ix) * c..][..c];
                    let taps = &conv.weight[(ky * k + kx) * c..][..c];
                    for ((a, &x), &w) in acc.iter_mut().zip(pixel).zip(taps) {
                        *a += x * w;
                    }
                }
            }
            relu6(acc);
        }
    }
    out_side
}

/// The stem's input patches: for each output pixel, its 3x3 window of the NHWC image (zeros
/// where "SAME" padding reaches past the border), in the stem's weight order.
fn stem_patches(image: &[f32], conv: &FoldedConv, out: &mut Vec<f32>) -> usize {
    let (k, stride, c) = (conv.kernel, conv.stride, conv.inputs);
    let out_side = INPUT_SIZE.div_ceil(stride);
    let (pad, _) = same_padding(INPUT_SIZE, k, stride);
    out.clear();
    out.resize(out_side * out_side * k * k * c, 0.0);
    let mut at = 0;
    for oy in 0..out_side {
        for ox in 0..out_side {
            for ky in 0..k {
                for kx in 0..k {
                    let (iy, ix) = (
                        (oy * stride + ky).checked_sub(pad),
                        (ox * stride + kx).checked_sub(pad),
                    );
                    if let (Some(iy), Some(ix)) = (iy, ix)
                        && iy < INPUT_SIZE
                        && ix < INPUT_SIZE
                    {
                        out[at..at + c].copy_from_slice(&image[(iy * INPUT_SIZE + ix) * c..][..c]);
                    }
                    at += c;
                }
            }
        }
    }
    out_side
}

/// Working memory for one image, reused across its layers and images.
#[derive(Default)]
struct Scratch {
    /// The current block's input.
    x: Vec<f32>,
    /// The expanded map (and the stem's patches, and the head's map).
    hidden: Vec<f32>,
    /// The depthwise convolution's output (and the image in NHWC).
    depthwise: Vec<f32>,
    /// The block's output, swapped with `x` after each block.
    next: Vec<f32>,
}

fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buffer.resize(len, 0.0);
    &mut buffer[..len]
}

impl CpuBackbone {
    /// Folds a backbone's weights, on the CPU device.
    pub fn new(backbone: &EfficientNetLite0) -> Result<Self> {
        let mut blocks = Vec::with_capacity(backbone.blocks.len());
        for block in &backbone.blocks {
            blocks.push(fold_block(block)?);
        }
        Ok(Self {
            stem: fold(&backbone.conv_stem, &backbone.bn0, false)?,
            blocks,
            head: fold(&backbone.conv_head, &backbone.bn1, false)?,
        })
    }

    /// The pooled embedding of one preprocessed image (`[3, 224, 224]`, as
    /// [`crate::data::preprocess`] makes it), written to `out` (1280 values).
    fn embed_one(&self, image: &[f32], scratch: &mut Scratch, out: &mut [f32]) {
        let plane = INPUT_SIZE * INPUT_SIZE;
        let nhwc = sized(&mut scratch.depthwise, plane * 3);
        for (p, pixel) in nhwc.chunks_exact_mut(3).enumerate() {
            for (c, value) in pixel.iter_mut().enumerate() {
                *value = image[c * plane + p];
            }
        }
        let mut side = stem_patches(&scratch.depthwise, &self.stem, &mut scratch.hidden);
        let x = sized(&mut scratch.x, side * side * self.stem.outputs);
        fill_bias(x, &self.stem.bias);
        matmul_accumulate(&scratch.hidden, side * side, &self.stem, x);
        relu6(x);

        let mut channels = self.stem.outputs;
        for block in &self.blocks {
            let pixels = side * side;
            let input = &scratch.x[..pixels * channels];
            let expanded: &[f32] = match &block.expand {
                Some(conv) => {
                    let out = sized(&mut scratch.hidden, pixels * conv.outputs);
                    fill_bias(out, &conv.bias);
                    matmul_accumulate(input, pixels, conv, out);
                    relu6(out);
                    out
                }
                None => input,
            };
            let hidden = block.depthwise.outputs;
            let out_side = side.div_ceil(block.depthwise.stride);
            let filtered = sized(&mut scratch.depthwise, out_side * out_side * hidden);
            depthwise(expanded, side, &block.depthwise, filtered);
            let out_pixels = out_side * out_side;
            let out = sized(&mut scratch.next, out_pixels * block.project.outputs);
            fill_bias(out, &block.project.bias);
            if block.residual {
                out.iter_mut().zip(input).for_each(|(o, &x)| *o += x);
            }
            matmul_accumulate(filtered, out_pixels, &block.project, out);
            std::mem::swap(&mut scratch.x, &mut scratch.next);
            side = out_side;
            channels = block.project.outputs;
        }

        // Head conv (1x1, ReLU6), then the mean over the map.
        let pixels = side * side;
        let map = sized(&mut scratch.hidden, pixels * FEATURE_DIM);
        fill_bias(map, &self.head.bias);
        matmul_accumulate(&scratch.x[..pixels * channels], pixels, &self.head, map);
        relu6(map);
        out.fill(0.0);
        for row in map.chunks_exact(FEATURE_DIM) {
            out.iter_mut().zip(row).for_each(|(o, &v)| *o += v);
        }
        out.iter_mut().for_each(|o| *o /= pixels as f32);
    }

    /// Pooled embeddings of preprocessed images, `images.len() x 1280` row-major; natively,
    /// the images are spread over every core.
    pub fn features(&self, images: &[Vec<f32>]) -> Vec<f32> {
        let mut out = vec![0.0; images.len() * FEATURE_DIM];
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            out.par_chunks_exact_mut(FEATURE_DIM)
                .zip(images)
                .for_each_init(Scratch::default, |scratch, (row, image)| {
                    self.embed_one(image, scratch, row)
                });
        }
        #[cfg(target_arch = "wasm32")]
        {
            let mut scratch = Scratch::default();
            for (row, image) in out.chunks_exact_mut(FEATURE_DIM).zip(images) {
                self.embed_one(image, &mut scratch, row);
            }
        }
        out
    }
}
