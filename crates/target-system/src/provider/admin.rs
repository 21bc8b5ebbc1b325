//! `/admin/faults`: the fault controls the chaos layer drives (DESIGN §4).

use rig_http::{Incoming, Reply, Request, StatusCode, json, problem};

use super::faults::Faults;
use super::{MAX_BODY_BYTES, Provider};

impl Provider {
    pub(super) async fn post_faults(&self, req: Request<Incoming>) -> Reply {
        let bytes = match rig_http::read_body(req.into_body(), MAX_BODY_BYTES).await {
            Ok(bytes) => bytes,
            Err(err) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &err.to_string(),
                    Some("body"),
                );
            }
        };
        let faults: Faults = match serde_json::from_slice(&bytes) {
            Ok(faults) => faults,
            Err(err) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &format!(
                        "{err}; fields: rate_limit_per_sec, max_concurrency, latency_ms, error_rate, commit_then_drop_rate, outage"
                    ),
                    Some("body"),
                );
            }
        };
        if let Err((field, message)) = faults.validate() {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &message,
                Some(&field),
            );
        }
        match self.set_faults(faults).await {
            Ok(()) => json(StatusCode::OK, &self.faults()),
            Err(err) => problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                &err.to_string(),
                None,
            ),
        }
    }

    pub(super) async fn delete_faults(&self) -> Reply {
        match self.set_faults(Faults::default()).await {
            Ok(()) => json(StatusCode::OK, &self.faults()),
            Err(err) => problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                &err.to_string(),
                None,
            ),
        }
    }
}
