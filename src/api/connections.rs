//! Provider connections. TO BE WRITTEN (helper).

use super::{ApiError, ApiRequest, ApiResult, AppState};

fn todo() -> ApiResult {
    Err(ApiError::new(
        hyper::StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "not yet",
    ))
}

pub async fn create(_app: &AppState, _req: &ApiRequest) -> ApiResult {
    todo()
}
pub async fn list(_app: &AppState, _req: &ApiRequest) -> ApiResult {
    todo()
}
pub async fn get(_app: &AppState, _req: &ApiRequest, _id: &str) -> ApiResult {
    todo()
}
pub async fn delete(_app: &AppState, _req: &ApiRequest, _id: &str) -> ApiResult {
    todo()
}
