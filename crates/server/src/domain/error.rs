//! Why a business rule refused a request: one error for the domain, turned into an HTTP
//! answer at the API's edge (a 422 with the rule's code) and into a message by the CLI.

use crate::store::StoreError;

/// A refusal by a rule of the product, or a failure underneath it.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The input breaks a rule: `code` is stable (`invalid_title`, `invalid_channel`, ...),
    /// `message` says what was wrong and what to do.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// The storage failed underneath the rule.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something that should not happen (a stored secret that does not open); the detail is
    /// for the log, never for the caller.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            code,
            message: message.into(),
        }
    }

    /// The rule's stable code (`internal` and `storage` for the others).
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Invalid { code, .. } => code,
            DomainError::Store(_) => "storage",
            DomainError::Internal(_) => "internal",
        }
    }
}
