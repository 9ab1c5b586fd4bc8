//! The anchors' bare HTTP handler: plain hyper on one single-threaded runtime (pin it to
//! one core with `taskset`), no router, no middleware. `GET /bitmap` answers a static
//! 7,500-byte body (the size of the 60,000-seat availability bitmap) with the same
//! headers as `GET /v1/events/{id}/availability`; any other path answers `ok`. It is what
//! an availability read costs with nothing but HTTP around it, and the trivial handler
//! that shows how fast the load generator can go (`scripts/bench.sh`):
//!
//! ```sh
//! cargo build --release -p boxoffice-loadgen --example bare_hyper
//! taskset -c 0 target/release/examples/bare_hyper 127.0.0.1:19300
//! taskset -c 1 boxoffice loadtest --scenario bare --path /bitmap --target http://127.0.0.1:19300
//! ```
//!
//! Pipelined requests are answered in one write per batch (`pipeline_flush`), so a
//! pipelining client measures the handler rather than one syscall per answer.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, VARY};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The 60,000-seat bitmap: one bit per seat.
const BITMAP_SIZE_BYTES: usize = 60_000 / 8;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:19300".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(addr))
}

async fn serve(addr: String) -> std::io::Result<()> {
    let bitmap = Bytes::from(vec![0xa5u8; BITMAP_SIZE_BYTES]);
    let listener = TcpListener::bind(&addr).await?;
    println!("bare hyper on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors or a connection reset before accept: keep serving.
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let bitmap = bitmap.clone();
        tokio::task::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let bitmap = bitmap.clone();
                async move { Ok::<_, Infallible>(answer(request.uri().path(), bitmap)) }
            });
            // A client that goes away mid-request is not the handler's business.
            let _ = http1::Builder::new()
                .pipeline_flush(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(path: &str, bitmap: Bytes) -> Response<Full<Bytes>> {
    if path != "/bitmap" {
        return Response::new(Full::new(Bytes::from_static(b"ok")));
    }
    let mut response = Response::new(Full::new(bitmap));
    let headers = response.headers_mut();
    headers.insert(ETAG, HeaderValue::from_static("\"1.0b\""));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=1"));
    headers.insert(VARY, HeaderValue::from_static("Accept"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    response
}
