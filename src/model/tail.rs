//! The trainable end of the backbone: its last K MBConv blocks and the 1x1 head conv with its
//! BatchNorm. Fine-tuning trains this (with the head) while the rest of the backbone stays
//! frozen, and a fine-tuned model file stores exactly this on top of the head.

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor};

use super::efficientnet_lite::{EfficientNetLite0, MbConvBlock, NUM_BLOCKS, forward_end};
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
}
