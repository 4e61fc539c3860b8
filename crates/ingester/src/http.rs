//! The HTTP API: `POST /v1/readings` (JSON array, NDJSON or CSV), `GET /healthz`, `GET /readyz`,
//! `GET /metrics` (Prometheus text: readings, rejects by reason, requests by route and code).
//! A request is answered 200 only once the broker has acknowledged every record in it —
//! readings on the readings topic, rejects on the DLQ. If Kafka can't take them: 503 with
//! `Retry-After`, and the client sends the request again (duplicates are counted once
//! downstream).

use crate::auth::{Keys, Limits, Refused};
use crate::kafka::{Ack, SendError, Sender};
use crate::parse::{json_object, Format, Records, Validation};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gridwatch_core::events::{
    Counters, DlqWritten, HttpAnswered, InternalEvent, ReadingIngested, RecordRejected,
    RecordsProduced,
};
use gridwatch_core::{DlqRecord, IngesterConfig, Reading};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct AppState {
    sender: Sender,
    cfg: IngesterConfig,
    counters: Arc<Counters>,
    /// `None`: no keys file, ingest open to anyone who reaches the listener.
    keys: Option<Arc<Keys>>,
    limits: Limits,
    requests: AtomicU64,
    run_id: String,
}

/// The router of the ingester's HTTP API, counting in `counters`; with `keys`, every
/// `POST /v1/readings` needs one of them.
pub fn router(
    sender: Sender,
    cfg: IngesterConfig,
    counters: Arc<Counters>,
    keys: Option<Arc<Keys>>,
) -> Router {
    let limit = cfg.max_body_bytes;
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    );
    let counted = counters.clone();
    let limits = Limits::new(cfg.max_requests_per_s, cfg.max_concurrent_requests);
    let state = Arc::new(AppState {
        sender,
        cfg,
        counters,
        keys,
        limits,
        requests: AtomicU64::new(0),
        run_id,
    });
    Router::new()
        .route("/v1/readings", post(post_readings))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn(
            move |req: Request, next: axum::middleware::Next| {
                let counters = counted.clone();
                async move {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or_else(String::new, |p| p.as_str().to_string());
                    let resp = next.run(req).await;
                    HttpAnswered {
                        route: &route,
                        code: resp.status().as_u16(),
                    }
                    .emit(&counters);
                    resp
                }
            },
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, then drains open requests. With
/// `ingester.api_keys_file` set, its keys are loaded first (an invalid file is an error) and
/// reloaded when the file changes (checked every 2 s) or on SIGHUP.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sender: Sender,
    cfg: IngesterConfig,
    counters: Arc<Counters>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let keys = if cfg.api_keys_file.is_empty() {
        tracing::warn!(
            "no ingester.api_keys_file: POST /v1/readings accepts anyone who can reach the listener"
        );
        None
    } else {
        let keys =
            Keys::load(std::path::Path::new(&cfg.api_keys_file)).map_err(std::io::Error::other)?;
        tracing::info!(path = %cfg.api_keys_file, "API keys loaded");
        let watched = keys.clone();
        tokio::spawn(async move {
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => watched.reload_if_changed(),
                    _ = hangup => match watched.reload() {
                        Ok(n) => tracing::info!(keys = n, "API keys reloaded on SIGHUP"),
                        Err(e) => tracing::error!("API keys not reloaded, the previous ones stay: {e}"),
                    },
                }
            }
        });
        Some(keys)
    };
    axum::serve(listener, router(sender, cfg, counters, keys))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.counters.prometheus_text(),
    )
        .into_response()
}

async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let sender = app.sender.clone();
    let ok = tokio::task::spawn_blocking(move || sender.ready(Duration::from_secs(2)))
        .await
        .unwrap_or(false);
    if ok {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "kafka unreachable\n").into_response()
    }
}

fn error(status: StatusCode, request_id: &str, msg: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"request_id": request_id, "error": msg.into()})),
    )
        .into_response()
}

/// Parses a body into readings and rejects, each reject with its source.
pub fn parse_body(
    kind: &str,
    body: &[u8],
    source: &str,
    v: Validation,
) -> Result<(Vec<Reading>, Vec<DlqRecord>), String> {
    let mut readings = Vec::new();
    let mut rejects = Vec::new();
    match kind {
        "application/json" => {
            let items = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Array(items)) => items,
                Ok(obj @ Value::Object(_)) => vec![obj],
                Ok(_) => return Err("a JSON body must be an array of reading objects".into()),
                Err(e) => return Err(format!("invalid JSON: {e}")),
            };
            for (i, item) in items.into_iter().enumerate() {
                let parsed = match &item {
                    Value::Object(m) => json_object(m, v),
                    _ => Err("not a JSON object".to_string()),
                };
                match parsed {
                    Ok(r) => readings.push(r),
                    Err(reason) => rejects.push(DlqRecord::new(
                        reason,
                        format!("{source}#{i}"),
                        item.to_string(),
                    )),
                }
            }
        }
        "application/x-ndjson"
        | "application/jsonl"
        | "text/csv"
        | "application/atom+xml"
        | "application/xml"
        | "text/xml" => {
            let format = match kind {
                "text/csv" => Format::Csv,
                "application/atom+xml" => Format::GreenButton,
                // Plain XML: Green Button or IEC 61968-9, by its content.
                "application/xml" | "text/xml" => Format::sniff(body, Format::IecMeterReadings),
                _ => Format::JsonLines,
            };
            for item in Records::new(body, format, v) {
                match item.map_err(|e| e.to_string())? {
                    Ok(r) => readings.push(r),
                    Err(rej) => rejects.push(DlqRecord::new(
                        rej.reason,
                        format!("{source}:{}", rej.line),
                        rej.raw,
                    )),
                }
            }
        }
        other => return Err(format!("unsupported content type {other:?}")),
    }
    Ok((readings, rejects))
}

/// Sends one record, waiting while the producer's queue is full, until `deadline`.
async fn send_waiting(
    mut send: impl FnMut() -> Result<Ack, SendError>,
    deadline: tokio::time::Instant,
) -> Result<Ack, SendError> {
    loop {
        match send() {
            Err(SendError::QueueFull) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            other => return other,
        }
    }
}

/// An admitted request of a key, released from the key's in-flight count when answered.
struct InFlight<'a> {
    limits: &'a Limits,
    who: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.limits.done(&self.who);
    }
}

async fn post_readings(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = app.requests.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("{}-{n}", app.run_id);
    let mut _in_flight = None;
    let source = match &app.keys {
        None => format!("http:{request_id}"),
        Some(keys) => {
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let Some(who) = keys.check(auth) else {
                tracing::warn!(request_id, "request without a valid API key refused");
                let mut resp = error(
                    StatusCode::UNAUTHORIZED,
                    &request_id,
                    "send a valid API key: Authorization: Bearer <key>",
                );
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                return resp;
            };
            if let Err(over) = app.limits.admit(&who, std::time::Instant::now()) {
                let what = match over {
                    Refused::Rate => "requests per second",
                    Refused::Concurrency => "requests in flight",
                };
                tracing::warn!(request_id, key = who, "over the key's limit of {what}");
                let mut resp = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    &request_id,
                    format!("over this key's limit of {what}; send it again shortly"),
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                return resp;
            }
            let source = format!("http:{who}/{request_id}");
            _in_flight = Some(InFlight {
                limits: &app.limits,
                who,
            });
            source
        }
    };
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !matches!(
        kind.as_str(),
        "application/json"
            | "application/x-ndjson"
            | "application/jsonl"
            | "text/csv"
            | "application/atom+xml"
            | "application/xml"
            | "text/xml"
    ) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &request_id,
            format!("Content-Type must be application/json (an array), application/x-ndjson, text/csv, application/atom+xml (Green Button) or application/xml (IEC 61968-9 MeterReadings); got {kind:?}"),
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let validation = Validation {
        max_ts: Some(now + app.cfg.max_future_s),
    };
    let (readings, rejects) = match parse_body(&kind, &body, &source, validation) {
        Ok(x) => x,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &request_id, msg),
    };
    let mut acks: Vec<Ack> = Vec::with_capacity(readings.len() + rejects.len());
    let mut failure: Option<SendError> = None;
    // A body may hold more records than the producer's queue: wait for it to drain (on
    // librdkafka's threads) rather than refuse the body, up to the acknowledgement timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(app.cfg.ack_timeout_ms);
    for r in &readings {
        match send_waiting(|| app.sender.send_reading_from(r, Some(&source)), deadline).await {
            Ok(a) => acks.push(a),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if failure.is_none() {
        for rec in &rejects {
            match send_waiting(|| app.sender.send_dlq(rec), deadline).await {
                Ok(a) => acks.push(a),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
    }
    let timeout = Duration::from_millis(app.cfg.ack_timeout_ms);
    let waited = tokio::time::timeout(
        timeout,
        futures::future::join_all(acks.into_iter().map(Ack::wait)),
    )
    .await;
    let failure = failure.or_else(|| match waited {
        Err(_) => Some(SendError::Kafka(format!(
            "no acknowledgement within {} ms",
            app.cfg.ack_timeout_ms
        ))),
        Ok(results) => results.into_iter().find_map(Result::err),
    });
    if let Some(e) = failure {
        tracing::warn!(request_id, source, "records not stored: {e}");
        let mut resp = error(
            StatusCode::SERVICE_UNAVAILABLE,
            &request_id,
            format!("records not stored, send the request again: {e}"),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return resp;
    }
    let c = &app.counters;
    for _ in &readings {
        ReadingIngested.emit(c);
    }
    for r in &rejects {
        RecordRejected {
            reason: &r.reason,
            source: &r.source,
        }
        .emit(c);
    }
    DlqWritten(rejects.len() as u64).emit(c);
    let topics = app.sender.topics();
    for (topic, n) in [
        (&topics.readings, readings.len()),
        (&topics.dlq, rejects.len()),
    ] {
        RecordsProduced { topic, n: n as u64 }.emit(c);
    }
    let reasons: Vec<Value> = rejects
        .iter()
        .take(10)
        .map(|r| json!({"source": r.source, "reason": r.reason}))
        .collect();
    Json(json!({
        "request_id": request_id,
        "accepted": readings.len(),
        "rejected": rejects.len(),
        "reasons": reasons,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_of_each_type_parse_with_sources() {
        let v = Validation::default();
        let json = br#"[{"meter_id":"M1","ts":"2026-01-05T00:15:00Z","interval_s":900,"kwh":0.2}, 5, {"meter_id":"M1"}]"#;
        let (ok, bad) = parse_body("application/json", json, "http:r1", v).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].source, "http:r1#1");
        assert!(bad[1].reason.contains("field ts"), "{}", bad[1].reason);
        let nd = b"{\"meter_id\":\"M1\",\"ts\":\"2026-01-05T00:15:00Z\",\"interval_s\":900,\"kwh\":0.2}\nnope\n";
        let (ok, bad) = parse_body("application/x-ndjson", nd, "http:r2", v).unwrap();
        assert_eq!((ok.len(), bad.len()), (1, 1));
        assert_eq!(bad[0].source, "http:r2:2");
        let csv = b"meter_id,ts,interval_s,kwh\nM1,2026-01-05T00:15:00Z,900,0.2\n";
        assert_eq!(
            parse_body("text/csv", csv, "http:r3", v).unwrap().0.len(),
            1
        );
        assert!(parse_body("text/csv", b"a,b\n1,2\n", "x", v)
            .unwrap_err()
            .contains("header"));
        assert!(parse_body("application/json", b"{nope", "x", v)
            .unwrap_err()
            .contains("invalid JSON"));
        assert!(parse_body("application/json", b"42", "x", v).is_err());
    }

    #[test]
    fn green_button_and_iec_bodies_parse_by_content_type() {
        let v = Validation::default();
        let data = |f: &str| {
            std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/data")
                    .join(f),
            )
            .unwrap()
        };
        let gb = data("greenbutton_openespi_usage_15min.xml");
        let (ok, bad) = parse_body("application/atom+xml", &gb, "http:r4", v).unwrap();
        assert_eq!((ok.len(), bad.len()), (96, 0));
        let iec = data("iec_61968_9_meter_readings.xml");
        let (ok, bad) = parse_body("application/xml", &iec, "http:r5", v).unwrap();
        assert_eq!((ok.len(), bad.len()), (3, 2));
        assert!(
            bad.iter().all(|b| b.source.starts_with("http:r5:")),
            "{bad:?}"
        );
        // Plain XML that is a Green Button feed is read as one.
        assert_eq!(parse_body("text/xml", &gb, "x", v).unwrap().0.len(), 96);
        assert!(parse_body("application/xml", b"<MeterReadings><oops", "x", v).is_err());
    }
}
