//! The availability benchmark's anchor: a bare axum handler that answers a static
//! 7,500-byte body (the size of the 60,000-seat bitmap) with the same headers as
//! `GET /v1/events/{id}/availability`, and nothing else. Compare with `wrk` in the same run:
//!
//! ```sh
//! cargo run --release -p boxoffice-server --example bare_bitmap -- 127.0.0.1:19300
//! wrk -t1 -c64 -d10s http://127.0.0.1:19300/bitmap
//! ```

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::routing::get;
use bytes::Bytes;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:19300".to_owned());
    let body = Bytes::from(vec![0xffu8; 7_500]);
    let app = Router::new().route(
        "/bitmap",
        get(move || {
            let body = body.clone();
            async move {
                (
                    [
                        (header::ETAG, HeaderValue::from_static("\"1.0b\"")),
                        (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=1")),
                        (header::VARY, HeaderValue::from_static("Accept")),
                        (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
                    ],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("bare bitmap on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
