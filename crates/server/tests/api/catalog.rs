//! The catalog: event lists and details, seat geometry, the admin routes that create
//! venues, performers and events, and `--demo` seeding.

use std::collections::HashSet;

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, bit, send_raw, spawn, spawn_in, spawn_with, time_from_now};

fn one_section() -> Value {
    json!([{"name": "A", "rows": 2, "seats_per_row": 5, "tier": "premium"}])
}

/// 20:00 UTC on the day `days` from today: events created for one day start at one time.
fn evening_in(days: i64) -> String {
    (chrono::Utc::now().date_naive() + Duration::days(days))
        .and_hms_opt(20, 0, 0)
        .unwrap()
        .and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Creates an event starting `days` from now (on sale since an hour ago); returns its id.
async fn event_in(app: &TestApp, admin: &str, venue: &str, category: &str, days: i64) -> String {
    let (status, event) =
        app.event_at(admin, venue, category, &evening_in(days), &time_from_now(-Duration::hours(1))).await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    event["id"].as_str().unwrap().to_owned()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

/// Pages through `/v1/events{query}` with `limit`; returns every item in order.
async fn all_events(app: &TestApp, query: &str, limit: u32) -> Vec<Value> {
    let sep = if query.is_empty() { "?" } else { "&" };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!("/v1/events{query}{sep}limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = app.get(&path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let got = page["items"].as_array().unwrap();
        assert!(got.len() <= limit as usize);
        items.extend(got.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(got.len(), limit as usize, "only the last page may be short");
                cursor = Some(c.to_owned());
            }
            None => return items,
        }
    }
    panic!("the event list never ended");
}

#[tokio::test]
async fn event_list_filters_by_city_category_and_start_time_ordered_by_start() {
    let app = spawn().await;
    let admin = app.admin().await;
    let paris = app.venue(&admin, "Paris", one_section()).await;
    let oslo = app.venue(&admin, "Oslo", one_section()).await;
    let paris_concert_10 = event_in(&app, &admin, &paris, "concert", 10).await;
    let paris_theater_20 = event_in(&app, &admin, &paris, "theater", 20).await;
    let oslo_concert_5 = event_in(&app, &admin, &oslo, "concert", 5).await;
    let oslo_sport_30 = event_in(&app, &admin, &oslo, "sport", 30).await;

    let (status, page) = app.get("/v1/events", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ids(&page),
        [
            oslo_concert_5.as_str(),
            paris_concert_10.as_str(),
            paris_theater_20.as_str(),
            oslo_sport_30.as_str()
        ]
    );
    assert!(page["next_cursor"].is_null());
    let first = &page["items"][0];
    for field in ["id", "name", "city", "category", "starts_at", "onsale_at", "status", "seat_count"] {
        assert!(!first[field].is_null(), "summary lacks {field}: {first}");
    }
    assert_eq!(first["city"], "Oslo");
    assert_eq!(first["seat_count"], 10);
    assert_eq!(first["status"], "published");

    let (_, page) = app.get("/v1/events?city=Paris", None).await;
    assert_eq!(ids(&page), [paris_concert_10.as_str(), paris_theater_20.as_str()]);
    let (_, page) = app.get("/v1/events?category=concert", None).await;
    assert_eq!(ids(&page), [oslo_concert_5.as_str(), paris_concert_10.as_str()]);
    let (_, page) = app.get("/v1/events?city=Oslo&category=concert", None).await;
    assert_eq!(ids(&page), [oslo_concert_5.as_str()]);
    let from = time_from_now(Duration::days(8));
    let to = time_from_now(Duration::days(25));
    let (_, page) = app.get(&format!("/v1/events?from={from}&to={to}"), None).await;
    assert_eq!(ids(&page), [paris_concert_10.as_str(), paris_theater_20.as_str()]);
    let (_, page) = app.get(&format!("/v1/events?from={from}"), None).await;
    assert_eq!(ids(&page), [paris_concert_10.as_str(), paris_theater_20.as_str(), oslo_sport_30.as_str()]);
    let (_, page) = app.get(&format!("/v1/events?to={from}"), None).await;
    assert_eq!(ids(&page), [oslo_concert_5.as_str()]);
    let (_, page) = app.get("/v1/events?city=Lima", None).await;
    assert_eq!(page["items"], json!([]));
    assert!(page["next_cursor"].is_null());
}

#[tokio::test]
async fn event_list_pages_through_every_event_with_the_cursor_without_gaps_or_duplicates() {
    let app = spawn().await;
    let admin = app.admin().await;
    let venue = app.venue(&admin, "Paris", one_section()).await;
    // Two events share a start time: the cursor must still not skip or repeat one.
    for days in [3, 1, 7, 2, 2, 9, 4] {
        event_in(&app, &admin, &venue, "concert", days).await;
    }
    let everything = all_events(&app, "", 100).await;
    assert_eq!(everything.len(), 7);

    for limit in [1, 2, 3, 7] {
        let paged = all_events(&app, "", limit).await;
        let paged_ids: Vec<&str> = paged.iter().map(|e| e["id"].as_str().unwrap()).collect();
        let all_ids: Vec<&str> = everything.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(paged_ids, all_ids, "limit {limit}");
        let unique: HashSet<&str> = paged_ids.iter().copied().collect();
        assert_eq!(unique.len(), 7, "limit {limit}");
        let starts: Vec<&str> = paged.iter().map(|e| e["starts_at"].as_str().unwrap()).collect();
        let mut sorted = starts.clone();
        sorted.sort();
        assert_eq!(starts, sorted, "ordered by starts_at");
    }
    let (_, page) = app.get("/v1/events", None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 7, "default limit 20 holds all seven");
    // A filtered list pages too.
    let (_, first) = app.get("/v1/events?city=Paris&limit=4", None).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 4);
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let (_, second) = app.get(&format!("/v1/events?city=Paris&limit=4&cursor={cursor}"), None).await;
    assert_eq!(second["items"].as_array().unwrap().len(), 3);
    assert!(second["next_cursor"].is_null());
}

#[tokio::test]
async fn event_list_rejects_a_limit_outside_1_to_100_a_bad_time_and_a_bad_cursor() {
    let app = spawn().await;
    for query in [
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=-1",
        "from=yesterday",
        "to=2026-13-01T00:00:00Z",
        "cursor=not-a-cursor",
    ] {
        let (status, body) = app.get(&format!("/v1/events?{query}"), None).await;
        assert_error(status, &body, 400, "INVALID_REQUEST");
    }
    for query in ["limit=1", "limit=100"] {
        let (status, body) = app.get(&format!("/v1/events?{query}"), None).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
    }
}

#[tokio::test]
async fn event_detail_has_venue_performers_and_prices_and_is_cacheable_for_60_seconds_with_an_etag() {
    let app = spawn().await;
    let admin = app.admin().await;
    let (status, performer) =
        app.post("/v1/performers", Some(&admin), json!({"name": "The Testers", "genre": "rock"})).await;
    assert_eq!(status, StatusCode::CREATED, "{performer}");
    let venue = app.venue(&admin, "Paris", one_section()).await;
    let (status, created) = app
        .post(
            "/v1/events",
            Some(&admin),
            json!({"name": "Big Night", "venue_id": venue, "performer_ids": [performer["id"]],
                   "category": "Concert", "description": "Loud.",
                   "starts_at": time_from_now(Duration::days(3)),
                   "onsale_at": time_from_now(-Duration::hours(1)),
                   "prices": {"premium": {"amount": 9000, "currency": "USD"},
                              "standard": {"amount": 4000, "currency": "USD"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();

    let r = send_raw(app.client.get(app.url(&format!("/v1/events/{id}")))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    let etag = r.header("etag").expect("an ETag").to_owned();
    let detail = r.json();
    assert_eq!(detail["id"], id);
    assert_eq!(detail["name"], "Big Night");
    assert_eq!(detail["city"], "Paris");
    assert_eq!(detail["seat_count"], 10);
    assert_eq!(detail["venue"]["id"], venue);
    assert_eq!(detail["performers"][0]["name"], "The Testers");
    assert_eq!(detail["performers"][0]["id"], performer["id"]);
    assert_eq!(detail["prices"]["premium"], json!({"amount": 9000, "currency": "USD"}));
    assert_eq!(detail["prices"]["standard"], json!({"amount": 4000, "currency": "USD"}));
    assert_eq!(detail, created, "the created event is its detail");

    let r =
        send_raw(app.client.get(app.url(&format!("/v1/events/{id}"))).header("If-None-Match", &etag)).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r =
        send_raw(app.client.get(app.url(&format!("/v1/events/{id}"))).header("If-None-Match", "\"other\""))
            .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn event_detail_seats_and_availability_of_an_unknown_or_malformed_id_are_404() {
    let app = spawn().await;
    for id in ["ev_999999", "ev_", "999", "nonsense", "ev_1x", "ev_-1"] {
        for suffix in ["", "/seats", "/availability"] {
            let (status, body) = app.get(&format!("/v1/events/{id}{suffix}"), None).await;
            assert_error(status, &body, 404, "NOT_FOUND");
        }
    }
}

#[tokio::test]
async fn seats_document_is_immutable_with_an_etag_integer_rows_and_numbers_and_labels_that_resolve() {
    let app = spawn().await;
    let admin = app.admin().await;
    let event = app.on_sale_event(&admin, &[("A", 2, 3, "premium"), ("B", 1, 4, "standard")]).await;

    let r = send_raw(app.client.get(app.url(&format!("/v1/events/{event}/seats")))).await;
    assert_eq!(r.status, StatusCode::OK);
    let cache = r.header("cache-control").unwrap();
    assert!(cache.contains("immutable") && cache.contains("max-age=31536000"), "{cache}");
    let etag = r.header("etag").expect("an ETag").to_owned();
    let doc = r.json();
    let sections = doc["sections"].as_array().unwrap();
    assert_eq!(sections.len(), 2);
    assert_eq!(sections[0]["name"], "A");
    assert!(!sections[0]["id"].is_null());
    assert_eq!(sections[1]["name"], "B");
    let seats = doc["seats"].as_array().unwrap();
    assert_eq!(seats.len(), 10);
    let mut labels = HashSet::new();
    for (i, seat) in seats.iter().enumerate() {
        assert_eq!(seat["index"], i, "{seat}");
        for field in ["label", "section", "row", "number", "x", "y", "tier"] {
            assert!(!seat[field].is_null(), "seat lacks {field}: {seat}");
        }
        assert!(seat["row"].is_u64() && seat["number"].is_u64(), "row and number are integers: {seat}");
        assert!(seat["x"].is_number() && seat["y"].is_number());
        let label = format!("{}-{}-{}", seat["section"].as_str().unwrap(), seat["row"], seat["number"]);
        assert_eq!(seat["label"], label.as_str());
        assert!(labels.insert(label));
    }
    assert_eq!(seats[0]["tier"], "premium");
    assert_eq!(seats[9]["tier"], "standard");

    // Every label resolves to its index: a hold of it reports that index and clears that bit.
    let fan = app.fan("alice").await;
    for seat in [&seats[4], &seats[8]] {
        let (status, hold) = app.hold(&fan, &event, &[seat["label"].as_str().unwrap()]).await;
        assert_eq!(status, StatusCode::CREATED, "{hold}");
        assert_eq!(hold["seats"][0]["index"], seat["index"]);
        assert_eq!(hold["seats"][0]["label"], seat["label"]);
        let (bitmap, _) = app.bitmap(&event).await;
        assert!(!bit(&bitmap, seat["index"].as_u64().unwrap() as u32));
    }

    let r = send_raw(
        app.client.get(app.url(&format!("/v1/events/{event}/seats"))).header("If-None-Match", &etag),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    // Holds do not change the geometry.
    let (_, again) = app.get(&format!("/v1/events/{event}/seats"), None).await;
    assert_eq!(again, doc);
}

#[tokio::test]
async fn venue_from_sections_gets_a_seat_count_and_its_events_copy_the_layout() {
    let app = spawn().await;
    let admin = app.admin().await;
    let (status, venue) = app
        .post(
            "/v1/venues",
            Some(&admin),
            json!({"name": "Club", "city": "Rome", "lat": 41.9, "lon": 12.5, "address": "Via 1",
                   "tiers": ["premium", "standard"],
                   "sections": [{"name": "Floor", "rows": 3, "seats_per_row": 4, "tier": "premium"},
                                {"name": "Up", "rows": 2, "seats_per_row": 5}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{venue}");
    assert!(venue["id"].is_string());
    assert_eq!(venue["seat_count"], 22);
    assert_eq!(venue["name"], "Club");
    assert_eq!(venue["city"], "Rome");
    let venue_id = venue["id"].as_str().unwrap();

    let first = event_in(&app, &admin, venue_id, "concert", 5).await;
    let second = event_in(&app, &admin, venue_id, "concert", 6).await;
    let (_, detail) = app.get(&format!("/v1/events/{first}"), None).await;
    assert_eq!(detail["seat_count"], 22);
    let (_, seats_first) = app.get(&format!("/v1/events/{first}/seats"), None).await;
    let (_, seats_second) = app.get(&format!("/v1/events/{second}/seats"), None).await;
    assert_eq!(seats_first, seats_second, "both events copy the venue's one layout");
    let seats = seats_first["seats"].as_array().unwrap();
    assert_eq!(seats.len(), 22);
    assert_eq!(seats[0]["label"], "Floor-1-1");
    assert_eq!(seats[11]["label"], "Floor-3-4");
    assert_eq!(seats[12]["label"], "Up-1-1");
    assert_eq!(seats[12]["tier"], "premium", "a section without a tier gets the first tier");
    let (bitmap, _) = app.bitmap(&first).await;
    assert_eq!(bitmap.len(), 3);
}

#[tokio::test]
async fn a_venue_reads_back_with_its_tiers_and_unknown_venues_are_404() {
    let app = spawn().await;
    let admin = app.admin().await;
    let venue_id = app.venue(&admin, "Oslo", one_section()).await;
    // Public, like the event pages that show it; cacheable briefly.
    let r = send_raw(app.client.get(app.url(&format!("/v1/venues/{venue_id}")))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    let venue = r.json();
    assert_eq!(venue["id"], venue_id.as_str());
    assert_eq!(venue["name"], "Hall");
    assert_eq!(venue["city"], "Oslo");
    assert_eq!(venue["seat_count"], 10);
    assert_eq!(venue["tiers"], json!(["premium", "standard"]));
    for missing in ["ve_999999", "ve_x", "1", "ev_1"] {
        let (status, body) = app.get(&format!("/v1/venues/{missing}"), None).await;
        assert_error(status, &body, 404, "NOT_FOUND");
    }
    let (_, doc) = app.get("/openapi.json", None).await;
    assert!(doc["paths"]["/v1/venues/{venue_id}"]["get"].is_object());
}

#[tokio::test]
async fn venue_from_explicit_seats_keeps_their_positions_and_order() {
    let app = spawn().await;
    let admin = app.admin().await;
    let (status, venue) = app
        .post(
            "/v1/venues",
            Some(&admin),
            json!({"name": "Round", "city": "Rome", "lat": 0.0, "lon": 0.0, "tiers": ["premium", "standard"],
                   "seats": [{"section": "R", "row": 1, "number": 2, "x": 10.5, "y": -3.0, "tier": "standard"},
                             {"section": "R", "row": 1, "number": 1, "x": 9.5, "y": -3.0},
                             {"section": "S", "row": 4, "number": 7, "x": 0.0, "y": 1.25, "tier": "premium"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{venue}");
    assert_eq!(venue["seat_count"], 3);
    let event = event_in(&app, &admin, venue["id"].as_str().unwrap(), "concert", 5).await;
    let (_, doc) = app.get(&format!("/v1/events/{event}/seats"), None).await;
    let seats = doc["seats"].as_array().unwrap();
    assert_eq!(seats[0]["label"], "R-1-2");
    assert_eq!(seats[0]["x"], 10.5);
    assert_eq!(seats[0]["y"], -3.0);
    assert_eq!(seats[0]["tier"], "standard");
    assert_eq!(seats[1]["label"], "R-1-1");
    assert_eq!(seats[1]["tier"], "premium");
    assert_eq!(seats[2]["label"], "S-4-7");
    assert_eq!(seats[2]["row"], 4);
    assert_eq!(seats[2]["number"], 7);
    assert_eq!(seats[2]["y"], 1.25);
}

#[tokio::test]
async fn venue_with_invalid_layouts_or_coordinates_is_rejected_with_400() {
    let app = spawn().await;
    let admin = app.admin().await;
    let base = json!({"name": "V", "city": "Rome", "lat": 1.0, "lon": 1.0});
    let with = |extra: Value| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let seat =
        |row: u32, number: u32| json!({"section": "A", "row": row, "number": number, "x": 0.0, "y": 0.0});
    let cases = [
        ("duplicate labels", with(json!({"seats": [seat(1, 1), seat(1, 2), seat(1, 1)]}))),
        (
            "duplicate sections",
            with(json!({"sections": [{"name": "A", "rows": 1, "seats_per_row": 1},
                                     {"name": "A", "rows": 1, "seats_per_row": 1}]})),
        ),
        // 1,000 rows of 201 seats: 201,000 seats, over the 200,000 limit.
        ("too many seats", with(json!({"sections": [{"name": "A", "rows": 1000, "seats_per_row": 201}]}))),
        (
            "both sections and seats",
            with(json!({"sections": [{"name": "A", "rows": 1, "seats_per_row": 1}], "seats": [seat(1, 1)]})),
        ),
        ("neither sections nor seats", base.clone()),
        ("no seats", with(json!({"seats": []}))),
        ("empty section", with(json!({"sections": [{"name": "A", "rows": 0, "seats_per_row": 4}]}))),
        ("seat number 0", with(json!({"seats": [seat(1, 0)]}))),
        (
            "dash in a section name",
            with(json!({"sections": [{"name": "A-B", "rows": 1, "seats_per_row": 1}]})),
        ),
        (
            "unknown tier",
            with(json!({"sections": [{"name": "A", "rows": 1, "seats_per_row": 1, "tier": "gold"}]})),
        ),
        ("lat 91", with(json!({"lat": 91.0, "sections": [{"name": "A", "rows": 1, "seats_per_row": 1}]}))),
        (
            "lat -90.5",
            with(json!({"lat": -90.5, "sections": [{"name": "A", "rows": 1, "seats_per_row": 1}]})),
        ),
        ("lon 181", with(json!({"lon": 181.0, "sections": [{"name": "A", "rows": 1, "seats_per_row": 1}]}))),
        (
            "empty name",
            with(json!({"name": " ", "sections": [{"name": "A", "rows": 1, "seats_per_row": 1}]})),
        ),
        (
            "unknown field",
            with(json!({"capacity": 3, "sections": [{"name": "A", "rows": 1, "seats_per_row": 1}]})),
        ),
    ];
    for (what, body) in cases {
        let (status, answer) = app.post("/v1/venues", Some(&admin), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert!(answer["error"]["code"].is_string() && answer["error"]["message"].is_string(), "{what}");
    }
    // Exactly 200,000 seats is allowed.
    let (status, answer) = app
        .post(
            "/v1/venues",
            Some(&admin),
            with(json!({"sections": [{"name": "A", "rows": 1000, "seats_per_row": 200}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["seat_count"], 200_000);
}

#[tokio::test]
async fn admin_routes_answer_401_without_a_valid_token_and_403_to_a_fan() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let staff = app.token("sam", "staff").await;
    let venue = app.venue(&admin, "Paris", one_section()).await;
    let bodies = [
        (
            "/v1/venues",
            json!({"name": "V", "city": "C", "lat": 0.0, "lon": 0.0,
                              "sections": [{"name": "A", "rows": 1, "seats_per_row": 1}]}),
        ),
        ("/v1/performers", json!({"name": "P"})),
        (
            "/v1/events",
            json!({"name": "E", "venue_id": venue, "category": "concert",
                              "starts_at": time_from_now(Duration::days(2)),
                              "onsale_at": time_from_now(Duration::days(1)),
                              "prices": {"premium": {"amount": 1, "currency": "USD"},
                                         "standard": {"amount": 1, "currency": "USD"}}}),
        ),
    ];
    for (path, body) in bodies {
        let (status, answer) = app.post(path, None, body.clone()).await;
        assert_error(status, &answer, 401, "UNAUTHENTICATED");
        let (status, answer) = app.post(path, Some("not.a.jwt"), body.clone()).await;
        assert_error(status, &answer, 401, "INVALID_TOKEN");
        let (status, answer) = app.post(path, Some(&fan), body.clone()).await;
        assert_error(status, &answer, 403, "FORBIDDEN");
        let (status, answer) = app.post(path, Some(&staff), body.clone()).await;
        assert_error(status, &answer, 403, "FORBIDDEN");
        // 401/403 outrank a bad body.
        let (status, answer) = app.post(path, Some(&fan), json!({"bogus": true})).await;
        assert_error(status, &answer, 403, "FORBIDDEN");
        let (status, answer) = app.post(path, Some(&admin), body).await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
    }
}

#[tokio::test]
async fn performer_is_created_by_an_admin_and_an_event_naming_an_unknown_one_is_rejected() {
    let app = spawn().await;
    let admin = app.admin().await;
    let (status, performer) = app.post("/v1/performers", Some(&admin), json!({"name": "Solo"})).await;
    assert_eq!(status, StatusCode::CREATED, "{performer}");
    assert!(performer["id"].is_string());
    assert_eq!(performer["name"], "Solo");
    assert!(performer["genre"].is_null());
    let (status, body) = app.post("/v1/performers", Some(&admin), json!({"name": ""})).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    let (status, body) = app.post("/v1/performers", Some(&admin), json!({"genre": "jazz"})).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");

    let venue = app.venue(&admin, "Paris", one_section()).await;
    let event = |performers: Value| {
        json!({"name": "E", "venue_id": venue, "category": "concert", "performer_ids": performers,
               "starts_at": time_from_now(Duration::days(2)), "onsale_at": time_from_now(Duration::days(1)),
               "prices": {"premium": {"amount": 1, "currency": "USD"},
                          "standard": {"amount": 1, "currency": "USD"}}})
    };
    for unknown in [json!(["pf_999999"]), json!(["nope"]), json!([performer["id"], "pf_424242"])] {
        let (status, body) = app.post("/v1/events", Some(&admin), event(unknown)).await;
        assert_error(status, &body, 422, "UNKNOWN_PERFORMER");
    }
    let (status, body) = app.post("/v1/events", Some(&admin), event(json!([performer["id"]]))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["performers"][0]["id"], performer["id"]);
}

#[tokio::test]
async fn event_creation_checks_its_venue_prices_and_dates() {
    let app = spawn().await;
    let admin = app.admin().await;
    let venue = app.venue(&admin, "Paris", one_section()).await;
    let later = time_from_now(Duration::days(10));
    let sooner = time_from_now(Duration::days(5));

    for unknown in ["ve_999999", "venue", ""] {
        let (status, body) = app.event_at(&admin, unknown, "concert", &later, &sooner).await;
        assert_error(status, &body, 422, "UNKNOWN_VENUE");
    }
    let (status, body) = app.event_at(&admin, &venue, "concert", &sooner, &later).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    let (status, body) = app.event_at(&admin, &venue, "concert", "next friday", &sooner).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    let (status, body) = app.event_at(&admin, &venue, "concert", &later, "soon").await;
    assert_error(status, &body, 400, "INVALID_REQUEST");

    let priced = |prices: Value| {
        json!({"name": "E", "venue_id": venue, "category": "concert",
               "starts_at": later, "onsale_at": sooner, "prices": prices})
    };
    let cases = [
        ("missing tier price", json!({"premium": {"amount": 100, "currency": "USD"}})),
        (
            "extra tier",
            json!({"premium": {"amount": 1, "currency": "USD"}, "standard": {"amount": 1, "currency": "USD"},
                   "gold": {"amount": 1, "currency": "USD"}}),
        ),
        (
            "negative amount",
            json!({"premium": {"amount": -1, "currency": "USD"}, "standard": {"amount": 1, "currency": "USD"}}),
        ),
        (
            "bad currency",
            json!({"premium": {"amount": 1, "currency": "usd"}, "standard": {"amount": 1, "currency": "usd"}}),
        ),
        (
            "two currencies",
            json!({"premium": {"amount": 1, "currency": "USD"}, "standard": {"amount": 1, "currency": "EUR"}}),
        ),
    ];
    for (what, prices) in cases {
        let (status, body) = app.post("/v1/events", Some(&admin), priced(prices)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    }
    let (status, body) = app.event_at(&admin, &venue, "Concert", &later, &sooner).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "published");
    assert_eq!(body["seat_count"], 10);
}

/// Every event of a running app, through the list's pages.
async fn every_event(app: &TestApp) -> Vec<Value> {
    all_events(app, "", 100).await
}

#[tokio::test]
async fn demo_seeds_twenty_events_in_three_cities_and_a_stadium_show_on_sale_now_with_every_seat_available() {
    let app = spawn_with(|c| {
        c.demo = true;
        c.dev_auth = false;
    })
    .await;
    // --demo turns dev auth on.
    let fan = app.fan("alice").await;
    let events = every_event(&app).await;
    assert!(events.len() >= 20, "{} events", events.len());
    let cities: HashSet<&str> = events.iter().map(|e| e["city"].as_str().unwrap()).collect();
    assert!(cities.len() >= 3, "{cities:?}");
    let categories: HashSet<&str> = events.iter().map(|e| e["category"].as_str().unwrap()).collect();
    assert!(categories.len() >= 2, "{categories:?}");

    let now = chrono::Utc::now();
    let time = |e: &Value, f: &str| chrono::DateTime::parse_from_rfc3339(e[f].as_str().unwrap()).unwrap();
    let on_sale: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["status"] == "published"
                && e["seat_count"].as_u64().unwrap() >= 60_000
                && time(e, "onsale_at") <= now
                && time(e, "starts_at") > now
        })
        .collect();
    assert!(!on_sale.is_empty(), "no stadium event on sale now");
    let stadium = on_sale[0];
    let id = stadium["id"].as_str().unwrap();
    let n = stadium["seat_count"].as_u64().unwrap() as usize;
    let (bitmap, _) = app.bitmap(id).await;
    assert_eq!(bitmap.len(), n.div_ceil(8));
    assert!((0..n as u32).all(|i| bit(&bitmap, i)), "every seat is available");
    let (_, json_form) = send_json_availability(&app, id).await;
    assert_eq!(json_form["available_count"], n);

    // Its rows hold at least 4 seats numbered 1..n, so a best-available hold of 4 works.
    let (status, hold) = app
        .post(&format!("/v1/events/{id}/holds"), Some(&fan), json!({"best_available": {"count": 4}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
}

async fn send_json_availability(app: &TestApp, event: &str) -> (StatusCode, Value) {
    let r = send_raw(
        app.client
            .get(app.url(&format!("/v1/events/{event}/availability")))
            .header("Accept", "application/json"),
    )
    .await;
    (r.status, r.json())
}

#[tokio::test]
async fn demo_started_again_on_the_same_data_dir_does_not_duplicate_events() {
    let app = spawn_with(|c| c.demo = true).await;
    let before: Vec<Value> = every_event(&app).await;
    let dir = app.stop().await;
    let app = spawn_in(dir, |c| c.demo = true).await;
    let after: Vec<Value> = every_event(&app).await;
    let ids = |events: &[Value]| events.iter().map(|e| e["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&before));
    let dir = app.stop().await;
    let app = spawn_in(dir, |c| c.demo = false).await;
    assert_eq!(ids(&every_event(&app).await), ids(&before), "a plain restart keeps the demo events");
}
