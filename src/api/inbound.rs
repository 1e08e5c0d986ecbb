//! Inbound provider webhooks. TO BE WRITTEN (helper).

use super::{ApiError, ApiRequest, ApiResult, AppState};

pub async fn mux(_app: &AppState, _req: &ApiRequest, _connection_id: &str) -> ApiResult {
    Err(ApiError::new(
        hyper::StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "not yet",
    ))
}
