//! The web UI: the static files of `web/`, embedded in the binary at build time and served
//! by the same server, no build step and nothing fetched from elsewhere at run time.
//!
//! - `GET /` is `web/index.html`, with `{{ASSET_VERSION}}` replaced by a digest of every
//!   asset; short-lived cache (`max-age=60`) and an ETag.
//! - `GET /ui/{version}/{file}` serves the assets (JS modules, CSS, icons). The version in
//!   the path changes whenever an asset does, so under the current version they are cached
//!   for good (`immutable`); a page from an older build asking for its version gets the
//!   current file with a short cache. Relative module imports (`./api.js`) keep the
//!   version, since they resolve against the importing module's URL.
//!
//! These are not API routes: they are merged outside the `OpenApiRouter` (not in
//! `/openapi.json`) and outside the API's rate limits and readiness gate, so the page loads
//! while the server is still recovering. Unknown files answer the API's JSON 404.

use std::io::Write;
use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;
use crate::http::events::not_modified;

/// Cache policy of the page itself: short, so a new build is picked up within a minute.
pub const INDEX_CACHE: &str = "public, max-age=60";
/// Cache policy of an asset under the current version.
pub const ASSET_CACHE: &str = "public, max-age=31536000, immutable";
/// Cache policy of an asset asked for under another version.
pub const STALE_ASSET_CACHE: &str = "public, max-age=60";
/// The page may load only its own scripts, styles and data.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'self'";

struct Source {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! web_file {
    ($name:literal, $content_type:literal) => {
        Source {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/", $name)),
        }
    };
}

const INDEX_HTML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/index.html"));

/// Every asset the page may ask for; a new file in `web/` is served once it is listed here.
const SOURCES: &[Source] = &[
    web_file!("app.js", "text/javascript; charset=utf-8"),
    web_file!("admin.js", "text/javascript; charset=utf-8"),
    web_file!("api.js", "text/javascript; charset=utf-8"),
    web_file!("seatmap.js", "text/javascript; charset=utf-8"),
    web_file!("pow.js", "text/javascript; charset=utf-8"),
    web_file!("style.css", "text/css; charset=utf-8"),
    web_file!("icon.svg", "image/svg+xml"),
];

/// One file ready to serve: its body, plain and gzipped, with an ETag each.
struct File {
    content_type: &'static str,
    plain: Bytes,
    etag: String,
    gzip: Bytes,
    gzip_etag: String,
}

impl File {
    fn new(content_type: &'static str, body: Bytes) -> File {
        let digest = hex::encode(&Sha256::digest(&body)[..12]);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&body).expect("gzip into memory");
        let gzip = Bytes::from(encoder.finish().expect("gzip into memory"));
        File {
            content_type,
            plain: body,
            etag: format!("\"{digest}\""),
            gzip,
            gzip_etag: format!("\"{digest}-gz\""),
        }
    }

    fn serve(
        &self,
        headers: &HeaderMap,
        cache_control: &'static str,
        extra: &[(&'static str, &'static str)],
    ) -> Response {
        let gzip = accepts_gzip(headers) && self.gzip.len() < self.plain.len();
        let (body, etag) = if gzip { (&self.gzip, &self.gzip_etag) } else { (&self.plain, &self.etag) };
        let mut response = if not_modified(headers, etag) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut r = body.clone().into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
            if gzip {
                r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            r
        };
        let h = response.headers_mut();
        h.insert(header::ETAG, HeaderValue::from_str(etag).expect("etags are ASCII"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        for (name, value) in extra {
            h.insert(*name, HeaderValue::from_static(value));
        }
        response
    }
}

struct Site {
    version: String,
    index: File,
    assets: Vec<(&'static str, File)>,
}

static SITE: LazyLock<Site> = LazyLock::new(|| {
    let mut hasher = Sha256::new();
    for source in SOURCES {
        hasher.update(source.name.as_bytes());
        hasher.update((source.body.len() as u64).to_le_bytes());
        hasher.update(source.body);
    }
    let version = hex::encode(&hasher.finalize()[..6]);
    let index = INDEX_HTML.replace("{{ASSET_VERSION}}", &version);
    Site {
        index: File::new("text/html; charset=utf-8", Bytes::from(index)),
        assets: SOURCES
            .iter()
            .map(|s| (s.name, File::new(s.content_type, Bytes::from_static(s.body))))
            .collect(),
        version,
    }
});

/// The version under which the current assets are served (`/ui/{version}/...`).
pub fn asset_version() -> &'static str {
    &SITE.version
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.split(';').next().is_some_and(|e| e.trim() == "gzip")))
}

/// The UI's routes, to be merged outside the OpenAPI router.
pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/ui/{version}/{file}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    SITE.index.serve(
        &headers,
        INDEX_CACHE,
        &[
            ("content-security-policy", CONTENT_SECURITY_POLICY),
            ("referrer-policy", "no-referrer"),
            ("x-frame-options", "DENY"),
        ],
    )
}

async fn asset(path: Result<Path<(String, String)>, PathRejection>, headers: HeaderMap) -> Response {
    let site = &*SITE;
    let found = path.ok().and_then(|Path((version, file))| {
        site.assets.iter().find(|(name, _)| *name == file).map(|(_, found)| (version, found))
    });
    let Some((version, found)) = found else {
        return ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such file").into_response();
    };
    let cache = if version == site.version { ASSET_CACHE } else { STALE_ASSET_CACHE };
    found.serve(&headers, cache, &[])
}
