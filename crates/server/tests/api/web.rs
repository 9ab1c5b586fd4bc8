//! The web UI's static files: served by the same binary at `/` and `/ui/{version}/{file}`,
//! with content types and cache validators, and kept out of the OpenAPI document.

use reqwest::StatusCode;

use crate::helpers::{send_raw, spawn};

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_types_validators_and_cache_policies() {
    let app = spawn().await;
    let page = send_raw(app.client.get(app.url("/"))).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.header("cache-control"), Some("public, max-age=60"));
    assert!(page.header("content-security-policy").is_some_and(|c| c.contains("default-src 'self'")));
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(!html.contains("{{ASSET_VERSION}}"), "the asset version is filled in");
    let version =
        html.split("/ui/").nth(1).and_then(|rest| rest.split('/').next()).expect("asset links").to_owned();

    // The page revalidates by ETag.
    let etag = page.header("etag").expect("etag").to_owned();
    let again = send_raw(app.client.get(app.url("/")).header("if-none-match", &etag)).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);

    for (file, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("admin.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("seatmap.js", "text/javascript; charset=utf-8"),
        ("pow.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let path = format!("/ui/{version}/{file}");
        assert!(html.contains(&path) || file.ends_with(".js"), "{file} is linked from the page");
        let r = send_raw(app.client.get(app.url(&path))).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.header("content-type"), Some(content_type), "{path}");
        assert_eq!(r.header("cache-control"), Some("public, max-age=31536000, immutable"), "{path}");
        assert!(!r.body.is_empty());
        let etag = r.header("etag").expect("etag").to_owned();
        let r = send_raw(app.client.get(app.url(&path)).header("if-none-match", &etag)).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{path}");
        // Compressed when asked, under its own validator.
        let gz = send_raw(app.client.get(app.url(&path)).header("accept-encoding", "gzip")).await;
        assert_eq!(gz.status, StatusCode::OK);
        if gz.header("content-encoding") == Some("gzip") {
            assert_ne!(gz.header("etag"), Some(etag.as_str()));
            assert!(gz.body.len() < 200_000);
        }
    }

    // A page of an older build gets today's files, cached briefly.
    let stale = send_raw(app.client.get(app.url("/ui/0ld0ld/app.js"))).await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.header("cache-control"), Some("public, max-age=60"));

    // Unknown files and paths answer the API's JSON 404.
    for path in [format!("/ui/{version}/nope.js"), "/ui/app.js".to_owned(), "/index.html".to_owned()] {
        let r = send_raw(app.client.get(app.url(&path))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.json()["error"]["code"], "NOT_FOUND", "{path}");
    }

    // Not API routes: absent from the OpenAPI document.
    let doc = send_raw(app.client.get(app.url("/openapi.json"))).await.json();
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        paths
            .keys()
            .all(|p| p.starts_with("/v1/") || ["/healthz", "/readyz", "/metrics"].contains(&p.as_str()))
    );
}
