//! The frozen backbone's forward pass on the CPU, for embedding and prediction.
//!
//! burn's module runs each layer as separate tensor operations: a convolution, then BatchNorm,
//! then ReLU6, each a pass over memory with its own allocation, in NCHW. Inference needs none of
//! that generality, so here every BatchNorm is folded into its convolution when the backbone is
//! loaded (exact in real arithmetic: `scale * (w * x) + shift` is one convolution with scaled
//! weights and a bias), activations stay in NHWC, so that the 1x1 convolutions (most of the
//! work) are single matrix products (`gemm`, with its SIMD kernels: AVX-512 or AVX2/FMA
//! natively, simd128 in wasm) and the depthwise ones run along contiguous channels, sixteen
//! channels of four neighbouring pixels in registers at a time; a product's bias, ReLU6 and
//! residual take one pass together, and the depthwise loop clamps as it writes. Training, fine-tuning,
//! explanations and WebGPU keep burn's module; `tests/parity.rs` holds this path to it, and
//! `make bench-cpu-path` measures it against burn's.

use std::cell::RefCell;

use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;

use super::efficientnet_lite::{
    BN_EPSILON, EfficientNetLite0, HEAD_CONV_INPUT, INPUT_SIZE, STEM_CHANNELS, STEM_KERNEL,
    STEM_STRIDE, block_shapes, same_padding,
};
use crate::error::Result;
use crate::model::FEATURE_DIM;

/// One convolution of the backbone with the BatchNorm after it: what the folded path asks its
/// source for (see [`CpuBackbone::read`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Layer {
    Stem,
    /// Block `i`'s 1x1 expansion (blocks with an expand ratio above 1).
    Expand(usize),
    Depthwise(usize),
    Project(usize),
    Head,
}

impl Layer {
    /// The convolution's and the BatchNorm's names in burn's module and in the weights file.
    pub fn names(self) -> (String, String) {
        let block = |i: usize, conv: &str, bn: &str| {
            (format!("blocks.{i}.{conv}"), format!("blocks.{i}.{bn}"))
        };
        match self {
            Self::Stem => ("conv_stem".into(), "bn0".into()),
            Self::Expand(i) => block(i, "expand_conv", "bn0"),
            Self::Depthwise(i) => block(i, "depthwise_conv", "bn1"),
            Self::Project(i) => block(i, "project_conv", "bn2"),
            Self::Head => ("conv_head".into(), "bn1".into()),
        }
    }
}

/// A layer's weights as read: the convolution's, `[out, in / groups, k, k]` row-major, and its
/// BatchNorm's four vectors of `out` values. The source guarantees those lengths: the file reader
/// checks each tensor's shape, burn's module has them by construction.
pub(crate) struct LayerWeights {
    pub conv: Vec<f32>,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub variance: Vec<f32>,
}

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

/// A layer of burn's module, read.
fn module_layer(conv: &Conv2d, bn: &BatchNorm) -> Result<LayerWeights> {
    Ok(LayerWeights {
        conv: values(conv.weight.val())?,
        gamma: values(bn.gamma.val())?,
        beta: values(bn.beta.val())?,
        mean: values(bn.running_mean.value())?,
        variance: values(bn.running_var.value())?,
    })
}

/// Folds a layer (`dims` as in [`LayerWeights`]): `scale * (w * x) + shift` as one convolution.
fn fold(layer: LayerWeights, dims: [usize; 4], stride: usize, depthwise: bool) -> FoldedConv {
    let [outputs, per_group, kernel, _] = dims;
    let scale: Vec<f32> = (0..outputs)
        .map(|o| (layer.gamma[o] as f64 / (layer.variance[o] as f64 + BN_EPSILON).sqrt()) as f32)
        .collect();
    let bias = (0..outputs)
        .map(|o| layer.beta[o] - layer.mean[o] * scale[o])
        .collect();
    let taps = kernel * kernel;
    let inputs = if depthwise { outputs } else { per_group };
    let mut folded = vec![0.0; outputs * per_group * taps];
    for (o, &scale) in scale.iter().enumerate() {
        for i in 0..per_group {
            for t in 0..taps {
                let value = layer.conv[(o * per_group + i) * taps + t] * scale;
                let at = if depthwise {
                    t * outputs + o
                } else {
                    (t * per_group + i) * outputs + o
                };
                folded[at] = value;
            }
        }
    }
    FoldedConv {
        weight: folded,
        bias,
        inputs,
        outputs,
        kernel,
        stride,
    }
}

/// `out[p] = input[p] x weight` for each of `pixels` rows: a 1x1 convolution (or the stem's
/// im2col product) as one matrix product, without its bias (see [`finish`]).
fn matmul(input: &[f32], pixels: usize, conv: &FoldedConv, out: &mut [f32]) {
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
            false,
            input.as_ptr(),
            1,
            k as isize,
            conv.weight.as_ptr(),
            1,
            n as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// What follows a matrix product, in the same pass over its rows as the bias.
enum Then<'a> {
    Relu6,
    /// Adds the block's input.
    Residual(&'a [f32]),
    Nothing,
}

/// Completes a matrix product's rows in one pass: the bias, then `then`.
#[inline(always)] // compiled into each instruction set of `embed_one`
fn finish(out: &mut [f32], bias: &[f32], then: Then) {
    let rows = out.chunks_exact_mut(bias.len());
    match then {
        Then::Relu6 => rows.for_each(|row| {
            for (o, &b) in row.iter_mut().zip(bias) {
                *o = (*o + b).clamp(0.0, 6.0);
            }
        }),
        Then::Residual(skip) => rows
            .zip(skip.chunks_exact(bias.len()))
            .for_each(|(row, skip)| {
                for ((o, &b), &s) in row.iter_mut().zip(bias).zip(skip) {
                    *o += b + s;
                }
            }),
        Then::Nothing => rows.for_each(|row| {
            for (o, &b) in row.iter_mut().zip(bias) {
                *o += b;
            }
        }),
    }
}

/// Channels a depthwise convolution keeps in one register: every Lite0 layer has a multiple.
const LANES: usize = 16;
/// Neighbouring output pixels computed together: independent sums that share each tap's weights.
const PIXELS_AT_ONCE: usize = 4;

/// A depthwise kxk convolution with "SAME" padding on an NHWC map of `side x side`, then ReLU6.
/// Returns the output side.
#[inline(always)]
fn depthwise(input: &[f32], side: usize, conv: &FoldedConv, out: &mut [f32]) -> usize {
    let (k, stride) = (conv.kernel, conv.stride);
    debug_assert_eq!(conv.outputs % LANES, 0);
    let out_side = side.div_ceil(stride);
    let (pad, _) = same_padding(side, k, stride);
    // The taps that fall inside the map along one axis, for an output coordinate.
    let taps = |o: usize| pad.saturating_sub(o * stride)..(side + pad - o * stride).min(k);
    let inside = |o: usize| taps(o) == (0..k);
    let map = Map {
        input,
        side,
        stride,
        pad,
        out_side,
    };
    for oy in 0..out_side {
        let rows = taps(oy);
        let mut ox = 0;
        while ox < out_side {
            let last = ox + PIXELS_AT_ONCE - 1;
            if last < out_side && inside(ox) && inside(last) {
                depthwise_pixels::<PIXELS_AT_ONCE>(&map, conv, oy, ox, rows.clone(), 0..k, out);
                ox += PIXELS_AT_ONCE;
            } else {
                depthwise_pixels::<1>(&map, conv, oy, ox, rows.clone(), taps(ox), out);
                ox += 1;
            }
        }
    }
    out_side
}

/// `sum += x * w`, lane by lane: one vector instruction of each where the CPU has them.
#[inline(always)]
fn multiply_add(sum: &mut [f32; LANES], x: &[f32; LANES], w: &[f32; LANES]) {
    *sum = std::array::from_fn(|lane| sum[lane] + x[lane] * w[lane]);
}

/// A depthwise convolution's input map and geometry.
struct Map<'a> {
    input: &'a [f32],
    side: usize,
    stride: usize,
    pad: usize,
    out_side: usize,
}

/// Output pixels `ox..ox + P` of row `oy`, every tap in `rows` x `cols` (all inside the map for
/// each of them): each block of channels accumulates in registers, then is written once.
#[inline(always)]
fn depthwise_pixels<const P: usize>(
    map: &Map,
    conv: &FoldedConv,
    oy: usize,
    ox: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let (c, k) = (conv.outputs, conv.kernel);
    for channel in (0..c).step_by(LANES) {
        let bias: [f32; LANES] = conv.bias[channel..][..LANES].try_into().unwrap();
        let mut acc = [bias; P];
        for ky in rows.clone() {
            let row = (oy * map.stride + ky - map.pad) * map.side;
            for kx in cols.clone() {
                let w: &[f32; LANES] = conv.weight[(ky * k + kx) * c + channel..][..LANES]
                    .try_into()
                    .unwrap();
                for (p, sum) in acc.iter_mut().enumerate() {
                    let at = (row + (ox + p) * map.stride + kx - map.pad) * c + channel;
                    multiply_add(sum, map.input[at..][..LANES].try_into().unwrap(), w);
                }
            }
        }
        for (p, sum) in acc.iter().enumerate() {
            let written = &mut out[(oy * map.out_side + ox + p) * c + channel..][..LANES];
            for (o, &a) in written.iter_mut().zip(sum) {
                *o = a.clamp(0.0, 6.0);
            }
        }
    }
}

/// The stem's input patches: for each output pixel, its 3x3 window of the NHWC image (zeros
/// where "SAME" padding reaches past the border), in the stem's weight order.
#[inline(always)]
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
    /// Folds a backbone's weights (the pretrained one, or a fine-tuned model's), on the CPU
    /// device.
    pub fn new(backbone: &EfficientNetLite0) -> Result<Self> {
        Self::read(|layer, _| {
            let (conv, bn) = match layer {
                Layer::Stem => (&backbone.conv_stem, &backbone.bn0),
                Layer::Head => (&backbone.conv_head, &backbone.bn1),
                Layer::Expand(i) => {
                    let block = &backbone.blocks[i];
                    block
                        .expand_conv
                        .as_ref()
                        .zip(block.bn0.as_ref())
                        .expect("the module has an expand convolution where the architecture does")
                }
                Layer::Depthwise(i) => {
                    (&backbone.blocks[i].depthwise_conv, &backbone.blocks[i].bn1)
                }
                Layer::Project(i) => (&backbone.blocks[i].project_conv, &backbone.blocks[i].bn2),
            };
            module_layer(conv, bn)
        })
    }

    /// Builds the folded path from its layers as `read(layer, dims)` gives them (`dims`, the
    /// convolution's shape, is what the source must return): from burn's module
    /// ([`CpuBackbone::new`]) or straight from the weights file
    /// ([`crate::weights::load_cpu_backbone`]).
    pub(crate) fn read(
        mut read: impl FnMut(Layer, [usize; 4]) -> Result<LayerWeights>,
    ) -> Result<Self> {
        let mut fold_layer = |layer: Layer, dims: [usize; 4], stride: usize, depthwise: bool| {
            read(layer, dims).map(|weights| fold(weights, dims, stride, depthwise))
        };
        let stem_dims = [STEM_CHANNELS, 3, STEM_KERNEL, STEM_KERNEL];
        let stem = fold_layer(Layer::Stem, stem_dims, STEM_STRIDE, false)?;
        let mut blocks = Vec::new();
        for (i, shape) in block_shapes().into_iter().enumerate() {
            let (hidden, k) = (shape.hidden(), shape.kernel);
            let expand = match shape.expand_ratio {
                1 => None,
                _ => Some(fold_layer(
                    Layer::Expand(i),
                    [hidden, shape.in_channels, 1, 1],
                    1,
                    false,
                )?),
            };
            blocks.push(Block {
                expand,
                depthwise: fold_layer(Layer::Depthwise(i), [hidden, 1, k, k], shape.stride, true)?,
                project: fold_layer(
                    Layer::Project(i),
                    [shape.out_channels, hidden, 1, 1],
                    1,
                    false,
                )?,
                residual: shape.residual(),
            });
        }
        let head = fold_layer(Layer::Head, [FEATURE_DIM, HEAD_CONV_INPUT, 1, 1], 1, false)?;
        Ok(Self { stem, blocks, head })
    }

    /// The pooled embedding of one preprocessed image (`[3, 224, 224]`, as
    /// [`crate::data::preprocess`] makes it), written to `out` (1280 values). On x86-64 the
    /// loops (the depthwise convolutions above all) run 16 lanes wide where the CPU has
    /// AVX-512, 8 with AVX2: the portable build only assumes SSE2. gemm picks its own kernels.
    fn embed_one(&self, image: &[f32], scratch: &mut Scratch, out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F, checked just above.
                return unsafe { self.embed_one_avx512(image, scratch, out) };
            }
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked just above.
                return unsafe { self.embed_one_avx2(image, scratch, out) };
            }
        }
        self.embed_one_portable(image, scratch, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn embed_one_avx512(&self, image: &[f32], scratch: &mut Scratch, out: &mut [f32]) {
        self.embed_one_portable(image, scratch, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn embed_one_avx2(&self, image: &[f32], scratch: &mut Scratch, out: &mut [f32]) {
        self.embed_one_portable(image, scratch, out)
    }

    #[inline(always)]
    fn embed_one_portable(&self, image: &[f32], scratch: &mut Scratch, out: &mut [f32]) {
        let plane = INPUT_SIZE * INPUT_SIZE;
        let nhwc = sized(&mut scratch.depthwise, plane * 3);
        for (p, pixel) in nhwc.chunks_exact_mut(3).enumerate() {
            for (c, value) in pixel.iter_mut().enumerate() {
                *value = image[c * plane + p];
            }
        }
        let mut side = stem_patches(&scratch.depthwise, &self.stem, &mut scratch.hidden);
        let x = sized(&mut scratch.x, side * side * self.stem.outputs);
        matmul(&scratch.hidden, side * side, &self.stem, x);
        finish(x, &self.stem.bias, Then::Relu6);

        let mut channels = self.stem.outputs;
        for block in &self.blocks {
            let pixels = side * side;
            let input = &scratch.x[..pixels * channels];
            let expanded: &[f32] = match &block.expand {
                Some(conv) => {
                    let out = sized(&mut scratch.hidden, pixels * conv.outputs);
                    matmul(input, pixels, conv, out);
                    finish(out, &conv.bias, Then::Relu6);
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
            matmul(filtered, out_pixels, &block.project, out);
            let then = if block.residual {
                Then::Residual(input)
            } else {
                Then::Nothing
            };
            finish(out, &block.project.bias, then);
            std::mem::swap(&mut scratch.x, &mut scratch.next);
            side = out_side;
            channels = block.project.outputs;
        }

        // Head conv (1x1, ReLU6), then the mean over the map.
        let pixels = side * side;
        let map = sized(&mut scratch.hidden, pixels * FEATURE_DIM);
        matmul(&scratch.x[..pixels * channels], pixels, &self.head, map);
        finish(map, &self.head.bias, Then::Relu6);
        out.fill(0.0);
        for row in map.chunks_exact(FEATURE_DIM) {
            out.iter_mut().zip(row).for_each(|(o, &v)| *o += v);
        }
        out.iter_mut().for_each(|o| *o /= pixels as f32);
    }

    /// Pooled embeddings of preprocessed images, `images.len() x 1280` row-major; natively,
    /// the images are spread over every core.
    pub fn features(&self, images: &[Vec<f32>]) -> Vec<f32> {
        // Each thread keeps its working memory (about 20 MB) from image to image and call to
        // call: allocating it afresh costs the kernel a page fault per 4 KiB.
        thread_local! {
            static SCRATCH: RefCell<Scratch> = RefCell::default();
        }
        let embed = |(row, image): (&mut [f32], &Vec<f32>)| {
            SCRATCH.with_borrow_mut(|scratch| self.embed_one(image, scratch, row))
        };
        let mut out = vec![0.0; images.len() * FEATURE_DIM];
        #[cfg(not(target_arch = "wasm32"))]
        {
            use rayon::prelude::*;
            out.par_chunks_exact_mut(FEATURE_DIM)
                .zip(images)
                .for_each(embed);
        }
        #[cfg(target_arch = "wasm32")]
        out.chunks_exact_mut(FEATURE_DIM)
            .zip(images)
            .for_each(embed);
        out
    }
}
