//! Operations: `/readyz` with each backend's check, `boxoffice migrate`, and demo seeding
//! by nodes started together.

use std::time::{Duration, Instant};

use boxoffice_server::{Application, Config};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::distributed::Backends;
use crate::helpers::{TestApp, spawn};
use crate::services::{FreshDatabase, RedisServer, redis_url};

/// Asks `/readyz` until `done` accepts the answer; panics after `patience`.
async fn readyz_until(
    app: &TestApp,
    patience: Duration,
    done: impl Fn(StatusCode, &Value) -> bool,
) -> (StatusCode, Value) {
    let started = Instant::now();
    loop {
        let (status, body) = app.get("/readyz", None).await;
        if done(status, &body) {
            return (status, body);
        }
        assert!(started.elapsed() < patience, "/readyz still answers {status} {body} after {patience:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readyz_of_an_embedded_server_reports_every_backend_ok() {
    let app = spawn().await;
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({
            "status": "ready",
            "backends": {
                "store": {"kind": "sqlite", "ok": true},
                "inventory": {"kind": "memory", "ok": true},
                "stream": {"kind": "in-process", "ok": true},
            },
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_a_lost_redis_as_degraded_and_is_ready_again_once_it_is_back() {
    let mut redis = RedisServer::start().await;
    let backends = Backends::fresh().await;
    let node = backends.node_on(&redis.url(), true).await;
    let (status, body) = node.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["backends"]["store"], json!({"kind": "postgres", "ok": true}));
    assert_eq!(body["backends"]["inventory"], json!({"kind": "redis", "ok": true}));
    assert_eq!(body["backends"]["stream"], json!({"kind": "in-process", "ok": true}));

    redis.kill();
    let started = Instant::now();
    let (status, body) =
        readyz_until(&node, Duration::from_secs(10), |status, _| status != StatusCode::OK).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["backends"]["inventory"]["kind"], "redis");
    assert_eq!(body["backends"]["inventory"]["ok"], false, "{body}");
    assert!(body["backends"]["inventory"]["error"].is_string(), "the failure is explained: {body}");
    assert_eq!(body["backends"]["store"]["ok"], true, "PostgreSQL is fine: {body}");
    assert_eq!(body["backends"]["stream"]["ok"], true, "{body}");
    // Each check is bounded, so the probe itself answers quickly while Redis is down.
    let asked = Instant::now();
    let (status, _) = node.get("/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(asked.elapsed() < Duration::from_secs(3), "a probe took {:?}", asked.elapsed());
    assert!(started.elapsed() < Duration::from_secs(10));

    redis.restart().await;
    let (_, body) = readyz_until(&node, Duration::from_secs(30), |status, _| status == StatusCode::OK).await;
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["backends"]["inventory"], json!({"kind": "redis", "ok": true}));
}

/// The PostgreSQL migrations the binary carries.
fn migration_files() -> usize {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../store/migrations/postgres");
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|f| f.as_ref().unwrap().path().extension().is_some_and(|e| e == "sql"))
        .count()
}

async fn boxoffice(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("boxoffice runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn migrate_applies_every_migration_to_a_fresh_database_and_then_nothing() {
    let database = FreshDatabase::create().await;
    let files = migration_files();
    let (ok, first) = boxoffice(&["migrate", "--database-url", &database.url()], &[]).await;
    assert!(ok, "{first}");
    assert!(first.contains("applied migration 0001 "), "{first}");
    assert!(first.contains(&format!("{files} migrations applied now, 0 before")), "{first}");
    // The second run (the URL from the environment this time) finds nothing to do.
    let (ok, second) = boxoffice(&["migrate"], &[("BOXOFFICE_DATABASE_URL", &database.url())]).await;
    assert!(ok, "{second}");
    assert!(
        second.contains(&format!("up to date: {files} migrations applied before, none to apply")),
        "{second}"
    );
    assert!(!second.contains("applied migration"), "{second}");

    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&database.url()).await.unwrap();
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(applied.len(), files, "each migration applied once: {applied:?}");
    assert!(applied.iter().all(|(_, success)| *success));
    sqlx::Connection::close(conn).await.unwrap();
}

#[tokio::test]
async fn migrate_of_an_unreachable_database_fails_without_showing_its_password() {
    // Nothing listens on port 1.
    let url = "postgres://bo:s3cret@127.0.0.1:1/boxoffice";
    let (ok, out) =
        boxoffice(&["migrate", "--database-url", url, "--backend-connect-timeout", "1"], &[]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("cannot migrate database"), "{out}");
    assert!(!out.contains("s3cret"), "{out}");
}

/// A demo node, served until `stop` is sent; ready after seeding, which takes a while.
async fn demo_node(
    database: &FreshDatabase,
    prefix: &str,
    audit_writer: bool,
) -> (String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>, tempfile::TempDir)
{
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path().to_path_buf());
    config.demo = true;
    config.database_url = Some(database.url());
    config.database_pool_size = 4;
    config.redis_url = Some(redis_url());
    config.redis_key_prefix = prefix.to_owned();
    config.audit_writer = Some(audit_writer);
    let app = Application::build(config).await.expect("node builds");
    let url = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    (url, stop, task, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_together_with_demo_seed_it_once() {
    let backends = Backends::fresh().await;
    let (a, b) = tokio::join!(
        demo_node(&backends.database, &backends.prefix, true),
        demo_node(&backends.database, &backends.prefix, false)
    );
    let client = reqwest::Client::new();
    let started = Instant::now();
    for url in [&a.0, &b.0] {
        loop {
            let ready =
                client.get(format!("{url}/readyz")).send().await.map(|r| r.status() == StatusCode::OK);
            if ready.unwrap_or(false) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(300), "{url} never became ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&backends.database.url()).await.unwrap();
    let venues: i64 = sqlx::query_scalar("SELECT count(*) FROM venues").fetch_one(&mut conn).await.unwrap();
    let stadiums: i64 = sqlx::query_scalar("SELECT count(*) FROM venues WHERE name = 'Riverside Stadium'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&mut conn).await.unwrap();
    sqlx::Connection::close(conn).await.unwrap();
    assert_eq!(stadiums, 1, "the demo was seeded once ({venues} venues, {events} events)");
    assert!(events as usize > boxoffice_server::demo::GENERATED_EVENTS, "{events} events");
    // The node that waited for the seeder serves the demo as well: the stadium show is ev_1.
    for url in [&a.0, &b.0] {
        let r = client.get(format!("{url}/v1/events/ev_1/availability?format=json")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url}");
    }
    for (_, stop, task, _dir) in [a, b] {
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}
