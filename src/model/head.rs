//! The grafted head: the only part of the network that learns the user's classes.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

use super::efficientnet_lite::FEATURE_DIM;
use crate::data::SeededRng;
use crate::error::Result;

/// Shape of a new head. Stored in every model file so the head can be rebuilt before loading.
#[derive(Config, Debug, PartialEq)]
pub struct HeadConfig {
    /// Number of the user's classes.
    pub num_classes: usize,
    /// Width of an optional hidden layer (ReLU); `None` is a single linear layer.
    #[config(default = "None")]
    pub hidden_units: Option<usize>,
}

/// `embedding -> [Linear -> ReLU ->] Linear -> logits`.
///
/// Dropout is applied by the training loop to the embeddings it feeds in, with masks from the
/// seeded generator, so the head itself is a pure function and training repeats exactly.
#[derive(Module, Debug)]
pub struct ClassifierHead {
    pub hidden: Option<Linear>,
    pub output: Linear,
}

/// A linear layer with PyTorch's default initialisation, `U(-1/sqrt(in), 1/sqrt(in))`, drawn
/// from our own generator: burn's device generator is shared by every thread using the
/// device, so seeding it does not make a run repeatable.
fn seeded_linear(inputs: usize, outputs: usize, rng: &mut SeededRng, device: &Device) -> Linear {
    let bound = 1.0 / (inputs as f32).sqrt();
    let weight = TensorData::new(rng.uniform(inputs * outputs, bound), [inputs, outputs]);
    let bias = TensorData::new(rng.uniform(outputs, bound), [outputs]);
    Linear {
        weight: Param::from_tensor(Tensor::from_data(weight, device)),
        bias: Some(Param::from_tensor(Tensor::from_data(bias, device))),
    }
}

impl HeadConfig {
    /// A new head whose initial weights depend only on `seed`.
    pub fn init(&self, device: &Device, seed: u64) -> ClassifierHead {
        let mut rng = SeededRng::new(seed);
        let (hidden, output_inputs) = match self.hidden_units {
            Some(units) => (
                Some(seeded_linear(FEATURE_DIM, units, &mut rng, device)),
                units,
            ),
            None => (None, FEATURE_DIM),
        };
        ClassifierHead {
            hidden,
            output: seeded_linear(output_inputs, self.num_classes, &mut rng, device),
        }
    }
}

/// Reads a layer back from its device without blocking (WebGPU can only read asynchronously)
/// and rebuilds it on `device`.
async fn linear_to(linear: &Linear, device: &Device) -> Result<Linear> {
    let weight = linear.weight.val().into_data_async().await?;
    let bias = match &linear.bias {
        Some(bias) => Some(bias.val().into_data_async().await?),
        None => None,
    };
    Ok(Linear {
        weight: Param::from_data(weight, device),
        bias: bias.map(|b| Param::from_data(b, device)),
    })
}

impl ClassifierHead {
    /// A copy of the head on `device`, read without blocking: saving a head trained on WebGPU
    /// goes through a CPU copy, because the file writer reads tensors synchronously.
    pub async fn copy_to(&self, device: &Device) -> Result<ClassifierHead> {
        let hidden = match &self.hidden {
            Some(hidden) => Some(linear_to(hidden, device).await?),
            None => None,
        };
        Ok(ClassifierHead {
            hidden,
            output: linear_to(&self.output, device).await?,
        })
    }

    /// # Shapes
    /// - embeddings: `[batch, 1280]`
    /// - output: `[batch, num_classes]` (logits)
    pub fn forward(&self, embeddings: Tensor<2>) -> Tensor<2> {
        let mut x = embeddings;
        if let Some(hidden) = &self.hidden {
            x = relu(hidden.forward(x));
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
            let head = HeadConfig::new(3)
                .with_hidden_units(hidden_units)
                .init(&device, 0);
            let logits = head.forward(Tensor::zeros([5, FEATURE_DIM], &device));
            assert_eq!(logits.dims(), [5, 3]);
        }
    }

    #[test]
    fn initial_weights_depend_only_on_the_seed() {
        let device = Device::flex();
        let weights = |seed| -> Vec<f32> {
            let head = HeadConfig::new(2).init(&device, seed);
            head.output.weight.val().into_data().try_to_vec().unwrap()
        };
        assert_eq!(weights(1), weights(1));
        assert_ne!(weights(1), weights(2));
        let bound = 1.0 / (FEATURE_DIM as f32).sqrt();
        assert!(weights(3).iter().all(|w| w.abs() <= bound));
    }
}
