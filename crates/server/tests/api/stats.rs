//! `GET /v1/events/{id}/stats`: the admin's live dashboard numbers.

use reqwest::StatusCode;

use crate::helpers::{assert_error, spawn};

#[tokio::test]
async fn stats_count_seats_by_state_and_revenue_for_admins_only() {
    let app = spawn().await;
    let admin = app.token("admin", "admin").await;
    let fan = app.token("fan1", "fan").await;
    let event = app.on_sale_event(&admin, &[("A", 1, 10, "premium"), ("B", 1, 10, "standard")]).await;
    let (status, hold) = app.hold(&fan, &event, &["A-1-1", "B-1-1"]).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app.checkout(&fan, hold["hold_id"].as_str().unwrap(), "tok_visa", "k1").await;
    assert_eq!(status, StatusCode::CREATED);
    app.hold(&fan, &event, &["A-1-5"]).await;

    let (status, stats) = app.get(&format!("/v1/events/{event}/stats"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["seats"]["sold"], 2);
    assert_eq!(stats["seats"]["held"], 1);
    assert_eq!(stats["seats"]["available"], 17);
    assert_eq!(stats["revenue"]["amount"], 5000 + 2500);
    assert_eq!(stats["revenue"]["currency"], "USD");
    assert_eq!(stats["queue_length"], 0);
    assert!(stats["holds_per_second"].as_f64().is_some());

    let (status, body) = app.get(&format!("/v1/events/{event}/stats"), Some(&fan)).await;
    assert_error(status, &body, 403, "FORBIDDEN");
    let (status, body) = app.get("/v1/events/ev_999/stats", Some(&admin)).await;
    assert_error(status, &body, 404, "NOT_FOUND");
}
