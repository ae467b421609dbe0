//! One error type for the whole core: every message names the file or value at fault, and
//! every kind has a stable code ([`GraftError::code`]) that programs match instead of the text.

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

    #[error("there is no {what} '{name}'")]
    NotFound { what: &'static str, name: String },

    #[error("a {what} '{name}' already exists")]
    AlreadyExists { what: &'static str, name: String },

    #[error("'{id}' is the same image as {existing}")]
    DuplicateImage { id: String, existing: String },

    #[error("there is no trained model yet: train one or load a model file first")]
    NoModel,

    #[error("{what}: too many to train ({reason})")]
    TooLarge { what: String, reason: String },
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

    /// A stable code for programs, e.g. the JavaScript API's `error.code` (documented in
    /// `pkg/graft.d.ts`); messages are for people and may change.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "IO_ERROR",
            Self::BadImage { .. } => "BAD_IMAGE",
            Self::BadWeights { .. } => "BAD_FILE",
            Self::WrongBackbone { .. } => "WRONG_BACKBONE",
            Self::BadDataset { .. } => "BAD_DATASET",
            Self::InvalidOption { .. } => "INVALID_OPTION",
            Self::DeviceUnavailable { .. } => "DEVICE_UNAVAILABLE",
            Self::Device { .. } => "DEVICE_FAILED",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::AlreadyExists { .. } | Self::DuplicateImage { .. } => "ALREADY_EXISTS",
            Self::NoModel => "NO_MODEL",
            Self::TooLarge { .. } => "TOO_LARGE",
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
