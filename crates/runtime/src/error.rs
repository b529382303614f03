//! The one mapping from domain errors to `tonic::Status`.
//!
//! Every service returns [`Error`] from its domain and storage code and
//! converts it to a `Status` only at the gRPC edge, through the `From` impl
//! below. The set of kinds is small and closed, and the `match` has no `_`
//! arm: a new kind forces a decision about its status code.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// One field of a request that is wrong, and why, in words a caller can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in the request, for example `touchpoint.channel`.
    pub field: String,
    /// What is wrong with it and what is accepted.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// What can go wrong in a Cairn service, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the violations say which fields and why.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The named resource does not exist.
    #[error("{kind} {name} not found")]
    NotFound {
        /// The kind of resource, for example "profile".
        kind: &'static str,
        /// Its id or the reference the caller used.
        name: String,
    },
    /// The resource the caller wants to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The system is not in a state in which the request can be carried out.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A concurrent change won; the caller may retry the whole operation.
    #[error("{0}")]
    Aborted(String),
    /// A quota or size limit was reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A position or range lies outside what is held (for example an expired cursor).
    #[error("{0}")]
    OutOfRange(String),
    /// The caller presented no valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's credentials do not allow this call.
    #[error("{0}")]
    PermissionDenied(String),
    /// A store or another service cannot be reached now; retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// The call was cut short by its deadline.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A fault of ours. The detail is logged, never sent to the caller.
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// An INVALID_ARGUMENT error about one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// A NOT_FOUND error about the resource `kind` named `name`.
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            name: name.into(),
        }
    }

    /// An internal fault, logged with its detail; the caller sees only that it happened.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }

    /// The error with its field paths placed under `parent` (`stages[0]`
    /// becomes `definition.stages[0]`), so that a check written for a part
    /// names the field as the caller sent it.
    pub fn within(self, parent: &str) -> Self {
        match self {
            Self::InvalidArgument(violations) => Self::InvalidArgument(
                violations
                    .into_iter()
                    .map(|v| FieldViolation::new(format!("{parent}.{}", v.field), v.description))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Collects field violations while a request is checked, so that a caller
/// hears about every bad field at once rather than one per round trip.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is wrong.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Runs a check and keeps its violations, returning its value when it passed.
    pub fn check<T>(&mut self, result: Result<T, Error>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(Error::InvalidArgument(mut found)) => {
                self.0.append(&mut found);
                None
            }
            Err(other) => {
                self.0.push(FieldViolation::new("", other.to_string()));
                None
            }
        }
    }

    /// Ok when nothing was recorded, else INVALID_ARGUMENT with every violation.
    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(self.0))
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => {
                let message = format!("invalid request: {}", describe(&violations));
                let mut details = ErrorDetails::new();
                for violation in &violations {
                    details.add_bad_request_violation(&violation.field, &violation.description);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            error @ Error::NotFound { .. } => Status::not_found(error.to_string()),
            Error::AlreadyExists(message) => Status::already_exists(message),
            Error::FailedPrecondition(message) => Status::failed_precondition(message),
            Error::Aborted(message) => Status::aborted(message),
            Error::ResourceExhausted(message) => Status::resource_exhausted(message),
            Error::OutOfRange(message) => Status::out_of_range(message),
            Error::Unauthenticated(message) => Status::unauthenticated(message),
            Error::PermissionDenied(message) => Status::permission_denied(message),
            Error::Unavailable(message) => {
                tracing::warn!(%message, "dependency unavailable");
                Status::unavailable(message)
            }
            Error::DeadlineExceeded(message) => Status::deadline_exceeded(message),
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Status::internal("internal error; the server logged the detail")
            }
        }
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(error: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        let lost = match &error {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
            DbErr::Exec(sea_orm::RuntimeErr::SqlxError(cause))
            | DbErr::Query(sea_orm::RuntimeErr::SqlxError(cause)) => connection_lost(cause),
            _ => false,
        };
        let busy = match &error {
            DbErr::Exec(sea_orm::RuntimeErr::SqlxError(cause))
            | DbErr::Query(sea_orm::RuntimeErr::SqlxError(cause))
            | DbErr::Conn(sea_orm::RuntimeErr::SqlxError(cause)) => sqlite_busy(cause),
            DbErr::Custom(message) => message == crate::storage::SQLITE_WRITE_WAIT_EXPIRED,
            _ => false,
        };
        if busy {
            tracing::warn!(error = %error, "database busy");
            return Error::Unavailable(
                "the database is busy with other writes; retry shortly".into(),
            );
        }
        match lost {
            true => {
                tracing::warn!(error = %error, "database unreachable");
                Error::Unavailable("the database is not reachable now; retry later".into())
            }
            false => Error::Internal(format!("database: {error}")),
        }
    }
}

/// True when a statement failed because the database went away (a
/// connection closed or refused, a server shutting down or restarting), not
/// because of the statement: the caller may retry it later.
fn connection_lost(cause: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    match cause {
        Sqlx::Io(_)
        | Sqlx::Tls(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception) and 57P (operator
        // intervention: admin shutdown, crash shutdown, cannot connect now).
        Sqlx::Database(database) => database
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// True when SQLite gave up waiting for its write lock (SQLITE_BUSY, or
/// SQLITE_LOCKED, with any extended code): another writer held it past the
/// busy timeout. Not a fault of the statement; the caller may retry.
fn sqlite_busy(cause: &sea_orm::sqlx::Error) -> bool {
    const SQLITE_BUSY: i64 = 5;
    const SQLITE_LOCKED: i64 = 6;
    match cause {
        sea_orm::sqlx::Error::Database(database)
            if database
                .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some() =>
        {
            database
                .code()
                .and_then(|code| code.parse::<i64>().ok())
                .is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
        }
        _ => false,
    }
}

impl From<redis::RedisError> for Error {
    fn from(error: redis::RedisError) -> Self {
        if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() {
            tracing::warn!(error = %error, "redis unreachable");
            Error::Unavailable("the shared state store is not reachable now; retry later".into())
        } else {
            Error::Internal(format!("redis: {error}"))
        }
    }
}

impl From<cairn_state::StateError> for Error {
    fn from(error: cairn_state::StateError) -> Self {
        match error {
            cairn_state::StateError::Unavailable(detail) => {
                tracing::warn!(%detail, "state store unavailable");
                Self::Unavailable("the session store is unavailable; retry shortly".into())
            }
            cairn_state::StateError::Failed(detail) => Self::Internal(detail),
        }
    }
}

impl From<Status> for Error {
    /// A status from another Cairn service, kept as the same kind so that the
    /// caller of this service sees what went wrong down the line.
    fn from(status: Status) -> Self {
        let message = status.message().to_string();
        match status.code() {
            Code::InvalidArgument => Error::invalid("", message),
            Code::NotFound => Error::NotFound {
                kind: "resource",
                name: message,
            },
            Code::AlreadyExists => Error::AlreadyExists(message),
            Code::FailedPrecondition => Error::FailedPrecondition(message),
            Code::Aborted => Error::Aborted(message),
            Code::ResourceExhausted => Error::ResourceExhausted(message),
            Code::OutOfRange => Error::OutOfRange(message),
            Code::Unauthenticated | Code::PermissionDenied => {
                Error::Internal(format!("a service-to-service call was refused: {message}"))
            }
            Code::Unavailable | Code::Cancelled => Error::Unavailable(message),
            Code::DeadlineExceeded => Error::DeadlineExceeded(message),
            Code::Ok | Code::Unknown | Code::Unimplemented | Code::Internal | Code::DataLoss => {
                Error::Internal(format!("{:?}: {message}", status.code()))
            }
        }
    }
}

/// The result type of domain and storage code.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_every_field_violation() {
        let mut violations = Violations::new();
        violations.add("touchpoint.channel", "required");
        violations.add("page_size", "must be between 1 and 1000");
        let status = Status::from(violations.finish().unwrap_err());
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid request: touchpoint.channel: required; page_size: must be between 1 and 1000"
        );
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request details");
        let fields: Vec<_> = bad_request
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["touchpoint.channel", "page_size"]);
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let status = Status::from(Error::internal("relation \"profiles\" does not exist"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("profiles"));
    }

    #[test]
    fn each_kind_has_its_code() {
        let cases = [
            (Error::not_found("profile", "p1"), Code::NotFound),
            (Error::AlreadyExists("x".into()), Code::AlreadyExists),
            (
                Error::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (Error::Aborted("x".into()), Code::Aborted),
            (
                Error::ResourceExhausted("x".into()),
                Code::ResourceExhausted,
            ),
            (Error::OutOfRange("x".into()), Code::OutOfRange),
            (Error::Unauthenticated("x".into()), Code::Unauthenticated),
            (Error::PermissionDenied("x".into()), Code::PermissionDenied),
            (Error::Unavailable("x".into()), Code::Unavailable),
            (Error::DeadlineExceeded("x".into()), Code::DeadlineExceeded),
        ];
        for (error, code) in cases {
            assert_eq!(Status::from(error).code(), code);
        }
        assert_eq!(
            Status::from(Error::not_found("profile", "p1")).message(),
            "profile p1 not found"
        );
    }
}
