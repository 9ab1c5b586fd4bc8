//! A lean HTTP/1.1 keep-alive client: one hyper client connection over one
//! `tokio::net::TcpStream` (TCP_NODELAY) per worker, requests sent one after another.
//! No pool, no redirects, no retries: whatever the server answers is what gets measured.
//! A request that fails at the transport level (connect, reset, malformed answer) or
//! takes longer than the timeout is reported as such and the connection is dropped; the
//! caller reconnects.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A request that did not get an HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("HTTP/1.1 handshake failed: {0}")]
    Handshake(hyper::Error),
    #[error("connection failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("invalid request: {0}")]
    Request(String),
}

impl TransportError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, TransportError::Timeout(_))
    }
}

/// What the server answered: status, headers, and the body when the caller kept it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body, or empty when it was drained unread.
    pub body: Bytes,
    pub body_len: usize,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Whether a body is read into memory or only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Keep,
    Drain,
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Opens a TCP connection with TCP_NODELAY and performs the HTTP/1.1 handshake; the
    /// connection's I/O is driven by a task on the current runtime.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Conn, TransportError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(stream) => stream.map_err(TransportError::Connect)?,
            Err(_) => return Err(TransportError::Timeout(timeout)),
        };
        stream.set_nodelay(true).map_err(TransportError::Connect)?;
        let (sender, connection) =
            http1::Builder::new().handshake(TokioIo::new(stream)).await.map_err(TransportError::Handshake)?;
        tokio::spawn(async move {
            // Errors surface on the sender side as well; nothing to do with them here.
            let _ = connection.await;
        });
        Ok(Conn { sender })
    }

    /// Sends one request and reads the whole answer within `timeout`.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
        body: Body,
        timeout: Duration,
    ) -> Result<Reply, TransportError> {
        match tokio::time::timeout(timeout, self.exchange(request, body)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout(timeout)),
        }
    }

    async fn exchange(&mut self, request: Request<Full<Bytes>>, body: Body) -> Result<Reply, TransportError> {
        self.sender.ready().await?;
        let response: Response<Incoming> = self.sender.send_request(request).await?;
        let (parts, mut incoming) = response.into_parts();
        let (bytes, len) = match body {
            Body::Keep => {
                let bytes = incoming.collect().await?.to_bytes();
                let len = bytes.len();
                (bytes, len)
            }
            Body::Drain => {
                let mut len = 0;
                while let Some(frame) = incoming.frame().await {
                    if let Some(data) = frame?.data_ref() {
                        len += data.len();
                    }
                }
                (Bytes::new(), len)
            }
        };
        Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body: bytes, body_len: len })
    }
}

/// Builds requests for one target: the `Host` header and JSON content type made once.
#[derive(Clone)]
pub struct Requests {
    host: HeaderValue,
    json: HeaderValue,
}

impl Requests {
    pub fn new(host: &str) -> Result<Requests, TransportError> {
        Ok(Requests {
            host: HeaderValue::from_str(host)
                .map_err(|e| TransportError::Request(format!("host {host:?}: {e}")))?,
            json: HeaderValue::from_static("application/json"),
        })
    }

    /// A request with an optional bearer header, extra headers and an optional JSON body.
    pub fn build(
        &self,
        method: Method,
        uri: Uri,
        auth: Option<&HeaderValue>,
        extra: &[(&'static str, HeaderValue)],
        json: Option<Bytes>,
    ) -> Request<Full<Bytes>> {
        let has_body = json.is_some();
        let mut request = Request::new(Full::new(json.unwrap_or_default()));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        if let Some(auth) = auth {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        if has_body {
            headers.insert(CONTENT_TYPE, self.json.clone());
        }
        for (name, value) in extra {
            headers.insert(*name, value.clone());
        }
        request
    }

    pub fn get(&self, uri: Uri, auth: Option<&HeaderValue>) -> Request<Full<Bytes>> {
        self.build(Method::GET, uri, auth, &[], None)
    }
}

/// A path as a request URI; paths the load generator builds are always valid, others
/// (from the command line) are checked up front.
pub fn uri(path: &str) -> Result<Uri, TransportError> {
    path.parse::<Uri>().map_err(|e| TransportError::Request(format!("path {path:?}: {e}")))
}

/// `Bearer <token>` as a header value.
pub fn bearer(token: &str) -> Result<HeaderValue, TransportError> {
    HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| TransportError::Request("the token is not a valid header value".into()))
}
