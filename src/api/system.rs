//! Health, readiness, metrics and the API description.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{HttpResponse, get, web};

use super::AppState;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, description = "Alive")))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Readiness: the log is writable and the index and projections have caught up.
#[utoipa::path(get, path = "/readyz", tag = "system", responses(
    (status = 200, description = "Ready"),
    (status = 503, description = "Not ready (storage failure or still catching up)")
))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, super::problem::ApiError> {
    if state.app.log.is_healthy() {
        Ok(HttpResponse::Ok().content_type("text/plain").body("ready"))
    } else {
        // A problem, not a bare 503: the bare-error handler would turn that into a 500.
        Err(crate::app::AppError::Storage("not ready".into()).into())
    }
}

/// Request counters and latency, kept with atomics (no metrics dependency needed).
#[derive(Default)]
pub struct Metrics {
    by_class: [AtomicU64; 6],
    micros_total: AtomicU64,
}

impl Metrics {
    pub fn observe(&self, status: u16, micros: u64) {
        let class = (status / 100).min(5) as usize;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.micros_total.fetch_add(micros, Ordering::Relaxed);
    }
}

/// Prometheus text exposition.
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    use std::fmt::Write;
    let m = &state.metrics;
    let log = &state.app.log;
    let ws = log.writer_stats();
    let mut out = String::with_capacity(2048);
    let _ = writeln!(out, "# HELP vivirk_http_requests_total HTTP requests by status class.");
    let _ = writeln!(out, "# TYPE vivirk_http_requests_total counter");
    for (i, c) in m.by_class.iter().enumerate().skip(1) {
        let _ = writeln!(out, "vivirk_http_requests_total{{class=\"{i}xx\"}} {}", c.load(Ordering::Relaxed));
    }
    let _ = writeln!(out, "# TYPE vivirk_http_request_seconds_sum counter");
    let _ = writeln!(out, "vivirk_http_request_seconds_sum {:.6}", m.micros_total.load(Ordering::Relaxed) as f64 / 1e6);
    let (batches, events) = log.stats();
    let gauges: [(&str, &str, f64); 8] = [
        ("vivirk_log_head_position", "gauge", log.head().0 as f64),
        ("vivirk_log_appended_events_total", "counter", events as f64),
        ("vivirk_log_group_commits_total", "counter", batches as f64),
        ("vivirk_log_sync_seconds_total", "counter", ws.sync_ns.load(Ordering::Relaxed) as f64 / 1e9),
        ("vivirk_log_slow_syncs_total", "counter", ws.slow_syncs.load(Ordering::Relaxed) as f64),
        ("vivirk_log_max_sync_seconds", "gauge", ws.max_sync_ns.load(Ordering::Relaxed) as f64 / 1e9),
        ("vivirk_log_disk_bytes", "gauge", log.disk_usage().0 as f64),
        ("vivirk_log_healthy", "gauge", if log.is_healthy() { 1.0 } else { 0.0 }),
    ];
    for (name, kind, v) in gauges {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {v}");
    }
    if let Some((in_use, free)) = crate::allocator_stats() {
        let _ = writeln!(out, "# HELP vivirk_malloc_in_use_bytes Heap allocated and not freed.");
        let _ = writeln!(out, "# TYPE vivirk_malloc_in_use_bytes gauge");
        let _ = writeln!(out, "vivirk_malloc_in_use_bytes {in_use}");
        let _ = writeln!(out, "# HELP vivirk_malloc_free_bytes Freed heap the allocator keeps for reuse.");
        let _ = writeln!(out, "# TYPE vivirk_malloc_free_bytes gauge");
        let _ = writeln!(out, "vivirk_malloc_free_bytes {free}");
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(out)
}

#[get("/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    // The document is the same for the life of the process, and building it (utoipa's tree, then
    // 280 KB of pretty JSON) took milliseconds per request: built once, served as shared bytes.
    static TEXT: std::sync::OnceLock<actix_web::web::Bytes> = std::sync::OnceLock::new();
    let text = TEXT.get_or_init(|| actix_web::web::Bytes::from(super::openapi::document_text()));
    HttpResponse::Ok().content_type("application/json").body(text.clone())
}
