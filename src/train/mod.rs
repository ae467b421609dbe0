//! Training: the recipe ([`session`]) and its parts: the options, the head solved to
//! convergence on cached embeddings (phase 1), fine-tuning the backbone's tail (phase 2), and
//! the metrics both report.

pub mod embed;
pub mod embeddings;
pub mod examples;
pub mod finetune;
pub mod head_fit;
pub mod lbfgs;
pub mod limits;
pub mod metrics;
pub mod options;
pub mod plan;
mod prefix_cache;
pub mod session;

pub use embed::Embedder;
pub use embeddings::Embeddings;
pub use examples::{ClassCount, ExampleStore};
pub use finetune::{EpochReport, FineTuned, FineTuner, Part};
pub use metrics::{
    BinaryMetrics, Confusion, ConfusionMatrix, Evaluation, FULL_DETAIL_MAX_CLASSES, evaluate,
    roc_auc,
};
pub use options::TrainOptions;
pub use plan::{Balance, EarlyStopping, FineTunePlan};
pub use session::{
    Example, ImageSource, Observer, SkippedImage, TrainEvent, TrainReport, Trained, TrainingSet,
    train,
};
