//! `GET /v1/search`: catalog changes reach the index through the change feed, filters and
//! ranking over HTTP, validation, the demo catalog, restarts and `search reindex`.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, send, spawn, spawn_in, spawn_with, time_from_now};

/// Polls are this far apart...
const POLL: Duration = Duration::from_millis(50);
/// ...and give up after this many (10 s: far above the feed's interval of 200 ms).
const MAX_POLLS: u32 = 200;

/// `GET /v1/search?{query}`, answered 200.
async fn search(app: &TestApp, query: &str) -> Value {
    let (status, body) = app.get(&format!("/v1/search?{query}"), None).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

/// Searches until `done` holds for the answer; panics if it never does.
async fn search_until(app: &TestApp, query: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..MAX_POLLS {
        let body = search(app, query).await;
        if done(&body) {
            return body;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("search {query} never showed the change: {}", search(app, query).await);
}

fn ids(page: &Value) -> Vec<&str> {
    page["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect()
}

async fn patch(app: &TestApp, admin: &str, event: &str, body: Value) -> Value {
    let (status, body) =
        send(app.client.patch(app.url(&format!("/v1/events/{event}"))).bearer_auth(admin).json(&body)).await;
    // 202 when the change cancels the event (its refund job starts).
    let expected = if body["status"] == "cancelled" { StatusCode::ACCEPTED } else { StatusCode::OK };
    assert_eq!(status, expected, "{body}");
    body
}

/// A venue in `city` at `lat`/`lon` with 2 x 3 seats; returns its id.
async fn venue_at(app: &TestApp, admin: &str, name: &str, city: &str, lat: f64, lon: f64) -> String {
    let (status, venue) = app
        .post(
            "/v1/venues",
            Some(admin),
            json!({"name": name, "city": city, "lat": lat, "lon": lon, "tiers": ["standard"],
                   "sections": [{"name": "A", "rows": 2, "seats_per_row": 3}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{venue}");
    venue["id"].as_str().unwrap().to_owned()
}

/// An event on sale now, starting in `days`; returns its id.
async fn event(app: &TestApp, admin: &str, venue: &str, name: &str, category: &str, days: i64) -> String {
    let (status, event) = app
        .post(
            "/v1/events",
            Some(admin),
            json!({"name": name, "venue_id": venue, "category": category,
                   "starts_at": time_from_now(chrono::Duration::days(days)),
                   "onsale_at": time_from_now(chrono::Duration::hours(-1)),
                   "prices": {"standard": {"amount": 2500, "currency": "USD"}},
                   "description": "A night to remember"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    event["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_created_event_becomes_searchable_and_follows_a_rename_a_reschedule_and_a_cancel() {
    let app = spawn().await;
    let admin = app.admin().await;
    let venue = venue_at(&app, &admin, "Quahog Hall", "Quahog", 41.7, -71.4).await;
    let id = event(&app, &admin, &venue, "Zyxwvut Orchestra Night", "classical", 30).await;

    let found = search_until(&app, "q=zyxwvut", |p| ids(p) == [id.as_str()]).await;
    let hit = &found["items"][0];
    assert_eq!(hit["name"], "Zyxwvut Orchestra Night");
    assert_eq!(hit["city"], "Quahog");
    assert_eq!(hit["venue_name"], "Quahog Hall");
    assert_eq!(hit["status"], "published");
    assert_eq!(hit["on_sale"], true);
    assert_eq!(hit["sold_out"], false);
    assert_eq!(hit["price_min"], json!({"amount": 2500, "currency": "USD"}));
    assert!(hit["score"].as_f64().unwrap() > 0.0);
    // The same item shape as the event list.
    let (_, listed) = app.get("/v1/events?city=Quahog", None).await;
    for (key, value) in listed["items"][0].as_object().unwrap() {
        assert_eq!(&hit[key], value, "field {key}");
    }

    for bad in [json!({"name": ""}), json!({"name": "x".repeat(201)}), json!({"description": "\u{7}"})] {
        let (status, body) =
            send(app.client.patch(app.url(&format!("/v1/events/{id}"))).bearer_auth(&admin).json(&bad)).await;
        assert_error(status, &body, 400, "INVALID_REQUEST");
    }
    patch(&app, &admin, &id, json!({"name": "Quuxly Gala"})).await;
    search_until(&app, "q=quuxly", |p| ids(p) == [id.as_str()]).await;
    assert!(ids(&search(&app, "q=zyxwvut").await).is_empty(), "the old name is gone");

    let later = time_from_now(chrono::Duration::days(90));
    patch(&app, &admin, &id, json!({"starts_at": later})).await;
    let from = time_from_now(chrono::Duration::days(60));
    search_until(&app, &format!("q=quuxly&from={from}"), |p| ids(p) == [id.as_str()]).await;

    patch(&app, &admin, &id, json!({"status": "cancelled"})).await;
    search_until(&app, "q=quuxly", |p| p["items"][0]["status"] == "cancelled").await;
    assert_eq!(search(&app, "q=quuxly").await["items"][0]["on_sale"], false);
}

#[tokio::test]
async fn filters_and_ranking_work_over_http() {
    let app = spawn().await;
    let admin = app.admin().await;
    // Two venues 111 km apart along a meridian, and one far away.
    let north = venue_at(&app, &admin, "North Hall", "Northtown", 1.0, 30.0).await;
    let south = venue_at(&app, &admin, "South Hall", "Southtown", 0.0, 30.0).await;
    let far = venue_at(&app, &admin, "Far Hall", "Faraway", -40.0, -70.0).await;
    let jazz_north = event(&app, &admin, &north, "Velvet Jazz Trio", "concert", 25).await;
    let jazz_south = event(&app, &admin, &south, "Velvet Jazz Trio: Reunion at Dawn", "concert", 20).await;
    let comedy = event(&app, &admin, &south, "Velvet Comedy Hour", "comedy", 5).await;
    let far_show = event(&app, &admin, &far, "Distant Velvet", "festival", 40).await;
    search_until(&app, "q=velvet&limit=100", |p| ids(p).len() == 4).await;

    let (north_id, south_id) = (jazz_north.as_str(), jazz_south.as_str());
    assert_eq!(ids(&search(&app, "q=jazz+trio").await), [north_id, south_id], "the exact name first");
    assert_eq!(ids(&search(&app, "q=velvet+jazz&sort=date").await), [south_id, north_id]);
    assert_eq!(ids(&search(&app, "q=velvet&city=SOUTHTOWN&category=Comedy").await), [comedy.as_str()]);
    assert_eq!(ids(&search(&app, "q=comdy").await), [comedy.as_str()], "a typo in a 5-letter word");
    assert_eq!(ids(&search(&app, "category=concert").await), [south_id, north_id], "no text: date order");
    let (from, to) = (time_from_now(chrono::Duration::days(8)), time_from_now(chrono::Duration::days(22)));
    assert_eq!(ids(&search(&app, &format!("from={from}&to={to}")).await), [south_id]);

    let near_south = search(&app, "lat=0&lon=30&radius_km=111.3").await;
    let mut near: Vec<&str> = ids(&near_south);
    near.sort();
    let mut expected = vec![north_id, south_id, comedy.as_str()];
    expected.sort();
    assert_eq!(near, expected, "the venue 111.2 km away is inside 111.3 km");
    let distances: Vec<f64> =
        near_south["items"].as_array().unwrap().iter().map(|e| e["distance_km"].as_f64().unwrap()).collect();
    assert!(distances.iter().all(|d| *d <= 111.3), "{distances:?}");
    assert_eq!(ids(&search(&app, "lat=0&lon=30&radius_km=111.1").await), [comedy.as_str(), south_id]);
    assert_eq!(ids(&search(&app, "lat=-40&lon=-70").await), [far_show.as_str()], "default radius 50 km");
}

#[tokio::test]
async fn bad_search_parameters_answer_400() {
    let app = spawn().await;
    for query in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "from=yesterday",
        "to=2026-13-01T00:00:00Z",
        "from=2027-01-02T00:00:00Z&to=2027-01-01T00:00:00Z",
        "lat=91&lon=0",
        "lat=-90.5&lon=0",
        "lat=0&lon=180.1",
        "lat=10",
        "lon=10",
        "lat=abc&lon=1",
        "lat=NaN&lon=1",
        "lat=1&lon=1&radius_km=0",
        "lat=1&lon=1&radius_km=-5",
        "lat=1&lon=1&radius_km=20001",
        "lat=1&lon=1&radius_km=inf",
        "radius_km=5",
        "sort=popularity",
        "sort=relevance",
        "available=maybe",
        "cursor=not-a-cursor",
    ] {
        let (status, body) = app.get(&format!("/v1/search?{query}"), None).await;
        assert_error(status, &body, 400, "INVALID_REQUEST");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty(), "{query}");
    }
    let long = "x".repeat(501);
    let (status, body) = app.get(&format!("/v1/search?q={long}"), None).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    // The edges themselves are fine.
    for query in
        ["limit=1", "limit=100", "lat=90&lon=-180&radius_km=20000", "lat=-90&lon=180&radius_km=0.001", "q="]
    {
        search(&app, query).await;
    }
}

#[tokio::test]
async fn a_sold_out_event_is_flagged_and_can_be_left_out() {
    let app = spawn().await;
    let admin = app.admin().await;
    let venue = venue_at(&app, &admin, "Tiny Room", "Smallville", 5.0, 5.0).await;
    let id = event(&app, &admin, &venue, "Whisper Sessions", "concert", 3).await;
    search_until(&app, "q=whisper", |p| ids(p) == [id.as_str()]).await;
    let fan = app.fan("ann").await;
    app.buy(&fan, &id, &["A-1-1", "A-1-2", "A-1-3"]).await;
    let fan = app.fan("bob").await;
    app.buy(&fan, &id, &["A-2-1", "A-2-2", "A-2-3"]).await;
    search_until(&app, "q=whisper", |p| p["items"][0]["sold_out"] == true).await;
    assert!(ids(&search(&app, "q=whisper&available=true").await).is_empty());
}

#[tokio::test]
async fn the_demo_catalog_is_searchable_by_words_typos_places_and_pages() {
    let app = spawn_with(|c| c.demo = true).await;
    // Seeded before ready, indexed before ready: no wait needed.
    let opera = search(&app, "category=opera&limit=100").await;
    assert!(ids(&opera).len() >= 100, "a tenth of the demo is opera");
    let hamlet = search(&app, "q=hamlt&limit=100").await;
    let names: HashSet<&str> =
        hamlet["items"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(names.contains("Hamlet"), "{names:?}");
    assert!(names.iter().all(|n| n.to_lowercase().contains("hamlet")), "{names:?}");
    let paris = search(&app, "lat=48.8566&lon=2.3522&radius_km=25&limit=100").await;
    assert!(!ids(&paris).is_empty());
    assert!(paris["items"].as_array().unwrap().iter().all(|e| e["city"] == "Paris"));
    let stadium = search(&app, "q=aurora+skies+stadium+tour").await;
    assert_eq!(stadium["items"][0]["id"], "ev_1", "the stadium show on sale now");

    // Pages of the whole catalog in date order: each event once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut starts = Vec::new();
    loop {
        let query = match &cursor {
            Some(c) => format!("limit=100&cursor={c}"),
            None => "limit=100".into(),
        };
        let page = search(&app, &query).await;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
            starts.push(item["starts_at"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert!(seen.len() >= 2_000, "{}", seen.len());
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len(), "no duplicate");
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "date order");
    let cities: HashSet<&str> =
        opera["items"].as_array().unwrap().iter().map(|e| e["city"].as_str().unwrap()).collect();
    assert!(cities.len() >= 20, "{cities:?}");
}

#[tokio::test]
async fn the_index_survives_a_restart_and_a_reindex_rebuilds_the_same_state() {
    let app = spawn().await;
    let admin = app.admin().await;
    let venue = venue_at(&app, &admin, "Keep Hall", "Keepsake", 10.0, 10.0).await;
    let first = event(&app, &admin, &venue, "Persistent Parade", "family", 7).await;
    let second = event(&app, &admin, &venue, "Durable Drums", "concert", 8).await;
    patch(&app, &admin, &second, json!({"status": "cancelled", "name": "Durable Drums (cancelled)"})).await;
    let settled = |p: &Value| ids(p).len() == 2 && p["items"][1]["status"] == "cancelled";
    let before = search_until(&app, "city=keepsake", settled).await;

    // `search reindex` refuses while a server holds the data dir.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .args(["search", "reindex", "--data-dir"])
        .arg(app.data_dir.path())
        .output()
        .expect("the binary runs");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("stop it before reindexing"), "{stderr}");

    let dir = app.stop().await;
    let app = spawn_in(dir, |_| {}).await;
    assert_eq!(search(&app, "city=keepsake").await, before, "the index survived the restart");
    let (status, body) = app.get("/v1/search?q=persistent", None).await;
    assert_eq!((status, ids(&body)), (StatusCode::OK, vec![first.as_str()]));

    let dir = app.stop().await;
    let rebuilt = boxoffice_server::search::reindex(dir.path()).await.expect("reindex");
    assert_eq!(rebuilt.events, 2);
    let app = spawn_in(dir, |_| {}).await;
    assert_eq!(search(&app, "city=keepsake").await, before, "reindex equals the incremental state");
    // And the feed goes on from where the rebuild left it.
    let third = event(&app, &app.admin().await, &venue, "Persistent Parade Returns", "family", 9).await;
    search_until(&app, "q=persistent", |p| ids(p).contains(&third.as_str())).await;
}
