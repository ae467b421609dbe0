//! The trainable end of the backbone. A classifier's is its last K MBConv blocks and the 1x1
//! head conv with its BatchNorm ([`BackboneTail`]); a detector's, its last K blocks alone
//! ([`PyramidTail`]): it taps the blocks' maps and never uses the head conv. Fine-tuning trains
//! a tail (with the head) while the rest of the backbone stays frozen, and a fine-tuned file
//! stores exactly the tail on top of the head.

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use super::efficientnet_lite::{
    EfficientNetLite0, MbConvBlock, NUM_BLOCKS, PYRAMID_TAPS, forward_end, run_tapping,
};
use crate::error::{GraftError, Result};

/// Blocks `NUM_BLOCKS - blocks.len()..NUM_BLOCKS` of the backbone, then `conv_head` and `bn1`.
#[derive(Module, Debug)]
pub struct BackboneTail {
    pub blocks: Vec<MbConvBlock>,
    pub conv_head: Conv2d,
    pub bn1: BatchNorm,
}

/// Checks a number of blocks to fine-tune, naming the option when it is out of range.
pub fn check_tail_blocks(blocks: usize) -> Result<()> {
    if blocks == 0 || blocks > NUM_BLOCKS {
        return Err(GraftError::option(
            "fineTuneBlocks",
            format!("{blocks} (use 1 to {NUM_BLOCKS}; 0 means head only)"),
        ));
    }
    Ok(())
}

impl BackboneTail {
    /// A copy of the backbone's last `blocks` blocks and head conv (tensors are shared until
    /// trained, so this costs no memory).
    pub fn of(backbone: &EfficientNetLite0, blocks: usize) -> Result<Self> {
        check_tail_blocks(blocks)?;
        Ok(Self {
            blocks: backbone.blocks[NUM_BLOCKS - blocks..].to_vec(),
            conv_head: backbone.conv_head.clone(),
            bn1: backbone.bn1.clone(),
        })
    }

    /// The architecture with untrained weights, to load a model file's tail into.
    pub fn untrained(blocks: usize, device: &Device) -> Result<Self> {
        Self::of(&EfficientNetLite0::new(device), blocks)
    }

    /// Index of the first backbone block this tail replaces.
    pub fn first_block(&self) -> usize {
        NUM_BLOCKS - self.blocks.len()
    }

    /// The backbone with this tail in place of its own last blocks and head conv.
    pub fn graft_onto(&self, mut backbone: EfficientNetLite0) -> EfficientNetLite0 {
        let first = self.first_block();
        backbone.blocks.truncate(first);
        backbone.blocks.extend(self.blocks.iter().cloned());
        backbone.conv_head = self.conv_head.clone();
        backbone.bn1 = self.bn1.clone();
        backbone
    }

    /// # Shapes
    /// - activations: the output of [`EfficientNetLite0::forward_prefix`] with
    ///   `count = first_block()`
    /// - output: `[batch, 1280]` pooled features
    pub fn forward(&self, activations: Tensor<4>) -> Tensor<2> {
        forward_end(&self.blocks, &self.conv_head, &self.bn1, activations)
    }
}

/// A detector's fine-tuned blocks: `NUM_BLOCKS - blocks.len()..NUM_BLOCKS` of the backbone.
#[derive(Module, Debug)]
pub struct PyramidTail {
    pub blocks: Vec<MbConvBlock>,
}

impl PyramidTail {
    /// A copy of the backbone's last `blocks` blocks (tensors shared until trained).
    pub fn of(backbone: &EfficientNetLite0, blocks: usize) -> Result<Self> {
        check_tail_blocks(blocks)?;
        Ok(Self {
            blocks: backbone.blocks[NUM_BLOCKS - blocks..].to_vec(),
        })
    }

    /// The architecture with untrained weights, to load a detector file's tail into.
    pub fn untrained(blocks: usize, device: &Device) -> Result<Self> {
        Self::of(&EfficientNetLite0::new(device), blocks)
    }

    /// Index of the first backbone block this tail replaces.
    pub fn first_block(&self) -> usize {
        NUM_BLOCKS - self.blocks.len()
    }

    /// The backbone with this tail in place of its own last blocks.
    pub fn graft_onto(&self, mut backbone: EfficientNetLite0) -> EfficientNetLite0 {
        backbone.blocks.truncate(self.first_block());
        backbone.blocks.extend(self.blocks.iter().cloned());
        backbone
    }

    /// Completes a pyramid: `activations` is the output of `first_block()` blocks and `taps`
    /// the maps tapped among them; this tail's blocks add the rest.
    pub fn pyramid_from(
        &self,
        activations: Tensor<4>,
        mut taps: Vec<Tensor<4>>,
    ) -> [Tensor<4>; PYRAMID_TAPS.len()] {
        run_tapping(&self.blocks, self.first_block(), activations, &mut taps);
        taps.try_into().expect("one map per tap")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_matches_the_backbone_suffix_and_grafts_back() {
        let device = Device::flex();
        let backbone = EfficientNetLite0::new(&device);
        let tail = BackboneTail::of(&backbone, 2).unwrap();
        assert_eq!(tail.first_block(), 14);
        let x = Tensor::<4>::ones([1, 192, 7, 7], &device);
        let a = tail.forward(x.clone()).into_data();
        let b = backbone.forward_suffix(x, 14).into_data();
        assert_eq!(a, b);
        let grafted = tail.graft_onto(EfficientNetLite0::new(&device));
        assert_eq!(grafted.blocks.len(), NUM_BLOCKS);
        assert!(BackboneTail::of(&backbone, 0).is_err());
        assert!(BackboneTail::of(&backbone, 17).is_err());
    }

    /// The pyramid of a backbone with a tuned tail grafted on is the pyramid computed in two
    /// parts, whichever tap the split falls next to.
    #[test]
    fn a_pyramid_tail_completes_the_pyramid() {
        let device = Device::flex();
        let backbone = EfficientNetLite0::new(&device);
        let images = Tensor::<4>::ones([1, 3, 64, 64], &device);
        let whole = backbone.pyramid(images.clone()).map(|m| m.into_data());
        for blocks in [1, 5, 6, 11, 16] {
            let tail = PyramidTail::of(&backbone, blocks).unwrap();
            let first = tail.first_block();
            let mut taps = Vec::new();
            let x = run_tapping(
                &backbone.blocks[..first],
                0,
                backbone.forward_prefix(images.clone(), 0),
                &mut taps,
            );
            let parts = tail.pyramid_from(x, taps).map(|m| m.into_data());
            assert_eq!(parts, whole, "{blocks} tuned blocks");
            let grafted = tail.graft_onto(EfficientNetLite0::new(&device));
            assert_eq!(grafted.blocks.len(), NUM_BLOCKS);
        }
        assert!(PyramidTail::of(&backbone, 0).is_err());
    }
}
