//! The HTTP API (actix-web). Per-resource route modules, each with its OpenAPI section; parsing
//! at the edge (`extract`); errors mapped to RFC 9457 problems in one place (`problem`).

mod accounts;
mod app_assets;
mod audit;
mod companies;
mod courses;
pub(crate) mod extract;
mod idempotency;
mod idempotency_files;
pub mod openapi;
mod problem;
mod reads;
mod system;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Compress, ErrorHandlerResponse, ErrorHandlers, Next, from_fn};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use sha2::{Digest, Sha256};

pub use audit::MAX_PURPOSE;
pub use problem::{API_ERROR_CODES, ApiError, Problem};

use crate::app::Vivirk;
use crate::auth::Auth;
use crate::clock::{SharedClock, SystemClock};
use crate::log::{EventLog, LogConfig};
use crate::projections::{ProjectionConfig, Projections};
use crate::settings::Settings;

/// Largest request body accepted (a check-in is well under 4 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler can reach.
pub struct AppState {
    pub app: Arc<Vivirk>,
    pub projections: Projections,
    pub auth: Arc<Auth>,
    pub idem: idempotency::IdempotencyStore,
    pub metrics: system::Metrics,
    /// Signs and keeps checkpoints of the global hash chain.
    pub checkpoints: Arc<crate::audit::Checkpoints>,
    /// Who used course data, and why (queued; written off the request path).
    pub access_log: crate::audit::AccessLog,
}

impl AppState {
    /// Read-your-writes: a write answers once what it wrote is visible to reads.
    pub async fn after_write(&self, position: u64) {
        self.projections.wait_for(position).await;
    }
}

pub struct Application {
    server: Server,
    address: SocketAddr,
    log: EventLog,
    access_log: crate::audit::AccessLog,
    /// The first admin's password, when this start created it (printed once by `serve`).
    pub initial_admin_password: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] crate::log::OpenError),
    #[error("{0}")]
    Store(String),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

impl Application {
    /// Opens the store and binds (port 0 picks a free port, as the tests do).
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(settings: Settings, clock: SharedClock) -> Result<Self, StartError> {
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|e| StartError::Store(format!("{}: {e}", settings.data_dir.display())))?;
        let mut config = LogConfig::new(&settings.data_dir);
        config.durability = settings.durability;
        config.segment_size = settings.segment_size;
        config.clock = clock.clone();
        let (log, report) = tokio::task::spawn_blocking(move || EventLog::open(config))
            .await
            .map_err(|e| StartError::Store(e.to_string()))??;
        tracing::info!(head = report.head, caught_up = report.index_caught_up, "log open");
        let idem = idempotency::IdempotencyStore::open(&settings.data_dir, clock.clone()).map_err(StartError::Store)?;
        let auth_db = crate::open_sled(&settings.data_dir.join("auth"), Some(1000))
            .map_err(|e| StartError::Store(format!("session store: {e}")))?;
        let (data_dir, auth_log, auth_clock, auth_config) =
            (settings.data_dir.clone(), log.clone(), clock.clone(), settings.auth.clone());
        let auth =
            tokio::task::spawn_blocking(move || Auth::open(&data_dir, auth_log, auth_db, auth_clock, auth_config))
                .await
                .map_err(|e| StartError::Store(e.to_string()))?
                .map_err(|e| StartError::Store(format!("auth: {e}")))?;
        let initial_admin_password =
            auth.bootstrap_admin().await.map_err(|e| StartError::Store(format!("auth: {e}")))?;
        let auth = Arc::new(auth);
        let (plog, pclock, pconfig) = (log.clone(), clock.clone(), ProjectionConfig::new(&settings.data_dir));
        let (projections, preport) = tokio::task::spawn_blocking(move || Projections::open(plog, pclock, pconfig))
            .await
            .map_err(|e| StartError::Store(e.to_string()))?
            .map_err(|e| StartError::Store(format!("projections: {e}")))?;
        tracing::info!(checkpoint = preport.checkpoint, caught_up = preport.caught_up, "projections open");
        let _follower = projections.spawn_follower();
        let (checkpoints, access_log) = start_audit(&settings, &log, &clock).await?;
        let app = Arc::new(Vivirk::with_decision_cache(log.clone(), clock.clone(), settings.decision_cache));
        let state = web::Data::new(AppState {
            app,
            projections,
            auth,
            idem,
            metrics: system::Metrics::default(),
            checkpoints,
            access_log: access_log.clone(),
        });
        // The idempotency store's lookup entries move to disk every few seconds, and each hour's
        // file is deleted (every ten minutes, a sweep) once all its responses have expired.
        let sweeper = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in 0u64.. {
                tick.tick().await;
                let s = sweeper.clone();
                let sweep = n.is_multiple_of(120);
                let _ = tokio::task::spawn_blocking(move || {
                    s.idem.maintain();
                    if sweep {
                        s.idem.sweep();
                    }
                })
                .await;
            }
        });
        let listener = std::net::TcpListener::bind(settings.bind).map_err(|e| StartError::Bind(settings.bind, e))?;
        let address = listener.local_addr().map_err(|e| StartError::Bind(settings.bind, e))?;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .app_data(
                    web::QueryConfig::default().error_handler(|e, _| ApiError::InvalidParameter(e.to_string()).into()),
                )
                .app_data(
                    web::PathConfig::default().error_handler(|e, _| ApiError::InvalidParameter(e.to_string()).into()),
                )
                .wrap(ErrorHandlers::new().default_handler(problem_for_bare_errors))
                .wrap(Compress::default())
                .wrap(from_fn(request_context))
                .configure(routes)
                .default_service(web::to(|req: HttpRequest| async move {
                    let _ = req;
                    Err::<HttpResponse, _>(ApiError::NotFound)
                }))
        })
        .shutdown_timeout(10)
        .listen(listener)
        .map_err(|e| StartError::Bind(settings.bind, e))?
        .run();
        Ok(Application { server, address, log, access_log, initial_admin_password })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Runs until SIGINT/SIGTERM; in-flight requests finish, then the writer drains.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let r = self.server.await;
        // The access log's queued tail is written before the process ends.
        self.access_log.flush().await;
        self.log.shutdown().await;
        r
    }
}

/// The audit store, the checkpoint key and signer, the access log's writer and cleaner.
async fn start_audit(
    settings: &Settings,
    log: &EventLog,
    clock: &SharedClock,
) -> Result<(Arc<crate::audit::Checkpoints>, crate::audit::AccessLog), StartError> {
    use crate::audit::{AccessLog, AuditStore, CheckpointKey, Checkpoints};
    let config = settings.audit.clone();
    let (data_dir, log, sclock) = (settings.data_dir.clone(), log.clone(), clock.clone());
    let (store, checkpoints) = tokio::task::spawn_blocking(move || {
        let store = AuditStore::open(&data_dir)?;
        let key = CheckpointKey::load_or_generate(&data_dir)?;
        let checkpoints = Checkpoints::new(key, store.clone(), log, sclock);
        checkpoints.check_log()?;
        Ok::<_, crate::audit::AuditError>((store, checkpoints))
    })
    .await
    .map_err(|e| StartError::Store(e.to_string()))?
    .map_err(|e| StartError::Store(e.to_string()))?;
    let checkpoints = Arc::new(checkpoints);
    let _signer = checkpoints.clone().spawn(std::time::Duration::from_secs(config.checkpoint_interval_secs));
    let access_log = AccessLog::start(store, clock.clone(), &config).map_err(|e| StartError::Store(e.to_string()))?;
    let _cleaner = access_log.spawn_cleaner(std::time::Duration::from_secs(config.access_log_sweep_interval_secs));
    Ok((checkpoints, access_log))
}

fn routes(cfg: &mut web::ServiceConfig) {
    // The router tries resources in this order, running each dynamic pattern's regex until one
    // matches: the two hottest paths (a mentor's check-in, a page of contact history) go first.
    // Neither pattern overlaps any other route, so the order changes nothing else.
    cfg.service(courses::log_check_in)
        .service(reads::contact_history)
        .service(system::healthz)
        .service(system::readyz)
        .service(system::metrics)
        .service(system::openapi_json)
        .service(app_assets::app_root)
        .service(app_assets::app_index)
        .service(app_assets::app_file)
        .service(accounts::token)
        .service(accounts::refresh)
        .service(accounts::logout)
        .service(accounts::jwks)
        .service(accounts::me)
        .service(accounts::change_password)
        .service(accounts::create_account)
        .service(accounts::list_accounts)
        .service(accounts::disable_account)
        .service(accounts::enable_account)
        .service(accounts::delete_account)
        .service(companies::register_company)
        .service(companies::register_mentor)
        .service(companies::assess_relational_capacity)
        .service(companies::list_companies)
        .service(companies::company)
        .service(reads::list_courses)
        .service(reads::course_status)
        .service(reads::contact_frequency)
        .service(reads::course_actions)
        .service(reads::course_state)
        .service(reads::my_courses)
        .service(reads::my_actions)
        .service(reads::contact_worklist)
        .service(reads::sync)
        .service(courses::open_course)
        .service(courses::assign_participant)
        .service(courses::unassign_participant)
        .service(courses::log_contact)
        .service(courses::hold_guidance_session)
        .service(courses::record_meeting)
        .service(courses::set_goal)
        .service(courses::set_sub_goal)
        .service(courses::record_goal_progress)
        .service(courses::achieve_goal)
        .service(courses::drop_goal)
        .service(courses::agree_action)
        .service(courses::complete_action)
        .service(courses::reschedule_action)
        .service(courses::cancel_action)
        .service(courses::start_placement)
        .service(courses::end_placement)
        .service(courses::make_mentor_agreement)
        .service(courses::renew_mentor_agreement)
        .service(courses::record_assessment)
        .service(courses::record_support_need)
        .service(courses::agree_contact_plan)
        .service(courses::correct_event)
        .service(courses::retract_event)
        .service(courses::change_phase)
        .service(courses::close_course)
        .service(courses::course_events)
        .service(courses::verify_course)
        .service(audit::course_record)
        .service(audit::latest_checkpoint)
        .service(audit::checkpoint_key)
        .service(audit::access_log)
        .service(audit::my_access_log)
        .service(audit::sweep_access_log)
        .service(<utoipa_scalar::Scalar<serde_json::Value> as utoipa_scalar::Servable<_>>::with_url(
            "/docs",
            openapi::document(),
        ));
}

/// Request ids and one log line per request: method, route pattern, status, time. Never the
/// body, never the query (it can hold search criteria).
async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    use tracing::Instrument;
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| {
            !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Finding the pattern walks the router again; only worth it when the line is written.
    let route = if tracing::enabled!(tracing::Level::INFO) {
        req.match_pattern().unwrap_or_else(|| "-".into())
    } else {
        String::new()
    };
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %id, %method, route = %route);
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let mut res = next.call(req).instrument(span.clone()).await?.map_into_boxed_body();
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&id) {
        res.headers_mut().insert(actix_web::http::header::HeaderName::from_static("x-request-id"), v);
    }
    let status = res.status().as_u16();
    let micros = started.elapsed().as_micros() as u64;
    span.in_scope(|| tracing::info!(status, micros, "handled"));
    if let Some(s) = state {
        s.metrics.observe(status, micros);
    }
    Ok(res)
}

/// actix's own errors (unparsable query, body too large, unknown method) become problems too.
fn problem_for_bare_errors<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/problem+json"));
    if is_problem || !(res.status().is_client_error() || res.status().is_server_error()) {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let err = match res.status().as_u16() {
        400 => ApiError::InvalidBody("the request could not be read".into()),
        404 => ApiError::NotFound,
        405 => ApiError::MethodNotAllowed,
        413 => ApiError::BodyTooLarge(MAX_BODY),
        415 => ApiError::UnsupportedMediaType,
        s if s < 500 => ApiError::InvalidParameter("the request could not be read".into()),
        _ => ApiError::Internal("unhandled server error".into()),
    };
    let (req, _) = res.into_parts();
    let response = actix_web::ResponseError::error_response(&err);
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, response).map_into_right_body()))
}

/// A JSON response with a strong ETag over its bytes; `If-None-Match` → 304.
pub fn etag_json<T: serde::Serialize>(req: &HttpRequest, value: &T) -> Result<HttpResponse, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.to_string()))?;
    let tag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
    if if_none_match(req, &tag) {
        return Ok(HttpResponse::NotModified().insert_header(("ETag", tag)).finish());
    }
    Ok(HttpResponse::Ok().insert_header(("ETag", tag)).content_type("application/json").body(body))
}

/// A strong ETag for a representation that is a pure function of what `parts` name (a
/// resource, the version it was rendered at, the query), so it is known before the body is
/// built and costs nothing to compute. Hashing a large body instead cost as much as rendering it.
/// The crate version is part of it: a new release may render the same version differently.
pub fn version_tag(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    format!("\"v{}\"", &hex::encode(h.finalize())[..32])
}

/// Whether `If-None-Match` names `tag` (weak comparison, as RFC 9110 asks for GET).
pub fn if_none_match(req: &HttpRequest, tag: &str) -> bool {
    req.headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == tag || t.trim() == "*"))
}

/// A JSON response under a tag from [`version_tag`].
///
/// `size_hint`: about how many bytes the body will take. A history page is ~40 KB, and growing
/// the buffer from empty copied it eight times over.
pub fn tagged_json<T: serde::Serialize>(
    req: &HttpRequest,
    tag: String,
    value: &T,
    size_hint: usize,
) -> Result<HttpResponse, ApiError> {
    if if_none_match(req, &tag) {
        return Ok(HttpResponse::NotModified().insert_header(("ETag", tag)).finish());
    }
    let mut body = Vec::with_capacity(size_hint);
    serde_json::to_writer(&mut body, value).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().insert_header(("ETag", tag)).content_type("application/json").body(body))
}
