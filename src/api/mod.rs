//! The HTTP API (actix-web). Handlers parse at the edge, call the application layer, and map
//! errors to RFC 9457 problems in one place.

use std::net::SocketAddr;

use actix_web::{App, HttpResponse, HttpServer, dev::Server, web};

use crate::log::{EventLog, LogConfig};
use crate::settings::Settings;

pub struct Application {
    server: Server,
    address: SocketAddr,
    log: EventLog,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] crate::log::OpenError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

impl Application {
    /// Opens the store and binds (port 0 picks a free port, as the tests do).
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let mut config = LogConfig::new(&settings.data_dir);
        config.durability = settings.durability;
        config.segment_size = settings.segment_size;
        let (log, _report) = tokio::task::spawn_blocking(move || EventLog::open(config))
            .await
            .map_err(|e| StartError::Open(crate::log::OpenError::Log(e.to_string())))??;
        let state = web::Data::new(log.clone());
        let listener = std::net::TcpListener::bind(settings.bind).map_err(|e| StartError::Bind(settings.bind, e))?;
        let address = listener.local_addr().map_err(|e| StartError::Bind(settings.bind, e))?;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/healthz", web::get().to(|| async { HttpResponse::Ok().body("ok") }))
                .route("/readyz", web::get().to(readyz))
        })
        .listen(listener)
        .map_err(|e| StartError::Bind(settings.bind, e))?
        .run();
        Ok(Application { server, address, log })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let r = self.server.await;
        // In-flight appends were handed to the writer; let it finish them before we exit.
        self.log.shutdown().await;
        r
    }
}

async fn readyz(log: web::Data<EventLog>) -> HttpResponse {
    if log.is_healthy() {
        HttpResponse::Ok().body("ready")
    } else {
        HttpResponse::ServiceUnavailable().body("not ready")
    }
}
