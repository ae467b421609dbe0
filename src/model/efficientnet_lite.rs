//! EfficientNet-Lite0, the pretrained ImageNet backbone that every Graft classifier grows from.
//!
//! The port follows the original TensorFlow graph exactly, because the weights were trained
//! with it: TF "SAME" padding (the extra row/column goes bottom/right on stride-2 convs), ReLU6,
//! BatchNorm epsilon 1e-3, no squeeze-excitation, and a residual add only where a block keeps
//! both stride 1 and its channel count. Field names mirror the PyTorch checkpoint with the
//! leading underscores removed, so the converter maps `_blocks.3._bn1.weight` to
//! `blocks.3.bn1.gamma` by name alone.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu6;
use burn::tensor::{Device, Tensor};

/// Side length, in pixels, of the square input the backbone was trained on.
pub const INPUT_SIZE: usize = 224;
/// Width of the pooled embedding that heads are trained on.
pub const FEATURE_DIM: usize = 1280;
/// Number of ImageNet-1k classes predicted by the original head.
pub const IMAGENET_CLASSES: usize = 1000;
/// Number of MBConv blocks.
pub const NUM_BLOCKS: usize = 16;

pub(crate) const STEM_CHANNELS: usize = 32;
pub(crate) const HEAD_CONV_INPUT: usize = 320;
pub(crate) const STEM_KERNEL: usize = 3;
pub(crate) const STEM_STRIDE: usize = 2;
pub(crate) const BN_EPSILON: f64 = 1e-3;

/// One stage of identical MBConv blocks, as in the EfficientNet paper's table.
struct Stage {
    repeats: usize,
    expand_ratio: usize,
    kernel: usize,
    /// Stride of the stage's first block; the others use stride 1.
    stride: usize,
    out_channels: usize,
}

/// EfficientNet-Lite0's stages (width and depth multipliers 1.0).
const STAGES: [Stage; 7] = [
    Stage {
        repeats: 1,
        expand_ratio: 1,
        kernel: 3,
        stride: 1,
        out_channels: 16,
    },
    Stage {
        repeats: 2,
        expand_ratio: 6,
        kernel: 3,
        stride: 2,
        out_channels: 24,
    },
    Stage {
        repeats: 2,
        expand_ratio: 6,
        kernel: 5,
        stride: 2,
        out_channels: 40,
    },
    Stage {
        repeats: 3,
        expand_ratio: 6,
        kernel: 3,
        stride: 2,
        out_channels: 80,
    },
    Stage {
        repeats: 3,
        expand_ratio: 6,
        kernel: 5,
        stride: 1,
        out_channels: 112,
    },
    Stage {
        repeats: 4,
        expand_ratio: 6,
        kernel: 5,
        stride: 2,
        out_channels: 192,
    },
    Stage {
        repeats: 1,
        expand_ratio: 6,
        kernel: 3,
        stride: 1,
        out_channels: 320,
    },
];

/// TensorFlow "SAME" padding for one spatial axis: `(before, after)`.
///
/// TF pads so that `out = ceil(in / stride)`, and puts the odd pixel after (bottom/right).
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let output = input.div_ceil(stride);
    let needed = ((output - 1) * stride + kernel).saturating_sub(input);
    (needed / 2, needed - needed / 2)
}

/// Where a feature map's cells sit on the input: cell `j` of the map after the stem and the
/// first `blocks` blocks is centred on input pixel `stride * (j + 0.5) + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Input pixels per cell.
    pub stride: usize,
    /// Not 0, because "SAME" padding puts the odd pixel after, so every stride-2 layer's window
    /// leans half an input pixel to the bottom right (15.5 px for the last map at 224 px).
    pub offset: f32,
}

impl Grid {
    /// The grid of the map that the stem and the first `blocks` blocks produce.
    pub fn after(blocks: usize) -> Self {
        let mut size = INPUT_SIZE;
        let mut stride = 1;
        let mut offset = 0.0;
        let mut downsample = |kernel: usize, size: &mut usize, stride: &mut usize| {
            let (before, _) = same_padding(*size, kernel, 2);
            // The window's centre is `2 j - before + kernel / 2`; a naive stride-2 cell's is `2 j + 1`.
            offset += *stride as f32 * (kernel as f32 / 2.0 - before as f32 - 1.0);
            *size = size.div_ceil(2);
            *stride *= 2;
        };
        downsample(3, &mut size, &mut stride); // the stem
        let mut first_block = 0;
        for stage in &STAGES {
            if stage.stride == 2 && first_block < blocks {
                downsample(stage.kernel, &mut size, &mut stride);
            }
            first_block += stage.repeats;
        }
        Grid { stride, offset }
    }

    /// Cells per side at the backbone's input size.
    pub fn cells(&self) -> usize {
        INPUT_SIZE.div_ceil(self.stride)
    }
}

/// The number of blocks before the last stride-2 stage: their output is the last map at 14x14
/// (stride 16), the finest one whose channels already carry class evidence.
pub fn blocks_before_last_downsampling() -> usize {
    let last = STAGES
        .iter()
        .rposition(|stage| stage.stride == 2)
        .expect("the backbone downsamples");
    STAGES[..last].iter().map(|stage| stage.repeats).sum()
}

/// Where a detector taps the backbone: after these many blocks the map has stride 8, 16 and
/// 32 (the last block of each such stride), with [`PYRAMID_CHANNELS`] channels.
pub const PYRAMID_TAPS: [usize; 3] = [5, 11, 16];
/// Runs `blocks`, the backbone's blocks from index `first` on, adding to `taps` each output
/// at one of the [`PYRAMID_TAPS`]; returns the last output. A detector's pyramid may so be
/// computed in parts: the frozen blocks, then the fine-tuned ones on the autodiff device.
pub fn run_tapping(
    blocks: &[MbConvBlock],
    first: usize,
    mut x: Tensor<4>,
    taps: &mut Vec<Tensor<4>>,
) -> Tensor<4> {
    for (index, block) in (first..).zip(blocks) {
        x = block.forward(x);
        if PYRAMID_TAPS.contains(&(index + 1)) {
            taps.push(x.clone());
        }
    }
    x
}

/// Channels of the maps at [`PYRAMID_TAPS`].
pub const PYRAMID_CHANNELS: [usize; 3] = [40, 112, 320];
/// Their strides, in input pixels per cell.
pub const PYRAMID_STRIDES: [usize; 3] = [8, 16, 32];

/// One MBConv block's shape: what burn's module ([`EfficientNetLite0::new`]) and the folded CPU
/// path ([`crate::model::CpuBackbone`]) are both built from.
#[derive(Clone, Copy, Debug)]
pub struct BlockShape {
    pub in_channels: usize,
    pub out_channels: usize,
    /// 1 means no expand convolution.
    pub expand_ratio: usize,
    pub kernel: usize,
    pub stride: usize,
    /// The side of the block's (square) input at the network's input size.
    pub input_size: usize,
}

impl BlockShape {
    /// Channels of the expanded map, which the depthwise convolution filters.
    pub fn hidden(&self) -> usize {
        self.in_channels * self.expand_ratio
    }

    /// Whether the block adds its input to its output: only where it keeps both its stride
    /// 1 and its channel count.
    pub fn residual(&self) -> bool {
        self.stride == 1 && self.in_channels == self.out_channels
    }
}

/// The shapes of the [`NUM_BLOCKS`] blocks, in order (the stem halves the input first).
pub fn block_shapes() -> Vec<BlockShape> {
    let mut size = INPUT_SIZE.div_ceil(STEM_STRIDE);
    let mut in_channels = STEM_CHANNELS;
    let mut shapes = Vec::with_capacity(NUM_BLOCKS);
    for stage in &STAGES {
        for repeat in 0..stage.repeats {
            let stride = if repeat == 0 { stage.stride } else { 1 };
            shapes.push(BlockShape {
                in_channels,
                out_channels: stage.out_channels,
                expand_ratio: stage.expand_ratio,
                kernel: stage.kernel,
                stride,
                input_size: size,
            });
            size = size.div_ceil(stride);
            in_channels = stage.out_channels;
        }
    }
    debug_assert_eq!(shapes.len(), NUM_BLOCKS);
    debug_assert_eq!(in_channels, HEAD_CONV_INPUT);
    shapes
}

/// A square convolution with TF "SAME" padding for a known input size, and no bias.
fn same_conv(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    groups: usize,
    input_size: usize,
    device: &Device,
) -> Conv2d {
    let (before, after) = same_padding(input_size, kernel, stride);
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_bias(false)
        .with_padding(PaddingConfig2d::Explicit(before, before, after, after))
        .init(device)
}

fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels)
        .with_epsilon(BN_EPSILON)
        .init(device)
}

/// Mobile inverted bottleneck: 1x1 expand, depthwise kxk, 1x1 linear projection.
#[derive(Module, Debug)]
pub struct MbConvBlock {
    /// Absent when the expand ratio is 1 (block 0).
    pub expand_conv: Option<Conv2d>,
    pub bn0: Option<BatchNorm>,
    pub depthwise_conv: Conv2d,
    pub bn1: BatchNorm,
    pub project_conv: Conv2d,
    pub bn2: BatchNorm,
    pub residual: bool,
}

impl MbConvBlock {
    fn new(shape: BlockShape, device: &Device) -> Self {
        let hidden = shape.hidden();
        let (expand_conv, bn0) = if shape.expand_ratio == 1 {
            (None, None)
        } else {
            (
                Some(same_conv(
                    [shape.in_channels, hidden],
                    1,
                    1,
                    1,
                    shape.input_size,
                    device,
                )),
                Some(batch_norm(hidden, device)),
            )
        };
        Self {
            expand_conv,
            bn0,
            depthwise_conv: same_conv(
                [hidden, hidden],
                shape.kernel,
                shape.stride,
                hidden,
                shape.input_size,
                device,
            ),
            bn1: batch_norm(hidden, device),
            project_conv: same_conv(
                [hidden, shape.out_channels],
                1,
                1,
                1,
                shape.input_size.div_ceil(shape.stride),
                device,
            ),
            bn2: batch_norm(shape.out_channels, device),
            residual: shape.residual(),
        }
    }

    /// # Shapes
    /// - input: `[batch, in_channels, h, w]`
    /// - output: `[batch, out_channels, h / stride, w / stride]`
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut x = input.clone();
        if let (Some(conv), Some(bn)) = (&self.expand_conv, &self.bn0) {
            x = relu6(bn.forward(conv.forward(x)));
        }
        x = relu6(self.bn1.forward(self.depthwise_conv.forward(x)));
        x = self.bn2.forward(self.project_conv.forward(x));
        if self.residual { x + input } else { x }
    }
}

/// The backbone: stem, 16 MBConv blocks, 1x1 head conv to 1280 channels and average pool.
#[derive(Module, Debug)]
pub struct EfficientNetLite0 {
    pub conv_stem: Conv2d,
    pub bn0: BatchNorm,
    pub blocks: Vec<MbConvBlock>,
    pub conv_head: Conv2d,
    pub bn1: BatchNorm,
}

/// The original network's ImageNet-1k classifier on the pooled embedding (dropout is the
/// identity at inference). Training never uses it, so it lives in a file of its own
/// (`graft predict --imagenet`, which checks the backbone by eye) and the backbone file every
/// browser downloads leaves its 5 MB out.
#[derive(Module, Debug)]
pub struct ImageNetClassifier {
    pub fc: Linear,
}

impl ImageNetClassifier {
    /// Untrained weights; load real ones with [`crate::weights::load_imagenet_classifier`].
    pub fn new(device: &Device) -> Self {
        Self {
            fc: LinearConfig::new(FEATURE_DIM, IMAGENET_CLASSES).init(device),
        }
    }

    /// ImageNet-1k logits of embeddings.
    ///
    /// # Shapes
    /// - features: `[batch, 1280]`; output: `[batch, 1000]`
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        self.fc.forward(features)
    }
}

/// The backbone's end from some block on, before pooling: `blocks`, then the head conv with
/// its BatchNorm and ReLU6. The whole backbone and a fine-tuned tail share it.
///
/// # Shapes
/// - output: `[batch, 1280, 7, 7]`, the last feature map (what explanations are made of)
pub(crate) fn feature_map_end(
    blocks: &[MbConvBlock],
    conv_head: &Conv2d,
    bn1: &BatchNorm,
    activations: Tensor<4>,
) -> Tensor<4> {
    let mut x = activations;
    for block in blocks {
        x = block.forward(x);
    }
    relu6(bn1.forward(conv_head.forward(x)))
}

/// The global average pool that turns the last feature map into the embedding.
pub fn global_pool(feature_map: Tensor<4>) -> Tensor<2> {
    feature_map.mean_dims(&[2, 3]).flatten(1, 3)
}

/// [`feature_map_end`], pooled: `[batch, 1280]`.
pub(crate) fn forward_end(
    blocks: &[MbConvBlock],
    conv_head: &Conv2d,
    bn1: &BatchNorm,
    activations: Tensor<4>,
) -> Tensor<2> {
    global_pool(feature_map_end(blocks, conv_head, bn1, activations))
}

impl EfficientNetLite0 {
    /// Builds the architecture with untrained weights; load real ones with
    /// [`crate::weights::load_backbone`].
    pub fn new(device: &Device) -> Self {
        Self {
            conv_stem: same_conv(
                [3, STEM_CHANNELS],
                STEM_KERNEL,
                STEM_STRIDE,
                1,
                INPUT_SIZE,
                device,
            ),
            bn0: batch_norm(STEM_CHANNELS, device),
            blocks: block_shapes()
                .into_iter()
                .map(|shape| MbConvBlock::new(shape, device))
                .collect(),
            conv_head: same_conv(
                [HEAD_CONV_INPUT, FEATURE_DIM],
                1,
                1,
                1,
                Grid::after(NUM_BLOCKS).cells(),
                device,
            ),
            bn1: batch_norm(FEATURE_DIM, device),
        }
    }

    /// Stem and the first `count` blocks: the part that stays frozen when fine-tuning.
    ///
    /// # Shapes
    /// - images: `[batch, 3, 224, 224]`, normalised with `(x - 127) / 128`
    pub fn forward_prefix(&self, images: Tensor<4>, count: usize) -> Tensor<4> {
        let mut x = relu6(self.bn0.forward(self.conv_stem.forward(images)));
        for block in &self.blocks[..count] {
            x = block.forward(x);
        }
        x
    }

    /// Blocks from `start` on, the head conv and the average pool.
    ///
    /// # Shapes
    /// - output: `[batch, 1280]`
    pub fn forward_suffix(&self, activations: Tensor<4>, start: usize) -> Tensor<2> {
        forward_end(
            &self.blocks[start..],
            &self.conv_head,
            &self.bn1,
            activations,
        )
    }

    /// The pooled 1280-d embedding, what every Graft head is trained on.
    ///
    /// # Shapes
    /// - images: `[batch, 3, 224, 224]`
    /// - output: `[batch, 1280]`
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let prefix = self.forward_prefix(images, NUM_BLOCKS);
        self.forward_suffix(prefix, NUM_BLOCKS)
    }

    /// The maps at [`PYRAMID_TAPS`], finest first: what a detector is built on. Any input
    /// side that is a multiple of 32 works: every stride-2 layer then sees an even size, for
    /// which "SAME" padding is the same as at 224.
    ///
    /// # Shapes
    /// - images: `[batch, 3, side, side]`
    /// - output: `[batch, PYRAMID_CHANNELS[l], side / PYRAMID_STRIDES[l], ..]` for each level
    pub fn pyramid(&self, images: Tensor<4>) -> [Tensor<4>; 3] {
        let mut taps = Vec::with_capacity(PYRAMID_TAPS.len());
        run_tapping(
            &self.blocks[..PYRAMID_TAPS[2]],
            0,
            self.forward_prefix(images, 0),
            &mut taps,
        );
        taps.try_into().expect("one map per tap")
    }

    /// The last feature map, before the pool: [`Self::features`] is its spatial mean.
    ///
    /// # Shapes
    /// - images: `[batch, 3, 224, 224]`
    /// - output: `[batch, 1280, 7, 7]`
    pub fn feature_map(&self, images: Tensor<4>) -> Tensor<4> {
        let prefix = self.forward_prefix(images, NUM_BLOCKS);
        feature_map_end(&[], &self.conv_head, &self.bn1, prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_taps_end_each_stride() {
        let shapes = block_shapes();
        for ((&tap, &channels), &stride) in PYRAMID_TAPS
            .iter()
            .zip(&PYRAMID_CHANNELS)
            .zip(&PYRAMID_STRIDES)
        {
            assert_eq!(shapes[tap - 1].out_channels, channels);
            assert_eq!(Grid::after(tap).stride, stride);
            if tap < NUM_BLOCKS {
                assert_eq!(shapes[tap].stride, 2, "block {tap} starts the next stride");
            }
        }
    }

    #[test]
    fn feature_map_cells_lean_to_the_bottom_right() {
        // Stem (0.5 px) + four stride-2 stages at scales 2, 4, 8 and 16: 15.5 input pixels.
        let last = Grid::after(NUM_BLOCKS);
        assert_eq!((last.stride, last.cells(), last.offset), (32, 7, 15.5));
        // Before the last stride-2 stage (blocks 11-14): 0.5 + 1 + 2 + 4 = 7.5 px.
        assert_eq!(blocks_before_last_downsampling(), 11);
        let fine = Grid::after(11);
        assert_eq!((fine.stride, fine.cells(), fine.offset), (16, 14, 7.5));
        // The stem alone.
        assert_eq!(
            Grid::after(0),
            Grid {
                stride: 2,
                offset: 0.5
            }
        );
    }

    #[test]
    fn same_padding_matches_tensorflow() {
        // Stride 2 on even input: the odd pixel goes after.
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(56, 5, 2), (1, 2));
        // Stride 2 on odd input is symmetric.
        assert_eq!(same_padding(7, 3, 2), (1, 1));
        // Stride 1 keeps the size.
        assert_eq!(same_padding(14, 5, 1), (2, 2));
        assert_eq!(same_padding(14, 1, 1), (0, 0));
    }

    #[test]
    fn architecture_has_the_published_parameter_count() {
        let model = EfficientNetLite0::new(&Device::flex());
        // 4,652,008 learnable parameters in the checkpoint; burn also counts the BN running
        // statistics, which the checkpoint stores as buffers.
        let running_stats: usize = 2 * (32 + 1280)
            + model
                .blocks
                .iter()
                .map(|b| {
                    let bn0 = b.bn0.as_ref().map_or(0, |bn| bn.gamma.dims()[0]);
                    2 * (bn0 + b.bn1.gamma.dims()[0] + b.bn2.gamma.dims()[0])
                })
                .sum::<usize>();
        // The ImageNet classifier (1280 x 1000 + 1000) is a module of its own.
        let classifier = ImageNetClassifier::new(&Device::flex()).num_params();
        assert_eq!(classifier, 1_281_000);
        assert_eq!(model.blocks.len(), NUM_BLOCKS);
        assert_eq!(model.num_params() + classifier - running_stats, 4_652_008);
    }
}
