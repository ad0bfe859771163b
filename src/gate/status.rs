//! How failures become gRPC statuses. One table, documented in the proto, so clients in every
//! language can decide between retrying, failing open and paging an operator.

use tonic::{Code, Status};

use super::request::InvalidField;
use crate::apps::AppLookupError;
use crate::pusher::PublishError;
use crate::store::StoreError;

/// `INVALID_ARGUMENT`, naming the field.
pub fn invalid(err: InvalidField) -> Status {
    Status::invalid_argument(err.to_string())
}

/// `UNAVAILABLE` while the store is unreachable (retry later), `INTERNAL` otherwise. The caller
/// gets the short message; the cause (Redis's own error) goes to the log only.
pub fn store(app: &str, err: StoreError) -> Status {
    let code = if err.is_transient() {
        Code::Unavailable
    } else {
        Code::Internal
    };
    tracing::warn!(app, error = ?err, "store call failed");
    Status::new(code, err.to_string())
}

/// `INVALID_ARGUMENT` for an empty `app_id` among several apps, `NOT_FOUND` for an unknown one.
pub fn app(err: AppLookupError) -> Status {
    match err {
        AppLookupError::Ambiguous(_) => Status::invalid_argument(err.to_string()),
        AppLookupError::Unknown(_) => Status::not_found(err.to_string()),
    }
}

/// Pusher's answers, by what the caller can do about them.
pub fn publish(err: PublishError) -> Status {
    let code = match &err {
        PublishError::Rejected { status, .. } => match *status {
            400 | 413 => Code::InvalidArgument,
            403 => Code::PermissionDenied,
            429 => Code::ResourceExhausted,
            500..=599 => Code::Unavailable,
            _ => Code::FailedPrecondition,
        },
        PublishError::Timeout(_) => Code::DeadlineExceeded,
        PublishError::Unreachable(_) => Code::Unavailable,
        PublishError::Encode(_) => Code::Internal,
    };
    Status::new(code, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pusher_answers_map_to_what_the_caller_can_do() {
        let rejected = |status| PublishError::Rejected {
            status,
            reason: "why".into(),
        };
        for (status, code) in [
            (400, Code::InvalidArgument),
            (401, Code::FailedPrecondition),
            (403, Code::PermissionDenied),
            (404, Code::FailedPrecondition),
            (413, Code::InvalidArgument),
            (429, Code::ResourceExhausted),
            (500, Code::Unavailable),
            (503, Code::Unavailable),
        ] {
            let mapped = publish(rejected(status));
            assert_eq!(mapped.code(), code, "HTTP {status}");
            assert!(mapped.message().contains("why"), "reason kept for {status}");
        }
        assert_eq!(
            publish(PublishError::Timeout(std::time::Duration::from_secs(1))).code(),
            Code::DeadlineExceeded
        );
    }
}
