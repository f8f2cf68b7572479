//! Why a summary was refused: [`ValidationError`], which names the offending field.

/// Why a summary was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The summary was written with a schema this build does not know.
    #[error("schema_version {found} is not supported (supported: {supported})")]
    UnsupportedSchema {
        /// The version in the summary.
        found: u32,
        /// The version this build understands.
        supported: u32,
    },
    /// A field has an invalid value.
    #[error("{field}: {reason}")]
    Invalid {
        /// JSON path of the field, e.g. `summary.containers[2].cpu_cores.p99`.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ValidationError {
    /// The JSON path of the offending field.
    pub fn field(&self) -> &str {
        match self {
            Self::UnsupportedSchema { .. } => "schema_version",
            Self::Invalid { field, .. } => field,
        }
    }
}

pub(super) type Result<T = ()> = std::result::Result<T, ValidationError>;

/// The error of a field with a wrong value.
pub(super) fn invalid(field: impl Into<String>, reason: &'static str) -> ValidationError {
    ValidationError::Invalid {
        field: field.into(),
        reason,
    }
}
