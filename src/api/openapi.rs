//! The OpenAPI document. TO BE WRITTEN (helper).

use hyper::{Response, StatusCode};

use super::{json_response, Body};

pub fn serve() -> Response<Body> {
    json_response(StatusCode::OK, serde_json::json!({"openapi": "3.1.0"}))
}
