//! The OpenAPI document describes every route from the real handlers.

use axum::http::StatusCode;
use sqlx::PgPool;

use crate::support::TestApp;

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn every_route_is_described(db: PgPool) {
    let app = TestApp::new(db).await;
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status, StatusCode::OK);
    let doc = res.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    // Which paths and methods exist is the snapshot's to show; what every
    // operation must carry is checked here, over all of them.
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/urls/{id}/stats"), "{paths:?}");
    for (path, item) in paths {
        for (m, op) in item.as_object().expect("path item") {
            assert!(op["summary"].is_string(), "{m} {path} has no summary");
            assert!(op["tags"][0].is_string(), "{m} {path} has no tag");
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{m} {path}: no success response"
            );
            if path != "/health" && path != "/ready" {
                assert!(responses.contains_key("400"), "{m} {path}: no 400");
            }
            if path.contains("{id}") {
                assert!(responses.contains_key("404"), "{m} {path}: no 404");
            }
        }
    }
    // Error answers are declared with both media types they are sent as.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (m, op) in item.as_object().expect("path item") {
            for (status, res) in op["responses"].as_object().into_iter().flatten() {
                if status.as_str() < "400" {
                    continue;
                }
                for media in ["application/json", "application/problem+json"] {
                    assert!(
                        res["content"][media]["schema"].is_object(),
                        "{m} {path} {status}: no {media}"
                    );
                }
            }
        }
    }
    for (path, m, field) in [
        ("/users", "post", "email"),
        ("/urls", "post", "original_url"),
        ("/events", "post", "details"),
    ] {
        let schema = &doc["paths"][path][m]["requestBody"]["content"]["application/json"]["schema"];
        let text = schema.to_string();
        let resolved = if let Some(r) = schema["$ref"].as_str() {
            doc.pointer(r.trim_start_matches('#'))
                .map(|s| s.to_string())
                .unwrap_or_default()
        } else {
            text
        };
        assert!(
            resolved.contains(field),
            "{m} {path} body lacks {field}: {resolved}"
        );
    }
    for path in ["/urls", "/events", "/users"] {
        let params: Vec<String> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect();
        assert!(
            params.contains(&"page".to_owned()) && params.contains(&"per_page".to_owned()),
            "{path}: {params:?}"
        );
    }
    let params = |path: &str| -> Vec<String> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect()
    };
    for path in ["/events", "/urls/{id}/events"] {
        assert!(params(path).contains(&"after_id".to_owned()), "{path}");
        assert!(
            doc["paths"][path]["get"]["responses"]["200"]["headers"]["Link"].is_object(),
            "{path}: Link header undocumented"
        );
    }
    for p in ["from", "to", "interval"] {
        assert!(params("/urls/{id}/stats").contains(&p.to_owned()), "{p}");
    }
    let stats = doc
        .pointer("/components/schemas/LinkStats")
        .map(|s| s.to_string());
    for field in [
        "series",
        "top_referrers",
        "browsers",
        "operating_systems",
        "devices",
        "bots",
    ] {
        assert!(
            stats.as_deref().is_some_and(|s| s.contains(field)),
            "LinkStats lacks {field}: {stats:?}"
        );
    }
    // Components resolve: every $ref points at a schema that exists.
    let text = doc.to_string();
    for r in text
        .split("\"$ref\":\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
    {
        assert!(
            doc.pointer(r.trim_start_matches('#')).is_some(),
            "dangling {r}"
        );
    }
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn docs_ui_is_served(db: PgPool) {
    let app = TestApp::new(db).await;
    let res = app.get("/apidocs").await;
    assert_eq!(res.status, StatusCode::OK);
    let html = String::from_utf8_lossy(&res.body);
    assert!(html.contains("/openapi.json"));
}

/// The whole document as a reviewed artifact: any change to a route, a
/// parameter, a schema or a description shows in the snapshot's diff
/// (`cargo insta review`, or `INSTA_UPDATE=always` and read the diff).
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_document_matches_its_snapshot(db: PgPool) {
    let app = TestApp::new(db).await;
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status, StatusCode::OK);
    insta::assert_json_snapshot!("openapi", res.json(), {
        ".info.version" => "[version]",
    });
}
