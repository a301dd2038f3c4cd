//! The HTTP surface: the router, API-key check, health, models and llama-server's
//! `/lora-adapters`. Completions live in [`super::completion`].

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::dispatch::Dispatcher;
use super::library::Library;
use super::openai::{ApiError, LoraScale};
use super::pacing::Devices;

/// Largest request body taken; larger ones get a 413.
pub const BODY_LIMIT_BYTES: usize = 1 << 20;

/// Everything the handlers share.
pub struct AppState {
    /// Models and adapters.
    pub library: Library,
    /// The engine bridge.
    pub dispatcher: Dispatcher,
    /// Device profiles and their simulations.
    pub devices: Arc<Devices>,
    /// Device named by `--device`, applied to requests that name none.
    pub default_device: Option<String>,
    /// Required bearer token on `/v1` and `/lora-adapters`, if any.
    pub api_key: Option<String>,
    /// Context length per lane.
    pub n_ctx: u32,
    /// CPU threads (engine default when `None`).
    pub threads: Option<u32>,
    /// GPU layers (engine default when `None`).
    pub gpu_layers: Option<u32>,
    /// Apply the registry's static pins.
    pub static_pins: bool,
    /// Print a `served` line per answered request on stdout.
    pub report_requests: bool,
    /// Global adapter scales by `/lora-adapters` id, used by requests that name no adapters.
    pub global_lora: Mutex<Vec<LoraScale>>,
}

/// Shared state handle.
pub type Shared = Arc<AppState>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(self.body())).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// The router with every route, the body limit and the key check.
pub fn router(state: Shared) -> Router {
    let guarded = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(super::completion::chat))
        .route("/v1/completions", post(super::completion::completions))
        .route("/lora-adapters", get(lora_get).post(lora_post))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), auth));
    Router::new()
        .route("/health", get(health))
        .merge(guarded)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(middleware::from_fn(refuse_declared_oversize))
        .with_state(state)
}

/// Answers 413 at once when the declared length is over the limit, before reading any of the
/// body (a chunked body without a length is cut off at the limit while it is read).
async fn refuse_declared_oversize(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > BODY_LIMIT_BYTES as u64 => ApiError {
            status: 413,
            message: format!("the request body is {n} bytes, larger than {BODY_LIMIT_BYTES} bytes"),
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
        .into_response(),
        _ => next.run(req).await,
    }
}

/// Compares without stopping at the first difference, so timing tells nothing about the key.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(state): State<Shared>, headers: HeaderMap, req: Request, next: Next) -> Response {
    let Some(key) = &state.api_key else {
        return next.run(req).await;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if same_secret(g.trim().as_bytes(), key.as_bytes()) => next.run(req).await,
        _ => ApiError {
            status: 401,
            message: "missing or wrong API key: send Authorization: Bearer <key>".into(),
            kind: "authentication_error",
            param: None,
            code: Some("invalid_api_key"),
        }
        .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError {
        status: 404,
        message: "no such route; see GET /v1/models, POST /v1/chat/completions, POST /v1/completions".into(),
        kind: "invalid_request_error",
        param: None,
        code: Some("not_found"),
    }
}

async fn health(State(state): State<Shared>) -> Json<Value> {
    Json(json!({"status": "ok", "in_flight": state.dispatcher.in_flight()}))
}

async fn models(State(state): State<Shared>) -> Json<Value> {
    let mut data = Vec::new();
    for m in state.library.models() {
        data.push(json!({"id": m.id, "object": "model", "created": m.created, "owned_by": "nanolab"}));
        for a in state.library.fitting_adapters(m) {
            data.push(json!({
                "id": format!("{}+{}", m.id, a.name),
                "object": "model",
                "created": m.created,
                "owned_by": "nanolab",
                "parent": m.id,
            }));
        }
    }
    for (name, base, adapters) in state.library.aliases() {
        data.push(json!({
            "id": name,
            "object": "model",
            "created": base.created,
            "owned_by": "nanolab",
            "parent": base.id,
            "adapters": adapters,
        }));
    }
    Json(json!({"object": "list", "data": data}))
}

/// The request body as bytes, or the OpenAI error for one that is too large or unreadable.
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        let status = e.status().as_u16();
        ApiError {
            status,
            message: if status == 413 {
                format!("the request body is larger than {BODY_LIMIT_BYTES} bytes")
            } else {
                format!("could not read the request body: {e}")
            },
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    })
}

/// Parses a JSON body into `T`, with serde's message (it names the field) as a 400.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let param = e.to_string().split('`').nth(1).map(str::to_string);
        ApiError {
            param,
            ..ApiError::invalid(None, format!("invalid request body: {e}"))
        }
    })
}

fn global_scale(state: &AppState, id: usize) -> f32 {
    state
        .global_lora
        .lock()
        .map(|g| g.iter().find(|l| l.id == id).map_or(0.0, |l| l.scale))
        .unwrap_or(0.0)
}

async fn lora_get(State(state): State<Shared>) -> Json<Value> {
    let list: Vec<Value> = state
        .library
        .adapter_files()
        .iter()
        .enumerate()
        .map(|(id, a)| json!({"id": id, "path": a.path, "name": a.name, "scale": global_scale(&state, id)}))
        .collect();
    Json(Value::Array(list))
}

async fn lora_post(State(state): State<Shared>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let bytes = body_bytes(body)?;
    let value: Value = parse_json(&bytes)?;
    if !value.is_array() {
        return Err(ApiError::invalid(None, "Request body must be an array"));
    }
    let scales: Vec<LoraScale> = parse_json(&bytes)?;
    let n = state.library.adapter_files().len();
    if let Some(bad) = scales.iter().find(|l| l.id >= n || !l.scale.is_finite()) {
        return Err(ApiError::invalid(
            Some("id"),
            format!(
                "adapter id {} with scale {} is not valid: there are {n} adapters (GET /lora-adapters)",
                bad.id, bad.scale
            ),
        ));
    }
    if let Ok(mut g) = state.global_lora.lock() {
        // As llama-server does, an adapter left out of the list is set to 0.
        *g = scales;
    }
    Ok(Json(json!({"success": true})))
}
