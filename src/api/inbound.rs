//! Inbound provider webhooks (contract §5): `POST /v1/webhooks/mux/{connection_id}`.
//!
//! Public — no API key: the request is authenticated by the provider's signature alone,
//! checked by [`crate::inbound::receive`] over the raw body before anything parses it. Before
//! the body is read, the connection must exist ([`mux_before_body`], else 404), and the
//! body is then read up to `--inbound-max-body-bytes` (413 beyond, `api::guard`). Here each outcome becomes its
//! status: 200 with the outcome, 404 unknown connection, 401 bad signature, 400 unusable
//! body, 503 MongoDB unavailable (the provider retries).

use std::time::SystemTime;

use hyper::StatusCode;

use super::{json_response, ApiError, ApiRequest, ApiResult, AppState};
use crate::inbound::{self, InboundProvider, ParseError, ReceiveError};

/// `POST /v1/webhooks/mux/{connection_id}`.
pub async fn mux(app: &AppState, req: &ApiRequest, connection_id: &str) -> ApiResult {
    receive(app, req, &inbound::mux::Mux, connection_id).await
}

/// Before `POST /v1/webhooks/mux/{connection_id}` reads its body: 404 for no such
/// connection.
pub async fn mux_before_body(app: &AppState, connection_id: &str) -> Result<(), ApiError> {
    if inbound::known_connection(&app.db, &inbound::mux::Mux, connection_id).await? {
        Ok(())
    } else {
        Err(ApiError::not_found("connection", connection_id))
    }
}

/// One provider's route: verify, parse, apply, answer.
async fn receive(
    app: &AppState,
    req: &ApiRequest,
    provider: &dyn InboundProvider,
    connection_id: &str,
) -> ApiResult {
    let outcome = inbound::receive(
        &app.db,
        &app.secrets,
        provider,
        connection_id,
        &req.parts.headers,
        &req.body,
        SystemTime::now(),
    )
    .await
    .map_err(into_api_error)?;
    Ok(json_response(StatusCode::OK, outcome.to_json()))
}

fn into_api_error(error: ReceiveError) -> ApiError {
    match error {
        ReceiveError::UnknownConnection(id) => ApiError::not_found("connection", &id),
        ReceiveError::Unauthorized(e) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", e.to_string())
        }
        ReceiveError::BadPayload(ParseError::NotJson(e)) => {
            ApiError::bad_request(format!("malformed JSON: {e}"))
        }
        ReceiveError::BadPayload(e) => ApiError::bad_request(e.to_string()),
        ReceiveError::Store(e) => e.into(),
    }
}
