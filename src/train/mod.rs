//! Training: embeddings, the head's training loop and the metrics it reports.

pub mod embed;
pub mod fit;
pub mod metrics;

pub use embed::embed_batch;
pub use fit::{
    Embeddings, EpochReport, HeadTrainer, HeadTraining, TrainedHead, evaluate_head, train_head,
};
pub use metrics::{BinaryMetrics, ConfusionMatrix, Evaluation, evaluate, roc_auc};
