//! The mentor web app (`clients/mentor-app`), embedded in the binary and served at `/app`.
//! Plain files, no build step: the app's copies of the compiled TypeScript modules are committed.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use sha2::{Digest, Sha256};

use super::ApiError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/mentor-app/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("i18n.js", "text/javascript; charset=utf-8"),
    asset!("auth.js", "text/javascript; charset=utf-8"),
    asset!("outbox.js", "text/javascript; charset=utf-8"),
    asset!("sw.js", "text/javascript; charset=utf-8"),
    asset!("manifest.webmanifest", "application/manifest+json"),
    asset!("icon.svg", "image/svg+xml"),
];

/// Only the app's own files and the API on this origin; no inline script or style.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   manifest-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `no-cache`: always revalidated (cheap, thanks to the ETag), so an update reaches phones at
/// once; the service worker keeps the offline copy.
fn serve(req: &HttpRequest, asset: &Asset) -> HttpResponse {
    let tag = format!("\"{}\"", &hex::encode(Sha256::digest(asset.body))[..32]);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == tag));
    let mut res = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    res.insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP));
    if fresh { res.finish() } else { res.content_type(asset.content_type).body(asset.body) }
}

/// `/app` → `/app/`, so the page's relative URLs resolve under `/app/`.
#[get("/app")]
pub async fn app_root() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/app/")).finish()
}

#[get("/app/")]
pub async fn app_index(req: HttpRequest) -> HttpResponse {
    serve(&req, &ASSETS[0])
}

#[get("/app/{file}")]
pub async fn app_file(req: HttpRequest, file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let asset = ASSETS.iter().find(|a| a.name == file.as_str()).ok_or(ApiError::NotFound)?;
    Ok(serve(&req, asset))
}
