//! The HTTP API: `POST /v1/readings` (JSON array, NDJSON or CSV), `GET /healthz`, `GET /readyz`,
//! `GET /metrics` (Prometheus text: readings, rejects by reason, requests by route and code).
//! A request is answered 200 only once the broker has acknowledged every record in it —
//! readings on the readings topic, rejects on the DLQ. If Kafka can't take them: 503 with
//! `Retry-After`, and the client sends the request again (duplicates are counted once
//! downstream).

use crate::auth::{Keys, Limits, Refused};
use crate::kafka::{Ack, SendError, Sender};
use crate::parse::{json_object, Format, Records, Validation};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use gridwatch_core::events::{
    reason_class, Counters, DlqWritten, HttpAnswered, InternalEvent, ReadingIngested,
    RecordsProduced, RecordsRejected,
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
    /// KiB of request bodies that may be held at once, over all senders.
    body_budget: tokio::sync::Semaphore,
    body_budget_kib: u32,
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
    let body_budget_kib = u32::try_from(cfg.max_inflight_body_bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .clamp(1, tokio::sync::Semaphore::MAX_PERMITS as u32);
    let state = Arc::new(AppState {
        sender,
        cfg,
        counters,
        keys,
        limits,
        body_budget: tokio::sync::Semaphore::new(body_budget_kib as usize),
        body_budget_kib,
        requests: AtomicU64::new(0),
        run_id,
    });
    Router::new()
        .route("/v1/readings", post(post_readings))
        .route("/v1/outcomes", post(post_outcomes))
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
    let tls = match (cfg.tls_cert.as_str(), cfg.tls_key.as_str()) {
        ("", "") => None,
        (cert, key) if !cert.is_empty() && !key.is_empty() => Some(crate::tls::server_config(
            std::path::Path::new(cert),
            std::path::Path::new(key),
        )?),
        _ => {
            return Err(std::io::Error::other(
                "ingester.tls_cert and ingester.tls_key go together: set both, or neither",
            ))
        }
    };
    let app = router(sender, cfg, counters, keys);
    match tls {
        Some(config) => {
            tracing::info!("the listener speaks HTTPS only");
            axum::serve(crate::tls::TlsListener::new(listener, config)?, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
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

/// One record of a body: a reading, or a reject with its source.
pub enum Item {
    Reading(Reading),
    Reject(DlqRecord),
}

/// Parses a body into readings and rejects, each reject with its source.
pub fn parse_body(
    kind: &str,
    body: &[u8],
    source: &str,
    v: Validation,
) -> Result<(Vec<Reading>, Vec<DlqRecord>), String> {
    let (mut readings, mut rejects) = (Vec::new(), Vec::new());
    parse_body_each(kind, body, source, v, |item| {
        match item {
            Item::Reading(r) => readings.push(r),
            Item::Reject(r) => rejects.push(r),
        }
        true
    })?;
    Ok((readings, rejects))
}

/// Parses a body record by record, handing each to `each` as soon as it is parsed (it returns
/// false to stop): a large body is never held as records all at once. The error is for a
/// body unusable as a whole — a JSON body is checked whole before its first record is handed
/// over; a CSV header is checked first; a body whose XML breaks off part-way has handed over
/// the records before the break.
pub fn parse_body_each(
    kind: &str,
    body: &[u8],
    source: &str,
    v: Validation,
    mut each: impl FnMut(Item) -> bool,
) -> Result<(), String> {
    match kind {
        "application/json" => {
            // The syntax first, without building anything: a broken body stores nothing.
            serde_json::from_slice::<serde::de::IgnoredAny>(body)
                .map_err(|e| format!("invalid JSON: {e}"))?;
            let mut one = |i: usize, item: Value| {
                let parsed = match &item {
                    Value::Object(m) => json_object(m, v),
                    _ => Err("not a JSON object".to_string()),
                };
                each(match parsed {
                    Ok(r) => Item::Reading(r),
                    Err(reason) => Item::Reject(DlqRecord::new(
                        reason,
                        format!("{source}#{i}"),
                        item.to_string(),
                    )),
                })
            };
            let mut de = serde_json::Deserializer::from_slice(body);
            serde::Deserializer::deserialize_any(&mut de, EachElement(&mut one))
                .map_err(|e| e.to_string())
        }
        "application/x-ndjson"
        | "application/jsonl"
        | "text/csv"
        | "application/atom+xml"
        | "application/xml"
        | "text/xml" => {
            let format = match kind {
                // A readings CSV, or NEM12 by its 100 header.
                "text/csv" => match Format::sniff(body, Format::Csv) {
                    Format::Nem12 => Format::Nem12,
                    _ => Format::Csv,
                },
                "application/atom+xml" => Format::GreenButton,
                // Plain XML: Green Button or IEC 61968-9, by its content.
                "application/xml" | "text/xml" => Format::sniff(body, Format::IecMeterReadings),
                _ => Format::JsonLines,
            };
            for item in Records::new(body, format, v) {
                let go_on = each(match item.map_err(|e| e.to_string())? {
                    Ok(r) => Item::Reading(r),
                    Err(rej) => Item::Reject(DlqRecord::new(
                        rej.reason,
                        format!("{source}:{}", rej.line),
                        rej.raw,
                    )),
                });
                if !go_on {
                    break;
                }
            }
            Ok(())
        }
        other => Err(format!("unsupported content type {other:?}")),
    }
}

/// Visits a JSON body's array elements one at a time (or a lone object as the only one),
/// each as a `Value` of its own: the array is never built.
struct EachElement<'f, F>(&'f mut F);

impl<'de, F: FnMut(usize, Value) -> bool> serde::de::Visitor<'de> for EachElement<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON body must be an array of reading objects")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while let Some(item) = seq.next_element::<Value>()? {
            if !(self.0)(i, item) {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                break;
            }
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        use serde::Deserialize;
        let item = Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        (self.0)(0, item);
        Ok(())
    }
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

/// Checks a request's API key (when keys are configured) and its key's limits: the record
/// source to name, and its admission (released when dropped); or the refusal to answer.
fn authorize<'a>(
    app: &'a AppState,
    headers: &HeaderMap,
    request_id: &str,
) -> Result<(String, Option<InFlight<'a>>), Box<Response>> {
    let mut in_flight = None;
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
                    request_id,
                    "send a valid API key: Authorization: Bearer <key>",
                );
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                return Err(Box::new(resp));
            };
            if let Err(over) = app.limits.admit(&who, std::time::Instant::now()) {
                let what = match over {
                    Refused::Rate => "requests per second",
                    Refused::Concurrency => "requests in flight",
                };
                tracing::warn!(request_id, key = who, "over the key's limit of {what}");
                let mut resp = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    request_id,
                    format!("over this key's limit of {what}; send it again shortly"),
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
                return Err(Box::new(resp));
            }
            let source = format!("http:{who}/{request_id}");
            in_flight = Some(InFlight {
                limits: &app.limits,
                who,
            });
            source
        }
    };
    Ok((source, in_flight))
}

/// `POST /v1/outcomes`: inspection outcomes (a JSON object, an array of them, or JSON Lines),
/// validated whole — any bad one refuses the request with its index and reason — then sent to
/// the compacted outcomes topic, acknowledged before the answer.
async fn post_outcomes(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let n = app.requests.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("{}-{n}", app.run_id);
    let (source, _in_flight) = match authorize(&app, &headers, &request_id) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
    };
    let text = String::from_utf8_lossy(&body);
    let values: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(items)) => items,
        Ok(v) => vec![v],
        Err(_) => {
            let mut items = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                match serde_json::from_str::<Value>(line) {
                    Ok(v) => items.push(v),
                    Err(e) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            &request_id,
                            format!("line {}: not JSON: {e}", i + 1),
                        )
                    }
                }
            }
            items
        }
    };
    let mut outcomes = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        let parsed = serde_json::from_value::<gridwatch_core::Outcome>(v)
            .map_err(|e| e.to_string())
            .and_then(|o| o.validate().map(|()| o));
        match parsed {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &request_id,
                    format!("outcome {i}: {e}"),
                )
            }
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(app.cfg.ack_timeout_ms);
    // Every outcome sent and acknowledged, or the client is told to send them all again (the
    // topic is compacted by target and the detector takes each visit once: a repeat is harmless).
    let recorded: Result<(), String> = async {
        let mut acks = Vec::with_capacity(outcomes.len());
        for o in &outcomes {
            let sent = send_waiting(|| app.sender.send_outcome(o), deadline).await;
            acks.push(sent.map_err(|e| e.to_string())?);
        }
        for ack in acks {
            ack.wait().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = recorded {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &request_id,
            format!("outcomes not recorded, send them again: {e}"),
        );
    }
    for o in &outcomes {
        gridwatch_core::events::OutcomesRecorded {
            verdict: o.verdict.as_str(),
            n: 1,
        }
        .emit(&app.counters);
    }
    tracing::info!(request_id, source, n = outcomes.len(), "outcomes recorded");
    (
        StatusCode::OK,
        Json(json!({"request_id": request_id, "recorded": outcomes.len()})),
    )
        .into_response()
}

async fn post_readings(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let n = app.requests.fetch_add(1, Ordering::Relaxed);
    let request_id = format!("{}-{n}", app.run_id);
    let (source, _in_flight) = match authorize(&app, &headers, &request_id) {
        Ok(admitted) => admitted,
        Err(refused) => return *refused,
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
    // The body is read only now — after the key, the limits and the type are checked — and
    // only once its size fits in the bodies the ingester may hold at once: a crowd of large
    // bodies waits on the network (TCP backpressure) instead of filling memory.
    let max_body = app.cfg.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &request_id,
            format!("the body is larger than ingester.max_body_bytes ({max_body} bytes); split it"),
        );
    }
    let kib = declared
        .unwrap_or(max_body as u64)
        .div_ceil(1024)
        .clamp(1, u64::from(app.body_budget_kib)) as u32;
    let wait = Duration::from_millis(app.cfg.ack_timeout_ms);
    let Ok(Ok(_held)) = tokio::time::timeout(wait, app.body_budget.acquire_many(kib)).await else {
        let mut resp = error(
            StatusCode::SERVICE_UNAVAILABLE,
            &request_id,
            "the ingester is busy with other large bodies; send the request again",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
        return resp;
    };
    let body: Bytes = match axum::body::to_bytes(body, max_body).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &request_id,
                format!("the body could not be read whole within ingester.max_body_bytes ({max_body} bytes): {e}"),
            )
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let validation = Validation {
        max_ts: Some(now + app.cfg.max_future_s),
    };
    // Parse on a blocking thread, in chunks, while this task sends what is parsed: a body
    // is never held as records all at once, and the acknowledgements waited on are bounded.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Item>>(4);
    let parser = {
        let (kind, source) = (kind.clone(), source.clone());
        tokio::task::spawn_blocking(move || {
            let mut chunk = Vec::with_capacity(PARSE_CHUNK);
            let parsed = parse_body_each(&kind, &body, &source, validation, |item| {
                chunk.push(item);
                chunk.len() < PARSE_CHUNK
                    || tx
                        .blocking_send(std::mem::replace(
                            &mut chunk,
                            Vec::with_capacity(PARSE_CHUNK),
                        ))
                        .is_ok()
            });
            if !chunk.is_empty() {
                let _ = tx.blocking_send(chunk);
            }
            parsed
        })
    };
    let mut sent = Sent::default();
    let mut acks = futures::stream::FuturesUnordered::new();
    let mut failure: Option<SendError> = None;
    // The queue may hold fewer records than the body: wait for it to drain (on librdkafka's
    // threads) rather than refuse the body, up to the acknowledgement timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(app.cfg.ack_timeout_ms);
    'chunks: while let Some(chunk) = rx.recv().await {
        for (k, item) in chunk.into_iter().enumerate() {
            if k % 256 == 255 {
                // Give the other requests (and /healthz) their turn on this worker.
                tokio::task::yield_now().await;
            }
            let ack = match &item {
                Item::Reading(r) => {
                    send_waiting(|| app.sender.send_reading_from(r, Some(&source)), deadline).await
                }
                Item::Reject(rec) => send_waiting(|| app.sender.send_dlq(rec), deadline).await,
            };
            match ack {
                Ok(a) => acks.push(a.wait()),
                Err(e) => {
                    failure = Some(e);
                    break 'chunks;
                }
            }
            sent.note(item);
            while acks.len() >= MAX_PENDING_ACKS {
                if let Some(Err(e)) = acks.next().await {
                    failure = Some(e);
                    break 'chunks;
                }
            }
        }
    }
    drop(rx);
    let parsed = parser.await;
    let timeout = Duration::from_millis(app.cfg.ack_timeout_ms);
    let failure = match failure {
        Some(e) => Some(e),
        None => match tokio::time::timeout(timeout, async {
            while let Some(r) = acks.next().await {
                r?;
            }
            Ok::<(), SendError>(())
        })
        .await
        {
            Err(_) => Some(SendError::Kafka(format!(
                "no acknowledgement within {} ms",
                app.cfg.ack_timeout_ms
            ))),
            Ok(r) => r.err(),
        },
    };
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
    sent.emit(c, app.sender.topics());
    match parsed {
        Ok(Ok(())) => {}
        Ok(Err(msg)) if sent.readings + sent.rejects == 0 => {
            return error(StatusCode::BAD_REQUEST, &request_id, msg)
        }
        Ok(Err(msg)) => {
            return error(
                StatusCode::BAD_REQUEST,
                &request_id,
                format!(
                "{msg} (the {} records before it are stored; a corrected re-send is counted once)",
                sent.readings + sent.rejects
            ),
            )
        }
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &request_id,
                format!("parsing the body failed: {e}"),
            )
        }
    }
    Json(json!({
        "request_id": request_id,
        "accepted": sent.readings,
        "rejected": sent.rejects,
        "reasons": sent.reasons,
    }))
    .into_response()
}

/// Records parsed before they are handed to the sending task.
const PARSE_CHUNK: usize = 2048;
/// Acknowledgements a request waits on at once; past it, it waits for the oldest.
const MAX_PENDING_ACKS: usize = 20_000;

/// What a request stored: counts, and the first ten rejects' reasons for the answer.
#[derive(Default)]
struct Sent {
    readings: u64,
    rejects: u64,
    reasons: Vec<Value>,
    classes: std::collections::BTreeMap<&'static str, u64>,
}

impl Sent {
    fn note(&mut self, item: Item) {
        match item {
            Item::Reading(_) => self.readings += 1,
            Item::Reject(r) => {
                tracing::debug!(source = r.source, reason = r.reason, "record rejected");
                self.rejects += 1;
                *self.classes.entry(reason_class(&r.reason)).or_default() += 1;
                if self.reasons.len() < 10 {
                    self.reasons
                        .push(json!({"source": r.source, "reason": r.reason}));
                }
            }
        }
    }

    /// The counters, once every record is acknowledged.
    fn emit(&self, c: &Counters, topics: &gridwatch_core::Topics) {
        for _ in 0..self.readings {
            ReadingIngested.emit(c);
        }
        for (&class, &n) in &self.classes {
            RecordsRejected { class, n }.emit(c);
        }
        DlqWritten(self.rejects).emit(c);
        for (topic, n) in [
            (&topics.readings, self.readings),
            (&topics.dlq, self.rejects),
        ] {
            RecordsProduced { topic, n }.emit(c);
        }
    }
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
    fn a_nem12_body_posted_as_text_csv_is_read_as_nem12() {
        let v = Validation::default();
        let body = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/nem12/Example_NEM12_month_solar.csv"),
        )
        .unwrap();
        let (ok, bad) = parse_body("text/csv", &body, "http:r9", v).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok.len(), 8928);
        assert!(ok
            .iter()
            .all(|r| r.meter_id == "NMI1234567" && r.kwh_export.is_some()));
        let headless = b"200,N1,E1,1,E1,N1,M1,kWh,30,\n300,20040201,1\n";
        let err = parse_body("text/csv", headless, "http:r10", v).unwrap_err();
        assert!(err.contains("before the 100 header"), "{err}");
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
