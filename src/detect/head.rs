//! The detection head: FCOS ("Fully Convolutional One-Stage", Tian et al. 2019) on the
//! backbone's maps at strides 8, 16 and 32.
//!
//! Each level's map is projected to [`HeadConfig::channels`] channels and the coarser levels are
//! added into the finer ones (a top-down feature pyramid), so the stride-8 map, whose 40
//! channels alone know little about objects, borrows the deeper maps' meaning. One tower of 3x3
//! convolutions, shared by the levels, then predicts for every cell of every level a score per
//! class, the distances from the cell's centre to the object's four sides (in cells) and how
//! central the cell is in its object.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, TensorData};

use crate::data::split::SeededRng;
use crate::model::efficientnet_lite::PYRAMID_CHANNELS;

/// Levels of the pyramid the head predicts on.
pub const LEVELS: usize = PYRAMID_CHANNELS.len();
/// A class score's starting bias: every cell starts out believing it sees background with
/// probability 0.99, so the first steps are not swamped by the easy negatives (FCOS, RetinaNet).
const PRIOR_PROBABILITY: f32 = 0.01;
/// Groups of the tower's normalisation (FCOS uses 32 for 256 channels).
pub const GROUPS: usize = 16;

/// The head's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadConfig {
    pub classes: usize,
    /// Width of the pyramid and the tower, a multiple of [`GROUPS`].
    pub channels: usize,
    /// 3x3 convolutions in the shared tower.
    pub tower: usize,
}

impl HeadConfig {
    pub const DEFAULT_CHANNELS: usize = 64;
    pub const DEFAULT_TOWER: usize = 2;

    pub fn new(classes: usize) -> Self {
        Self {
            classes,
            channels: Self::DEFAULT_CHANNELS,
            tower: Self::DEFAULT_TOWER,
        }
    }

    /// A new head whose initial weights depend only on `seed`.
    pub fn init(&self, device: &Device, seed: u64) -> DetectionHead {
        let mut rng = SeededRng::new(seed);
        let c = self.channels;
        let prior = -((1.0 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY).ln();
        DetectionHead {
            laterals: PYRAMID_CHANNELS
                .iter()
                .map(|&inputs| seeded_conv([inputs, c], 1, 0.0, &mut rng, device))
                .collect(),
            tower: (0..self.tower)
                .map(|_| seeded_conv([c, c], 3, 0.0, &mut rng, device))
                .collect(),
            norms: (0..self.tower)
                .map(|_| GroupNormConfig::new(GROUPS, c).init(device))
                .collect(),
            classes: seeded_conv([c, self.classes], 3, prior, &mut rng, device),
            sides: seeded_conv([c, 4], 3, 0.0, &mut rng, device),
            centredness: seeded_conv([c, 1], 3, 0.0, &mut rng, device),
        }
    }
}

/// A convolution with "same" padding, its weights drawn as PyTorch's default from our own
/// generator (burn's is shared by every thread, so seeding it repeats nothing), its bias `bias`.
fn seeded_conv(
    [inputs, outputs]: [usize; 2],
    kernel: usize,
    bias: f32,
    rng: &mut SeededRng,
    device: &Device,
) -> Conv2d {
    let mut conv = Conv2dConfig::new([inputs, outputs], [kernel, kernel])
        .with_padding(PaddingConfig2d::Same)
        .init(device);
    let fan_in = inputs * kernel * kernel;
    let weight = rng.uniform(outputs * fan_in, 1.0 / (fan_in as f32).sqrt());
    conv.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(weight, [outputs, inputs, kernel, kernel]),
        device,
    ));
    conv.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(vec![bias; outputs], [outputs]),
        device,
    )));
    conv
}

/// See the module's documentation.
#[derive(Module, Debug)]
pub struct DetectionHead {
    pub laterals: Vec<Conv2d>,
    pub tower: Vec<Conv2d>,
    /// Group normalisation after each tower convolution (as FCOS): the levels' maps differ in
    /// scale, and it lets a fresh head take a high learning rate.
    pub norms: Vec<GroupNorm>,
    pub classes: Conv2d,
    pub sides: Conv2d,
    pub centredness: Conv2d,
}

/// The raw predictions for one level.
///
/// # Shapes
/// - classes: `[batch, classes, rows, cols]`, logits
/// - sides: `[batch, 4, rows, cols]`, the log of the distances left, top, right, bottom in cells
/// - centredness: `[batch, 1, rows, cols]`, a logit
#[derive(Debug, Clone)]
pub struct LevelOutput {
    pub classes: Tensor<4>,
    pub sides: Tensor<4>,
    pub centredness: Tensor<4>,
}

impl DetectionHead {
    pub fn config(&self) -> HeadConfig {
        let [classes, channels, _, _] = self.classes.weight.dims();
        HeadConfig {
            classes,
            channels,
            tower: self.tower.len(),
        }
    }

    /// Predictions for the backbone's pyramid ([`crate::model::EfficientNetLite0::pyramid`]).
    pub fn forward(&self, pyramid: [Tensor<4>; LEVELS]) -> [LevelOutput; LEVELS] {
        let mut projected: Vec<Tensor<4>> = pyramid
            .into_iter()
            .zip(&self.laterals)
            .map(|(map, lateral)| lateral.forward(map))
            .collect();
        // Top-down: each level gets the next coarser one, upsampled to its size.
        for level in (0..LEVELS - 1).rev() {
            let [_, _, rows, cols] = projected[level].dims();
            let coarser = interpolate(
                projected[level + 1].clone(),
                InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([rows, cols]),
            );
            projected[level] = projected[level].clone() + coarser;
        }
        let outputs: Vec<LevelOutput> = projected
            .into_iter()
            .map(|map| {
                let features = self
                    .tower
                    .iter()
                    .zip(&self.norms)
                    .fold(map, |x, (conv, norm)| relu(norm.forward(conv.forward(x))));
                LevelOutput {
                    classes: self.classes.forward(features.clone()),
                    sides: self.sides.forward(features.clone()),
                    centredness: self.centredness.forward(features),
                }
            })
            .collect();
        outputs.try_into().expect("one output per level")
    }
}
