//! One error type for the whole core: every message names the file or value at fault.

use std::path::PathBuf;

/// Everything that can go wrong in Graft, phrased for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum GraftError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: not a usable image ({reason})")]
    BadImage { path: String, reason: String },

    #[error("{origin}: not a valid {expected} ({reason})")]
    BadWeights {
        origin: String,
        expected: &'static str,
        reason: String,
    },

    #[error("{origin}: this model was built on backbone '{found}', but Graft runs '{expected}'")]
    WrongBackbone {
        origin: String,
        found: String,
        expected: &'static str,
    },

    #[error("dataset {path}: {reason}")]
    BadDataset { path: PathBuf, reason: String },

    #[error("invalid {name}: {reason}")]
    InvalidOption { name: &'static str, reason: String },

    #[error("device '{name}' is not available: {reason}")]
    DeviceUnavailable { name: String, reason: String },

    #[error("the compute device failed: {reason}")]
    Device { reason: String },
}

impl GraftError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub fn option(name: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidOption {
            name,
            reason: reason.into(),
        }
    }
}

/// A GPU (or CPU) kernel that failed, or a read-back that did not complete.
impl From<burn::tensor::ExecutionError> for GraftError {
    fn from(error: burn::tensor::ExecutionError) -> Self {
        Self::Device {
            reason: format!("{error:?}"),
        }
    }
}

/// Data read back from a device that is not what was expected (dtype or size).
impl From<burn::tensor::DataError> for GraftError {
    fn from(error: burn::tensor::DataError) -> Self {
        Self::Device {
            reason: format!("{error:?}"),
        }
    }
}

pub type Result<T, E = GraftError> = std::result::Result<T, E>;
