//! The live seat map stream: snapshot first, gap-free deltas, resume, slow viewers, limits.

use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::helpers::{TestApp, bit, spawn_with};

/// One parsed SSE frame.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    event: String,
    id: String,
    data: Value,
}

/// A viewer: reads frames and applies them to its own copy of the bitmap.
pub(crate) struct Viewer {
    response: reqwest::Response,
    buffer: String,
    pub(crate) bitmap: Vec<u8>,
    pub(crate) version: Option<u64>,
    last_id: Option<String>,
    frames: Vec<Frame>,
}

impl Viewer {
    pub(crate) async fn open(app: &TestApp, event: &str, last_event_id: Option<&str>) -> Viewer {
        let mut req = app.client.get(app.url(&format!("/v1/events/{event}/availability/stream")));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let response = req.send().await.expect("stream opens");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Viewer {
            response,
            buffer: String::new(),
            bitmap: Vec::new(),
            version: None,
            last_id: None,
            frames: vec![],
        }
    }

    /// The next frame (keep-alive comments skipped).
    async fn next(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if event.is_empty() {
                    continue;
                }
                let frame =
                    Frame { event, id, data: serde_json::from_str(&data).expect("frame data is JSON") };
                self.frames.push(frame.clone());
                return frame;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("a frame within 10 s")
                .expect("stream readable")
                .expect("stream still open");
            self.buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }

    /// Reads and applies one frame, checking that it continues from the viewer's version.
    pub(crate) async fn apply_next(&mut self) -> Frame {
        let frame = self.next().await;
        let version = frame.data["version"].as_u64().expect("version");
        if let Some(last) = &self.last_id {
            assert_ne!(last, &frame.id, "a frame was sent twice");
        }
        match frame.event.as_str() {
            "snapshot" => {
                self.bitmap = base64::engine::general_purpose::STANDARD
                    .decode(frame.data["bitmap_base64"].as_str().expect("bitmap"))
                    .expect("base64");
            }
            "delta" => {
                let from = frame.data["from"].as_u64().expect("from");
                assert_eq!(Some(from), self.version, "a delta must start at the viewer's version: {frame:?}");
                for (key, available) in [("available", true), ("unavailable", false)] {
                    for seat in frame.data[key].as_array().expect("seat list") {
                        let i = seat.as_u64().expect("seat index") as usize;
                        if available {
                            self.bitmap[i / 8] |= 1 << (i % 8);
                        } else {
                            self.bitmap[i / 8] &= !(1 << (i % 8));
                        }
                    }
                }
            }
            other => panic!("unexpected event {other}"),
        }
        assert!(self.version.is_none_or(|v| version > v), "versions only grow: {frame:?}");
        assert_eq!(frame.id.split_once('.').map(|(_, v)| v.to_owned()), Some(version.to_string()));
        self.version = Some(version);
        self.last_id = Some(frame.id.clone());
        frame
    }

    /// Applies frames until the viewer is at `version`.
    pub(crate) async fn catch_up_to(&mut self, version: u64) {
        while self.version != Some(version) {
            self.apply_next().await;
        }
    }
}

async fn app_with_event(configure: impl FnOnce(&mut boxoffice_server::Config)) -> (TestApp, String, String) {
    let app = spawn_with(|c| {
        c.sse_interval_ms = 20;
        configure(c);
    })
    .await;
    let admin = app.token("admin", "admin").await;
    let event = app.on_sale_event(&admin, &[("A", 4, 10, "premium"), ("B", 4, 10, "standard")]).await;
    (app, event, admin)
}

#[tokio::test]
async fn stream_starts_with_a_snapshot_equal_to_the_availability() {
    let (app, event, _) = app_with_event(|_| {}).await;
    let fan = app.token("fan1", "fan").await;
    app.hold(&fan, &event, &["A-1-1", "B-2-3"]).await;
    let mut viewer = Viewer::open(&app, &event, None).await;
    let first = viewer.apply_next().await;
    assert_eq!(first.event, "snapshot");
    let (bitmap, version) = app.bitmap(&event).await;
    assert_eq!(viewer.version, Some(version));
    assert_eq!(viewer.bitmap, bitmap);
    assert!(!bit(&viewer.bitmap, 0));
}

#[tokio::test]
async fn a_viewer_applying_deltas_always_ends_equal_to_the_server_bitmap() {
    let (app, event, _) = app_with_event(|_| {}).await;
    let mut viewer = Viewer::open(&app, &event, None).await;
    viewer.apply_next().await;
    let fans: Vec<String> = futures_join(&app, 6).await;
    let mut holds = Vec::new();
    for round in 0..30u32 {
        let fan = &fans[(round % 6) as usize];
        let label =
            format!("{}-{}-{}", if round % 2 == 0 { "A" } else { "B" }, 1 + round % 4, 1 + round % 10);
        let (status, body) = app.hold(fan, &event, &[&label]).await;
        if status == 201 {
            holds.push((fan.clone(), body["hold_id"].as_str().unwrap().to_owned()));
        }
        if round % 3 == 0
            && let Some((owner, hold)) = holds.pop()
        {
            app.delete(&format!("/v1/holds/{hold}"), Some(&owner)).await;
        }
        if round % 7 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let (bitmap, version) = app.bitmap(&event).await;
    viewer.catch_up_to(version).await;
    assert_eq!(viewer.bitmap, bitmap, "snapshot + deltas == the server's bitmap at that version");
    assert!(viewer.frames.iter().skip(1).any(|f| f.event == "delta"), "changes came as deltas");
}

async fn futures_join(app: &TestApp, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..n {
        tokens.push(app.token(&format!("viewer-fan-{i}"), "fan").await);
    }
    tokens
}

#[tokio::test]
async fn resuming_with_last_event_id_sends_only_the_missed_changes() {
    let (app, event, _) = app_with_event(|_| {}).await;
    let fan = app.token("fan1", "fan").await;
    let mut viewer = Viewer::open(&app, &event, None).await;
    viewer.apply_next().await;
    let resume_id = viewer.last_id.clone().unwrap();
    let saved = viewer.bitmap.clone();
    drop(viewer);
    app.hold(&fan, &event, &["A-2-2", "A-2-3"]).await;
    app.hold(&fan, &event, &["B-4-10"]).await;
    let (bitmap, version) = app.bitmap(&event).await;

    let mut resumed = Viewer::open(&app, &event, Some(&resume_id)).await;
    resumed.bitmap = saved;
    resumed.version = resume_id.split_once('.').unwrap().1.parse().ok();
    let first = resumed.apply_next().await;
    assert_eq!(first.event, "delta", "a resume within the ring is a delta: {first:?}");
    resumed.catch_up_to(version).await;
    assert_eq!(resumed.bitmap, bitmap);
}

#[tokio::test]
async fn a_last_event_id_of_another_run_or_garbage_gets_a_snapshot() {
    let (app, event, _) = app_with_event(|_| {}).await;
    for id in ["1.0", "garbage", "99999999999999.5"] {
        let mut viewer = Viewer::open(&app, &event, Some(id)).await;
        assert_eq!(viewer.apply_next().await.event, "snapshot", "Last-Event-ID {id}");
    }
}

#[tokio::test]
async fn a_viewer_that_falls_behind_is_caught_up_and_never_slows_the_holds() {
    let (app, event, _) = app_with_event(|c| c.sse_interval_ms = 10).await;
    let mut slow = Viewer::open(&app, &event, None).await;
    slow.apply_next().await;
    // Far more frames than the viewer's buffer while it reads nothing.
    let fan = app.token("fan1", "fan").await;
    for i in 0..100 {
        let label = format!("A-{}-{}", 1 + (i % 4), 1 + (i % 10));
        let (status, body) = app.hold(&fan, &event, &[&label]).await;
        assert_eq!(status, 201, "holds go on while a viewer sleeps: {body}");
        app.delete(&format!("/v1/holds/{}", body["hold_id"].as_str().unwrap()), Some(&fan)).await;
        tokio::time::sleep(Duration::from_millis(12)).await;
    }
    let (bitmap, version) = app.bitmap(&event).await;
    slow.catch_up_to(version).await;
    assert_eq!(slow.bitmap, bitmap);
}

#[tokio::test]
async fn stream_limits_answer_429_per_address_and_503_in_total() {
    let (app, event, _) = app_with_event(|c| c.sse_max_clients_per_ip = 2).await;
    let url = app.url(&format!("/v1/events/{event}/availability/stream"));
    let a = app.client.get(&url).send().await.unwrap();
    let b = app.client.get(&url).send().await.unwrap();
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let c = app.client.get(&url).send().await.unwrap();
    assert_eq!(c.status(), 429);
    assert!(c.headers().contains_key("retry-after"));
    assert_eq!(c.json::<Value>().await.unwrap()["error"]["code"], "RATE_LIMITED");
    drop(a);
    // The slot comes back once the server notices the closed stream.
    let mut reopened = false;
    for _ in 0..100 {
        let r = app.client.get(&url).send().await.unwrap();
        if r.status() == 200 {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened, "a closed stream frees its slot");

    let (app, event, _) = app_with_event(|c| c.sse_max_clients = 1).await;
    let url = app.url(&format!("/v1/events/{event}/availability/stream"));
    let _a = app.client.get(&url).send().await.unwrap();
    let b = app.client.get(&url).send().await.unwrap();
    assert_eq!(b.status(), 503);
    assert_eq!(b.json::<Value>().await.unwrap()["error"]["code"], "SSE_CAPACITY");
}

#[tokio::test]
async fn stream_of_an_unknown_event_is_404() {
    let (app, _, _) = app_with_event(|_| {}).await;
    let (status, body) = app.get("/v1/events/ev_999/availability/stream", None).await;
    crate::helpers::assert_error(status, &body, 404, "NOT_FOUND");
}

#[tokio::test]
async fn seat_geometry_is_served_brotli_or_gzip_compressed_when_asked() {
    let (app, event, _) = app_with_event(|_| {}).await;
    let plain = app.client.get(app.url(&format!("/v1/events/{event}/seats"))).send().await.unwrap();
    let plain_etag = plain.headers()["etag"].to_str().unwrap().to_owned();
    let plain_body = plain.bytes().await.unwrap();
    let gz = app
        .client
        .get(app.url(&format!("/v1/events/{event}/seats")))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    assert_eq!(gz.headers()["vary"], "Accept-Encoding");
    assert_ne!(gz.headers()["etag"].to_str().unwrap(), plain_etag, "each encoding has its own ETag");
    let compressed = gz.bytes().await.unwrap();
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut decoded).unwrap();
    assert_eq!(decoded, plain_body);

    // Brotli when offered (smaller still), gzip when brotli is refused with q=0.
    let get = |accept: &'static str| {
        app.client.get(app.url(&format!("/v1/events/{event}/seats"))).header("Accept-Encoding", accept).send()
    };
    let br = get("gzip, deflate, br").await.unwrap();
    assert_eq!(br.headers()["content-encoding"], "br");
    let br_etag = br.headers()["etag"].to_str().unwrap().to_owned();
    assert!(br_etag != plain_etag && br_etag.ends_with("-br\""), "{br_etag}");
    let compressed_br = br.bytes().await.unwrap();
    assert!(compressed_br.len() < compressed.len(), "{} vs gzip {}", compressed_br.len(), compressed.len());
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(&mut brotli::Decompressor::new(&compressed_br[..], 4096), &mut decoded)
        .unwrap();
    assert_eq!(decoded, plain_body);
    let refused = get("br;q=0, gzip").await.unwrap();
    assert_eq!(refused.headers()["content-encoding"], "gzip");
    let revalidated = app
        .client
        .get(app.url(&format!("/v1/events/{event}/seats")))
        .header("Accept-Encoding", "br")
        .header("If-None-Match", &br_etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
}

#[tokio::test]
async fn a_confirm_changes_no_bit_and_an_expiry_comes_back_as_an_available_delta() {
    let (app, event, _) = app_with_event(|c| c.hold_ttl = 1).await;
    let fan = app.token("fan1", "fan").await;
    let mut viewer = Viewer::open(&app, &event, None).await;
    viewer.apply_next().await;
    let (_, bought) = app.hold(&fan, &event, &["A-1-1"]).await;
    let (status, _) = app.checkout(&fan, bought["hold_id"].as_str().unwrap(), "tok_visa", "k1").await;
    assert_eq!(status, 201);
    let (status, _) = app.hold(&fan, &event, &["A-1-2"]).await;
    assert_eq!(status, 201);
    // Wait for the second hold to expire (the sweeper runs every 500 ms).
    let mut expired = false;
    for _ in 0..100 {
        let (bitmap, _) = app.bitmap(&event).await;
        if bit(&bitmap, 1) {
            expired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(expired, "the hold expired");
    let (bitmap, version) = app.bitmap(&event).await;
    viewer.catch_up_to(version).await;
    assert_eq!(viewer.bitmap, bitmap);
    assert!(!bit(&viewer.bitmap, 0), "the bought seat stays unavailable");
    assert!(bit(&viewer.bitmap, 1), "the expired seat is available again");
}

#[tokio::test]
async fn many_changes_within_an_interval_reach_viewers_as_few_frames() {
    let (app, event, _) = app_with_event(|c| c.sse_interval_ms = 500).await;
    let mut viewer = Viewer::open(&app, &event, None).await;
    viewer.apply_next().await;
    let fans = futures_join(&app, 5).await;
    let mut changes = 0;
    for (i, fan) in fans.iter().enumerate() {
        for n in 1..=8 {
            let label = format!("{}-{}-{}", if i % 2 == 0 { "A" } else { "B" }, 1 + i / 2, n);
            let (status, body) = app.hold(fan, &event, &[&label]).await;
            assert_eq!(status, 201, "{body}");
            changes += 1;
        }
    }
    let (bitmap, version) = app.bitmap(&event).await;
    viewer.catch_up_to(version).await;
    assert_eq!(viewer.bitmap, bitmap);
    let frames = viewer.frames.len() - 1;
    assert!(frames * 2 < changes, "{changes} changes came as {frames} frames: they are coalesced");
}

#[tokio::test]
async fn a_stalled_viewer_does_not_delay_a_healthy_one() {
    let (app, event, _) = app_with_event(|c| c.sse_interval_ms = 10).await;
    // This one never reads.
    let _stalled = Viewer::open(&app, &event, None).await;
    let mut healthy = Viewer::open(&app, &event, None).await;
    healthy.apply_next().await;
    let fan = app.token("fan1", "fan").await;
    for i in 0..120 {
        let label = format!("B-{}-{}", 1 + (i % 4), 1 + (i % 10));
        let (status, body) = app.hold(&fan, &event, &[&label]).await;
        assert_eq!(status, 201, "{body}");
        app.delete(&format!("/v1/holds/{}", body["hold_id"].as_str().unwrap()), Some(&fan)).await;
        if i % 10 == 0 {
            // The healthy viewer keeps up while the stalled one's buffer overflows.
            let (_, version) = app.bitmap(&event).await;
            healthy.catch_up_to(version).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (bitmap, version) = app.bitmap(&event).await;
    healthy.catch_up_to(version).await;
    assert_eq!(healthy.bitmap, bitmap);
}
