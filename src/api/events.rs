//! Publishing events. TO BE WRITTEN (helper).

use super::{ApiError, ApiRequest, ApiResult, AppState};

pub async fn publish(_app: &AppState, _req: &ApiRequest) -> ApiResult {
    Err(ApiError::new(
        hyper::StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "not yet",
    ))
}
