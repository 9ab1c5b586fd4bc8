//! End to end: a boxoffice server in this process (fresh data dir, dev auth, no payment
//! latency), small events made through the admin API, and short `holds`, `hot-seats`,
//! `browse`, `bare`, `viewers` and `onsale` runs against it. Each run must finish with a
//! passing oversell audit (where there is one) and counts that agree with each other;
//! nothing here depends on how fast the machine is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_loadgen::api::{Api, ApiConn};
use boxoffice_loadgen::client::{Requests, bearer};
use boxoffice_loadgen::{Args, LoadError, Report, execute};
use boxoffice_server::{Application, Config};
use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};

struct Server {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start_server() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = Application::build(Config::for_tests(dir.path().to_path_buf())).await.expect("the app builds");
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    let server = Server { addr, _dir: dir, stop: Some(stop) };
    let mut conn = api_conn(&server);
    for _ in 0..500 {
        if let Ok(reply) = conn.get("/readyz", None).await
            && reply.status == 200
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server did not become ready");
}

fn api_conn(server: &Server) -> ApiConn {
    let requests = Requests::new(&server.addr.to_string()).expect("host header");
    ApiConn::new(Arc::new(Api { addr: server.addr, requests, timeout: Duration::from_secs(10) }))
}

async fn call(
    conn: &mut ApiConn,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let auth = token.map(|t| bearer(t).expect("token header"));
    let body = (!body.is_null()).then(|| Bytes::from(body.to_string()));
    let reply = conn.call(method, path, auth.as_ref(), &[], body).await.expect("the call is answered");
    let value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, value)
}

async fn admin_token(conn: &mut ApiConn) -> String {
    let (status, token) =
        call(conn, Method::POST, "/v1/auth/token", None, json!({"user": "admin", "role": "admin"})).await;
    assert_eq!(status, 200, "{token}");
    token["token"].as_str().expect("token").to_owned()
}

/// A venue of one section `A` (`rows` x `per_row`) and an event there on sale now.
async fn on_sale_event(server: &Server, rows: u32, per_row: u32) -> String {
    let mut conn = api_conn(server);
    let admin = admin_token(&mut conn).await;
    let (status, venue) = call(
        &mut conn,
        Method::POST,
        "/v1/venues",
        Some(&admin),
        json!({"name": "Load Hall", "city": "Testville", "lat": 1.0, "lon": 2.0, "tiers": ["standard"],
               "sections": [{"name": "A", "rows": rows, "seats_per_row": per_row, "tier": "standard"}]}),
    )
    .await;
    assert_eq!(status, 201, "{venue}");
    let now = chrono::Utc::now();
    let (status, event) = call(
        &mut conn,
        Method::POST,
        "/v1/events",
        Some(&admin),
        json!({"name": "Load Show", "venue_id": venue["id"], "performer_ids": [], "category": "concert",
               "starts_at": (now + chrono::Duration::days(30)).to_rfc3339(),
               "onsale_at": (now - chrono::Duration::hours(1)).to_rfc3339(),
               "prices": {"standard": {"amount": 2500, "currency": "USD"}}}),
    )
    .await;
    assert_eq!(status, 201, "{event}");
    event["id"].as_str().expect("event id").to_owned()
}

/// How many seats the event's availability bitmap shows available.
async fn available(server: &Server, event: &str) -> u32 {
    let reply =
        api_conn(server).get(&format!("/v1/events/{event}/availability"), None).await.expect("bitmap");
    assert_eq!(reply.status, 200);
    reply.body.iter().map(|b| b.count_ones()).sum()
}

fn args(server: &Server, flags: &[&str]) -> Args {
    let target = format!("http://{}", server.addr);
    let mut all = vec!["--target", target.as_str()];
    all.extend_from_slice(flags);
    Args::from_flags(all).expect("valid flags")
}

fn status(report: &Report, op: &str, status: &str) -> u64 {
    report.operation(op).and_then(|o| o.statuses.get(status)).copied().unwrap_or(0)
}

/// The audit passed and the run's counts agree with the audit's facts.
fn assert_consistent(report: &Report) {
    let audit = report.audit.as_ref().expect("holds runs are audited");
    assert!(audit.passed, "{}", report.text());
    let f = &audit.facts;
    assert!(f.holds_created > 0, "some hold succeeded: {}", report.text());
    assert_eq!(f.holds_created, status(report, "hold", "201"), "{}", report.text());
    assert_eq!(
        f.holds_created,
        f.holds_released + f.holds_bought + f.holds_expired + f.holds_open,
        "{}",
        report.text()
    );
    assert_eq!(f.uncertain_seats, 0, "no hold request lost its answer: {}", report.text());
    for op in &report.operations {
        assert_eq!(op.transport_errors, 0, "{}", report.text());
    }
    let answered: u64 = report.operations.iter().map(|o| o.responses).sum();
    assert_eq!(answered, report.responses);
    assert_eq!(report.requests, report.responses, "every request got an answer: {}", report.text());
    let per_second: u64 = report.timeline.operations.iter().flat_map(|(_, counts)| counts.iter()).sum();
    assert_eq!(per_second, report.responses, "the timeline adds up to the answers");
    assert!(report.verdict().is_ok(), "{}", report.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_and_hot_seats_runs_pass_the_oversell_audit() {
    let server = start_server().await;
    let dir = tempfile::tempdir().expect("temp dir");

    // holds, hold-release, two worker threads; JSON and HTML reports.
    let released = on_sale_event(&server, 10, 20).await;
    let json_path = dir.path().join("release.json");
    let html_path = dir.path().join("release.html");
    let mut a = args(
        &server,
        &[
            "--scenario",
            "holds",
            "--event",
            &released,
            "--connections",
            "8",
            "--threads",
            "2",
            "--duration",
            "1.5",
            "--users",
            "50",
            "--seed",
            "1",
        ],
    );
    a.json = Some(json_path.clone());
    a.html = Some(html_path.clone());
    let report = execute(&a).await.expect("the run completes");
    assert_consistent(&report);
    let f = &report.audit.as_ref().expect("audit").facts;
    assert_eq!(f.holds_released, status(&report, "release", "204"));
    assert_eq!(f.holds_bought, 0);
    assert_eq!(f.valid_tickets, 0);
    assert_eq!(f.available_seats, 200 - f.open_holds_still_held, "{}", report.text());
    assert_eq!(report.cleanup.as_ref().map_or(0, |c| c.released), f.open_holds_still_held);
    assert_eq!(available(&server, &released).await, 200, "the clean-up released the holds left open");
    let json: Value =
        serde_json::from_slice(&std::fs::read(&json_path).expect("json written")).expect("valid JSON");
    assert_eq!(json["scenario"], "holds");
    assert_eq!(json["audit"]["passed"], true);
    assert_eq!(json["operations"][0]["name"], "hold");
    assert!(json["operations"][0]["latency_us"]["p99"].as_u64().is_some());
    let html = std::fs::read_to_string(&html_path).expect("html written");
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    assert!(html.matches("<svg").count() >= 2, "throughput and latency charts");
    assert!(!html.contains("http://") || !html.contains("src=\"http"), "no external assets");

    // holds, hold-checkout on Zipf seats: buyers sell the small event out.
    let bought = on_sale_event(&server, 4, 10).await;
    let report = execute(&args(
        &server,
        &[
            "--scenario",
            "holds",
            "--mix",
            "hold-checkout",
            "--zipf",
            "1.1",
            "--event",
            &bought,
            "--connections",
            "8",
            "--duration",
            "1.5",
            "--quiet",
        ],
    ))
    .await
    .expect("the run completes");
    assert_consistent(&report);
    let f = &report.audit.as_ref().expect("audit").facts;
    assert_eq!(report.users, Some(6), "one user per 7 seats by default");
    assert_eq!(f.holds_bought, status(&report, "checkout", "201"));
    assert_eq!(f.valid_tickets, f.holds_bought, "each order has the one seat it bought");
    assert_eq!(f.available_seats, 40 - f.valid_tickets);
    assert_eq!(status(&report, "hold", "422 HOLD_LIMIT"), 0, "no user reached the per-user limit");

    // hot-seats: 16 connections, 1000 users, 5 seats; each seat sold once at most.
    let hot = on_sale_event(&server, 2, 10).await;
    let report = execute(&args(
        &server,
        &[
            "--scenario",
            "hot-seats",
            "--seats",
            "5",
            "--event",
            &hot,
            "--connections",
            "16",
            "--duration",
            "1",
            "--quiet",
        ],
    ))
    .await
    .expect("the run completes");
    assert_consistent(&report);
    let f = &report.audit.as_ref().expect("audit").facts;
    assert!(f.valid_tickets <= 5, "{}", report.text());
    assert_eq!(f.valid_tickets, f.holds_bought);
    assert_eq!(f.available_seats, 20 - f.valid_tickets);
    assert!(status(&report, "hold", "409 SEATS_UNAVAILABLE") > 0, "users raced: {}", report.text());

    // The open model on the released event again, bounded by a request count.
    let report = execute(&args(
        &server,
        &[
            "--scenario",
            "holds",
            "--event",
            &released,
            "--rate",
            "400",
            "--connections",
            "4",
            "--duration",
            "1",
            "--requests",
            "200",
            "--quiet",
        ],
    ))
    .await
    .expect("the run completes");
    assert_consistent(&report);
    assert_eq!(report.model, "open");
    assert!(report.requests <= 200, "{}", report.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_and_browse_runs_count_what_they_send() {
    let server = start_server().await;
    let report = execute(&args(
        &server,
        &["--scenario", "bare", "--connections", "4", "--requests", "500", "--quiet"],
    ))
    .await
    .expect("the run completes");
    assert_eq!(report.requests, 500);
    assert_eq!(status(&report, "get", "200"), 500);
    assert_eq!(report.errors, 0);
    assert!(report.audit.is_none());

    let event = on_sale_event(&server, 3, 10).await;
    let report = execute(&args(
        &server,
        &["--scenario", "browse", "--event", &event, "--connections", "1", "--requests", "60", "--quiet"],
    ))
    .await
    .expect("the run completes");
    assert_eq!(report.requests, 60);
    assert_eq!(report.errors, 0, "{}", report.text());
    // The connection fetched the seat map once, then revalidated it.
    assert_eq!(status(&report, "seats", "200"), 1, "{}", report.text());
    assert_eq!(status(&report, "seats", "304"), 19, "{}", report.text());
    assert_eq!(status(&report, "availability", "200") + status(&report, "availability", "304"), 20);
    assert_eq!(status(&report, "event", "200"), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_bare_run_answers_every_request_it_sends() {
    let server = start_server().await;
    let report = execute(&args(
        &server,
        &["--scenario", "bare", "--connections", "3", "--pipeline", "8", "--requests", "1000", "--quiet"],
    ))
    .await
    .expect("the run completes");
    assert_eq!(report.requests, 1000, "{}", report.text());
    assert_eq!(status(&report, "get", "200"), 1000, "{}", report.text());
    assert_eq!(report.errors, 0);
    assert_eq!(report.pipeline, Some(8));
    assert!(report.headline().contains("pipelined 8 deep"), "{}", report.headline());
    let cpu = report.generator_cpu.expect("the generator's CPU time is measured");
    assert!(cpu.seconds > 0.0 && cpu.us_per_answer > 0.0, "{cpu:?}");

    for flags in [
        &["--scenario", "holds", "--pipeline", "4"][..],
        &["--scenario", "bare", "--pipeline", "4", "--rate", "100"][..],
    ] {
        let err = execute(&args(&server, flags)).await.expect_err("pipelining is for closed bare runs");
        assert!(matches!(err, LoadError::Usage(_)), "{flags:?}: {err}");
    }
    assert!(Args::from_flags(["--pipeline", "0"]).is_err());
    assert!(Args::from_flags(["--pipeline", "1025"]).is_err());
}

/// A server that answers `ok` to each request head and closes every connection after
/// `answers` answers (the last one saying `connection: close`).
async fn closing_server(answers: usize) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut answered = 0;
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        answered += 1;
                        let last = answered == answers;
                        let answer: &[u8] = if last {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                        } else {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        };
                        if stream.write_all(answer).await.is_err() || last {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_run_counts_requests_lost_to_a_closed_connection_and_reconnects() {
    let addr = closing_server(5).await;
    let target = format!("http://{addr}");
    let report = execute(
        &Args::from_flags([
            "--target",
            &target,
            "--scenario",
            "bare",
            "--connections",
            "2",
            "--pipeline",
            "4",
            "--requests",
            "300",
            "--quiet",
        ])
        .expect("flags"),
    )
    .await
    .expect("the run completes");
    let ok = status(&report, "get", "200");
    let lost = report.operation("get").map_or(0, |o| o.transport_errors);
    assert_eq!(report.requests, 300, "{}", report.text());
    assert_eq!(ok + lost, 300, "{}", report.text());
    assert_eq!(report.errors, lost, "{}", report.text());
    assert_eq!(report.connect_errors, 0, "{}", report.text());
    // A connection gives at most 5 answers: more than two connections' worth means the
    // workers reconnected after each close.
    assert!(ok > 2 * 5, "{}", report.text());
}

/// A keep-alive server that answers `ok` to each request head and counts them.
async fn counting_server() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        counted.fetch_add(1, Ordering::SeqCst);
                        if stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err()
                        {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_against_several_targets_spreads_its_connections_over_them() {
    use std::sync::atomic::Ordering;
    let (a, a_count) = counting_server().await;
    let (b, b_count) = counting_server().await;
    let targets = format!("http://{a},http://{b}");
    for pipeline in ["1", "4"] {
        let before = (a_count.load(Ordering::SeqCst), b_count.load(Ordering::SeqCst));
        let flags = [
            "--target",
            &targets,
            "--scenario",
            "bare",
            "--connections",
            "4",
            "--pipeline",
            pipeline,
            "--requests",
            "400",
            "--quiet",
        ];
        let report = execute(&Args::from_flags(flags).expect("flags")).await.expect("the run completes");
        assert_eq!(status(&report, "get", "200"), 400, "{}", report.text());
        assert_eq!(report.target, targets);
        let got_a = a_count.load(Ordering::SeqCst) - before.0;
        let got_b = b_count.load(Ordering::SeqCst) - before.1;
        // Set-up probes go to the first target only; every measured request went to one
        // of the two, and both took a share.
        assert!(got_a + got_b >= 400, "{got_a} + {got_b}");
        assert!(got_a > 0 && got_b > 0, "pipeline {pipeline}: {got_a} / {got_b}");
    }
    let twice = format!("http://{a},http://{a}");
    let err = execute(&Args::from_flags(["--target", &twice, "--scenario", "bare"]).expect("flags"))
        .await
        .expect_err("a target named twice");
    assert!(matches!(err, LoadError::Usage(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_targets_and_unknown_events_are_refused_clearly() {
    let err =
        execute(&Args::from_flags(["--target", "http://192.0.2.1:80", "--scenario", "bare"]).expect("flags"))
            .await
            .expect_err("a remote target is refused");
    assert!(matches!(err, LoadError::Usage(_)), "{err}");
    assert!(err.to_string().contains("loopback"), "{err}");

    let server = start_server().await;
    let err = execute(&args(&server, &["--scenario", "holds", "--event", "ev_999999", "--duration", "1"]))
        .await
        .expect_err("an unknown event is refused");
    assert!(matches!(err, LoadError::Setup(_)), "{err}");
    assert!(err.to_string().contains("ev_999999"), "{err}");

    for scenario in ["viewers", "onsale"] {
        let err = execute(&args(&server, &["--scenario", scenario, "--event", "ev_999999", "--quiet"]))
            .await
            .expect_err("an unknown event is refused");
        assert!(matches!(err, LoadError::Setup(_)), "{scenario}: {err}");
    }

    assert!(Args::from_flags(["--connections", "10001"]).is_err());
    assert!(Args::from_flags(["--duration", "3601"]).is_err());
    assert!(Args::from_flags(["--duration", "0"]).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_fleet_sees_every_change_and_measures_its_staleness() {
    let server = start_server().await;
    let event = on_sale_event(&server, 40, 50).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let pid = std::process::id().to_string();
    let mut a = args(
        &server,
        &[
            "--scenario",
            "viewers",
            "--event",
            &event,
            "--viewers",
            "40",
            "--threads",
            "2",
            "--changes-per-second",
            "200",
            "--duration",
            "1.5",
            "--server-pid",
            &pid,
            "--seed",
            "5",
            "--quiet",
        ],
    );
    a.json = Some(dir.path().join("viewers.json"));
    a.html = Some(dir.path().join("viewers.html"));
    let report = execute(&a).await.expect("the run completes");
    let text = report.text();
    let v = report.viewers.as_ref().expect("a viewers report");
    assert_eq!(v.fleet, 40, "{text}");
    assert_eq!(v.connected, 40, "every viewer got a frame: {text}");
    assert_eq!(v.never_connected, 0);
    assert_eq!(v.viewers_without_snapshot, 0, "every stream starts with a snapshot: {text}");
    assert_eq!(v.viewers_without_deltas, 0, "every viewer got deltas: {text}");
    assert_eq!(v.dropped, 0, "no viewer was dropped at this scale: {text}");
    assert_eq!(v.gaps, 0, "every delta continued from the viewer's version: {text}");
    assert!(v.open_failures.is_empty(), "{text}");
    assert!(v.changes > 0, "{text}");
    assert_eq!(v.changes_unknown, 0);
    assert_eq!(
        v.changes,
        report.operation("hold").map_or(0, |o| o.statuses.get("201").copied().unwrap_or(0))
            + report.operation("release").map_or(0, |o| o.statuses.get("204").copied().unwrap_or(0))
    );
    assert_eq!(v.last_version, v.first_version + v.changes, "the writer was alone on the event: {text}");
    assert!(v.caught_up, "every viewer reached the last change: {text}");
    assert_eq!(v.sample_stride, 1);
    assert_eq!(v.missed, 0, "{text}");
    assert_eq!(v.samples, v.connected * v.changes, "each viewer measured each change once: {text}");
    assert!(v.deltas >= 40, "{text}");
    assert!(v.bytes > 0);
    assert!(v.staleness_us.max >= v.staleness_us.p50 && v.staleness_us.p50 > 0, "{text}");
    let memory = v.server_memory.as_ref().expect("the server's memory was read");
    assert!(memory.before_bytes > 0 && memory.idle_bytes > 0 && memory.after_bytes > 0);
    assert!(report.verdict().is_ok(), "{text}");
    assert_eq!(available(&server, &event).await, 2000, "the writer's holds were released at the end");

    let json: Value = serde_json::from_slice(&std::fs::read(dir.path().join("viewers.json")).expect("json"))
        .expect("valid JSON");
    assert_eq!(json["scenario"], "viewers");
    assert_eq!(json["viewers"]["connected"], 40);
    assert!(json["viewers"]["staleness_us"]["p99"].as_u64().is_some_and(|p| p > 0));
    let html = std::fs::read_to_string(dir.path().join("viewers.html")).expect("html");
    assert!(html.contains("Live map: 40 viewers") && html.contains("Staleness by percentile"));
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onsale_fans_queue_with_proof_of_work_hold_and_pay_and_the_audit_passes() {
    let server = start_server().await;
    // 800 seats: the snapshot's data line is longer than the stream reader's line prefix.
    let event = on_sale_event(&server, 20, 40).await;
    let mut conn = api_conn(&server);
    let admin = admin_token(&mut conn).await;
    let (patched, body) = call(
        &mut conn,
        Method::PATCH,
        &format!("/v1/events/{event}"),
        Some(&admin),
        json!({"queue": {"enabled": true, "admit_rate_per_second": 100, "proof_of_work_bits": 6}}),
    )
    .await;
    assert_eq!(patched, 200, "{body}");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut a = args(
        &server,
        &[
            "--scenario",
            "onsale",
            "--event",
            &event,
            "--rate",
            "20",
            "--duration",
            "1",
            "--seats-per-user",
            "2",
            "--abandon-rate",
            "0.25",
            "--follow-ms",
            "200",
            "--seed",
            "3",
            "--quiet",
        ],
    );
    a.html = Some(dir.path().join("onsale.html"));
    let report = execute(&a).await.expect("the run completes");
    let text = report.text();
    let o = report.onsale.as_ref().expect("an onsale report");
    assert!(o.queue_enabled && o.proof_of_work_bits == 6, "{text}");
    assert_eq!(o.arrived, 20, "20 fans/s for 1 s: {text}");
    assert_eq!(o.joined, o.arrived, "{text}");
    assert_eq!(o.admitted, o.arrived, "{text}");
    assert!(o.pow_hashes >= o.joined, "{text}");
    assert!(o.held > 0 && o.paid > 0, "{text}");
    assert_eq!(
        o.paid + o.declined + o.abandoned + o.sold_out + o.failed + o.queue_expired + o.unfinished,
        o.arrived,
        "every fan's story ended one way: {text}"
    );
    assert_eq!(o.failed, 0, "{text}");
    let audit = report.audit.as_ref().expect("the onsale is audited");
    assert!(audit.passed, "{text}");
    assert_eq!(audit.facts.orders, o.paid, "{text}");
    assert_eq!(audit.facts.valid_tickets, o.seats_bought, "{text}");
    assert_eq!(o.seats_bought, 2 * o.paid);
    for op in ["challenge", "join", "poll", "event", "seats", "stream", "hold", "checkout"] {
        assert!(report.operation(op).is_some_and(|s| s.responses > 0), "{op} was measured: {text}");
    }
    assert_eq!(
        status(&report, "stream", "200"),
        o.admitted,
        "every fan read the live map's snapshot: {text}"
    );
    assert!(report.verdict().is_ok(), "{text}");
    assert_eq!(
        available(&server, &event).await,
        800 - o.seats_bought as u32,
        "abandoned holds were released after the audit: {text}"
    );
    let html = std::fs::read_to_string(dir.path().join("onsale.html")).expect("html");
    assert!(html.contains("Onsale: conversion") && html.contains("Oversell audit"));
}
