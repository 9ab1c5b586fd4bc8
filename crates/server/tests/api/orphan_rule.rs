//! The orphan-seat rule over HTTP: `422 ORPHAN_SEAT` naming the seats a hold would leave
//! alone, best available under the rule, and the per-event switch (`orphan_rule` at
//! creation and by `PATCH /v1/events/{id}`), as `/openapi.json` describes them.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, bit, send, spawn, time_from_now};

/// An event on sale now at a venue of section `A`, 2 rows of 10; `orphan_rule` as given
/// (`None`: left out, the default). Returns the event's detail.
async fn event(app: &TestApp, admin: &str, orphan_rule: Option<bool>) -> Value {
    let venue = app.venue(admin, "Lyon", json!([{"name": "A", "rows": 2, "seats_per_row": 10}])).await;
    let mut body = json!({
        "name": "Show", "venue_id": venue, "category": "concert",
        "starts_at": time_from_now(Duration::days(10)), "onsale_at": time_from_now(Duration::hours(-1)),
        "prices": {"premium": {"amount": 5000, "currency": "USD"},
                   "standard": {"amount": 2500, "currency": "USD"}}
    });
    if let Some(on) = orphan_rule {
        body["orphan_rule"] = json!(on);
    }
    let (status, event) = app.post("/v1/events", Some(admin), body).await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    event
}

async fn patch_event(app: &TestApp, token: &str, event: &str, body: Value) -> (StatusCode, Value) {
    send(app.client.patch(app.url(&format!("/v1/events/{event}"))).bearer_auth(token).json(&body)).await
}

#[tokio::test]
async fn a_hold_that_would_leave_a_seat_alone_is_422_orphan_seat_naming_it_and_changes_nothing() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let detail = event(&app, &admin, None).await;
    assert_eq!(detail["orphan_rule"], true, "on by default: {detail}");
    let event = detail["id"].as_str().unwrap();
    let (before, version) = app.bitmap(event).await;

    // A-1-2 would leave A-1-1 alone at the row's end.
    let (status, body) = app.hold(&fan, event, &["A-1-2"]).await;
    assert_error(status, &body, 422, "ORPHAN_SEAT");
    assert_eq!(body["error"]["seat"], "A-1-1", "{body}");
    assert_eq!(body["error"]["seats"], json!(["A-1-1"]), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("alone"), "{body}");
    assert_eq!(app.bitmap(event).await, (before, version), "nothing changed");

    // Taking the end seat too is fine.
    let (status, hold) = app.hold(&fan, event, &["A-1-1", "A-1-2"]).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    // A multi-seat hold names every seat it would strand, in seat order: A-1-3 between
    // A-1-2 and A-1-4, A-1-5 between its own seats.
    let (status, body) = app.hold(&fan, event, &["A-1-6", "A-1-4"]).await;
    assert_error(status, &body, 422, "ORPHAN_SEAT");
    assert_eq!(body["error"]["seat"], "A-1-3", "{body}");
    assert_eq!(body["error"]["seats"], json!(["A-1-3", "A-1-5"]), "{body}");
    // Unavailable seats answer first.
    let (status, body) = app.hold(&fan, event, &["A-1-2", "A-1-4"]).await;
    assert_error(status, &body, 409, "SEATS_UNAVAILABLE");
    // Filling the gap up to a run of two or more is fine.
    let (status, hold) = app.hold(&fan, event, &["A-1-3", "A-1-4"]).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");

    // Best available of one never takes a seat that strands another: row 1 has 5-10
    // free, so its first pick, A-1-5, leaves a run of 5.
    let bob = app.fan("bob").await;
    let (status, hold) = app
        .post(&format!("/v1/events/{event}/holds"), Some(&bob), json!({"best_available": {"count": 1}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    assert_eq!(hold["seats"][0]["label"], "A-1-5", "{hold}");
    let (bitmap, _) = app.bitmap(event).await;
    let free: Vec<u32> = (0..10).filter(|&i| bit(&bitmap, i)).collect();
    assert_eq!(free, [5, 6, 7, 8, 9]);
}

#[tokio::test]
async fn the_orphan_rule_is_switched_per_event_at_creation_and_by_patch() {
    let app = spawn().await;
    let admin = app.admin().await;
    let fan = app.fan("alice").await;
    let detail = event(&app, &admin, Some(false)).await;
    assert_eq!(detail["orphan_rule"], false, "{detail}");
    let event = detail["id"].as_str().unwrap();
    let (status, read) = app.get(&format!("/v1/events/{event}"), None).await;
    assert_eq!((status, &read["orphan_rule"]), (StatusCode::OK, &json!(false)), "{read}");

    // Off: a hold may leave a seat alone.
    let (status, hold) = app.hold(&fan, event, &["A-1-2"]).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");

    // Only an admin switches it, with a boolean.
    let (status, body) = patch_event(&app, &fan, event, json!({"orphan_rule": true})).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = patch_event(&app, &admin, event, json!({"orphan_rule": "yes"})).await;
    assert_error(status, &body, 400, "INVALID_REQUEST");
    let (status, body) = patch_event(&app, &admin, event, json!({"orphan_rule": true})).await;
    assert_eq!((status, &body["orphan_rule"]), (StatusCode::OK, &json!(true)), "{body}");

    // On: the next hold of the same shape is refused; A-1-1, alone already, is not the
    // new hold's doing and does not refuse a hold elsewhere in its row.
    let (status, body) = app.hold(&fan, event, &["A-2-9"]).await;
    assert_error(status, &body, 422, "ORPHAN_SEAT");
    assert_eq!(body["error"]["seats"], json!(["A-2-10"]), "{body}");
    let (status, hold) = app.hold(&fan, event, &["A-1-5"]).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");

    // Off again: other settings are kept.
    let (status, body) = patch_event(&app, &admin, event, json!({"orphan_rule": false})).await;
    assert_eq!((status, &body["orphan_rule"]), (StatusCode::OK, &json!(false)), "{body}");
    assert_eq!(body["queue"]["enabled"], false, "{body}");
    let (status, hold) = app.hold(&fan, event, &["A-2-9"]).await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
}

#[tokio::test]
async fn openapi_describes_the_orphan_rule_and_its_error() {
    let app = spawn().await;
    let (status, doc) = app.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let hold = &doc["paths"]["/v1/events/{event_id}/holds"]["post"];
    let refused = hold["responses"]["422"]["description"].as_str().unwrap_or_default();
    assert!(refused.contains("ORPHAN_SEAT"), "{refused}");
    let rule = hold["description"].as_str().unwrap_or_default();
    assert!(rule.contains("orphan-seat rule") && rule.contains("aisle"), "{rule}");
    let schemas = &doc["components"]["schemas"];
    for schema in ["EventBody", "EventPatchBody", "EventDetail"] {
        // `EventDetail` flattens the summary: its own properties are in an `allOf` part.
        let own = match schemas[schema]["allOf"].as_array() {
            Some(parts) => &parts[1],
            None => &schemas[schema],
        };
        let kind = own["properties"]["orphan_rule"]["type"].to_string();
        assert!(kind.contains("boolean"), "{schema}: {}", schemas[schema]);
    }
}
