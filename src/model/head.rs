//! The grafted head: the only part of the network that learns the user's classes.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::efficientnet_lite::FEATURE_DIM;

/// Shape of a new head. Stored in every model file so the head can be rebuilt before loading.
#[derive(Config, Debug, PartialEq)]
pub struct HeadConfig {
    /// Number of the user's classes.
    pub num_classes: usize,
    /// Width of an optional hidden layer (ReLU); `None` is a single linear layer.
    #[config(default = "None")]
    pub hidden_units: Option<usize>,
    /// Dropout on the embedding during training, as in the original EfficientNet head.
    #[config(default = 0.2)]
    pub dropout: f64,
}

/// `embedding -> [Linear -> ReLU ->] Linear -> logits`, with dropout before each linear layer.
#[derive(Module, Debug)]
pub struct ClassifierHead {
    pub hidden: Option<Linear>,
    pub output: Linear,
    pub dropout: Dropout,
}

impl HeadConfig {
    pub fn init(&self, device: &Device) -> ClassifierHead {
        let (hidden, output_inputs) = match self.hidden_units {
            Some(units) => (Some(LinearConfig::new(FEATURE_DIM, units).init(device)), units),
            None => (None, FEATURE_DIM),
        };
        ClassifierHead {
            hidden,
            output: LinearConfig::new(output_inputs, self.num_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

impl ClassifierHead {
    /// # Shapes
    /// - embeddings: `[batch, 1280]`
    /// - output: `[batch, num_classes]` (logits)
    pub fn forward(&self, embeddings: Tensor<2>) -> Tensor<2> {
        let mut x = self.dropout.forward(embeddings);
        if let Some(hidden) = &self.hidden {
            x = self.dropout.forward(relu(hidden.forward(x)));
        }
        self.output.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_maps_embeddings_to_class_logits() {
        let device = Device::flex();
        for hidden_units in [None, Some(64)] {
            let head = HeadConfig::new(3).with_hidden_units(hidden_units).init(&device);
            let logits = head.forward(Tensor::zeros([5, FEATURE_DIM], &device));
            assert_eq!(logits.dims(), [5, 3]);
        }
    }
}
