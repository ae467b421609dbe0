//! Training: embeddings, the head's training loop (phase 1), fine-tuning the backbone's tail
//! (phase 2), and the metrics both report.

pub mod embed;
pub mod finetune;
pub mod fit;
pub mod metrics;
pub mod plan;
mod prefix_cache;

pub use embed::embed_batch;
pub use finetune::{FineTuned, FineTuner, Part};
pub use fit::{
    Embeddings, EpochReport, HeadTrainer, HeadTraining, TrainedHead, evaluate_head, train_head,
};
pub use metrics::{BinaryMetrics, ConfusionMatrix, Evaluation, evaluate, roc_auc};
pub use plan::{Balance, EarlyStopping, FineTunePlan};
