//! The coordinator's side of the API: the few calls made before and after the measured
//! run (readiness, the event and its seats, minting tokens, reading orders, holds and the
//! bitmap for the audit, releasing leftover holds). These are not measured; they retry a
//! failed transport twice on a fresh connection, and run over a few connections in
//! parallel when there are many of them.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;

use crate::LoadError;
use crate::client::{Body, Conn, Reply, Requests, TransportError, uri};

/// Connections the coordinator uses at once for set-up and audit calls.
pub const COORDINATOR_LANES: usize = 16;

/// Where the coordinator's calls go.
pub struct Api {
    pub addr: SocketAddr,
    pub requests: Requests,
    pub timeout: Duration,
}

/// One connection of the coordinator, reopened when it fails.
pub struct ApiConn {
    api: Arc<Api>,
    conn: Option<Conn>,
}

impl ApiConn {
    pub fn new(api: Arc<Api>) -> ApiConn {
        ApiConn { api, conn: None }
    }

    /// Sends one request (up to three tries on transport failures) and keeps the body.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&HeaderValue>,
        extra: &[(&'static str, HeaderValue)],
        body: Option<Bytes>,
    ) -> Result<Reply, LoadError> {
        let target = uri(path).map_err(|e| LoadError::Internal(e.to_string()))?;
        let mut last: Option<TransportError> = None;
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            if self.conn.is_none() {
                match Conn::connect(self.api.addr, self.api.timeout).await {
                    Ok(conn) => self.conn = Some(conn),
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                }
            }
            let Some(conn) = self.conn.as_mut() else { continue };
            let request = self.api.requests.build(method.clone(), target.clone(), auth, extra, body.clone());
            match conn.send(request, Body::Keep, self.api.timeout).await {
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    self.conn = None;
                    last = Some(e);
                }
            }
        }
        Err(LoadError::Transport {
            what: format!("{method} {path} at {}", self.api.addr),
            source: last.unwrap_or(TransportError::Request("no attempt made".into())),
        })
    }

    pub async fn get(&mut self, path: &str, auth: Option<&HeaderValue>) -> Result<Reply, LoadError> {
        self.call(Method::GET, path, auth, &[], None).await
    }
}

/// Parses a JSON body, naming the call when it does not fit.
pub fn parse<T: DeserializeOwned>(reply: &Reply, what: &str) -> Result<T, LoadError> {
    serde_json::from_slice(&reply.body).map_err(|e| {
        LoadError::Protocol(format!("{what}: unexpected answer ({e}): {}", snippet(&reply.body)))
    })
}

/// The start of a body, for error messages.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    if body.len() > 300 { format!("{text}...") } else { text }
}

/// Runs `f` on every item over up to `lanes` connections at once; results come back in
/// the items' order. The first error ends the whole batch.
pub async fn parallel<I, T, F, Fut>(
    api: &Arc<Api>,
    items: Vec<I>,
    lanes: usize,
    f: F,
) -> Result<Vec<T>, LoadError>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(ApiConn, I) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = (ApiConn, Result<T, LoadError>)> + Send + 'static,
{
    let count = items.len();
    let queue: Arc<Mutex<VecDeque<(usize, I)>>> =
        Arc::new(Mutex::new(items.into_iter().enumerate().collect()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..lanes.clamp(1, count.max(1)) {
        let queue = queue.clone();
        let f = f.clone();
        let mut conn = ApiConn::new(api.clone());
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let next = queue.lock().pop_front();
                let Some((i, item)) = next else { break };
                let (back, result) = f(conn, item).await;
                conn = back;
                done.push((i, result?));
            }
            Ok::<_, LoadError>(done)
        });
    }
    let mut slots: Vec<Option<T>> = (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let done = joined.map_err(|e| LoadError::Internal(format!("a coordinator task failed: {e}")))??;
        for (i, value) in done {
            slots[i] = Some(value);
        }
    }
    slots
        .into_iter()
        .map(|slot| slot.ok_or_else(|| LoadError::Internal("a parallel call produced no result".into())))
        .collect()
}
