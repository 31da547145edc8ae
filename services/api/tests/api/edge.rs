//! The API behind the real edge: Traefik (`$SHORTLINE_TOOLS_DIR/bin/traefik`)
//! with the project's own local configuration (`config/traefik/`, rendered as
//! `scripts/services.sh` does), in front of the router served on a real port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shortline_shared::testing::{free_port, tool, unique_prefix};
use sqlx::PgPool;

use crate::support::TestApp;

/// A Traefik process; killed and its directory removed when dropped.
struct Edge {
    child: Child,
    dir: PathBuf,
    base: String,
}

impl Edge {
    /// Traefik routing to the API at `api` (and a redirect upstream that is
    /// never used here), with `config/traefik/` filled in.
    async fn start(api: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("shortline-edge-{}", unique_prefix()));
        std::fs::create_dir_all(&dir).expect("edge dir");
        let listen = format!("127.0.0.1:{}", free_port());
        let ping = format!("127.0.0.1:{}", free_port());
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/traefik");
        let dynamic = dir.join("dynamic.yml");
        render(
            &config.join("dynamic.yml"),
            &dynamic,
            &[("API_UPSTREAM", api), ("REDIRECT_UPSTREAM", "127.0.0.1:9")],
        );
        let dynamic_path = dynamic.display().to_string();
        let access_log = dir.join("access.log").display().to_string();
        render(
            &config.join("traefik.yml"),
            &dir.join("traefik.yml"),
            &[
                ("EDGE_LISTEN", listen.as_str()),
                ("EDGE_PING_LISTEN", ping.as_str()),
                ("DYNAMIC_FILE", dynamic_path.as_str()),
                ("ACCESS_LOG", access_log.as_str()),
            ],
        );
        let child = Command::new(tool("traefik"))
            .arg(format!(
                "--configFile={}",
                dir.join("traefik.yml").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("traefik starts");
        let edge = Self {
            child,
            dir,
            base: format!("http://{listen}"),
        };
        // Routed once /health reaches the API (before that: 404 or no answer).
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(res) = http.get(format!("{}/health", edge.base)).send().await
                && res.status() == reqwest::StatusCode::OK
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "traefik did not route /health to the API"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        edge
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Replaces every `@@NAME@@` of `src` and writes `dest`.
fn render(src: &Path, dest: &Path, values: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(src).expect("template reads");
    for (name, value) in values {
        text = text.replace(&format!("@@{name}@@"), value);
    }
    assert!(
        !text.contains("@@"),
        "unfilled placeholder in {}",
        src.display()
    );
    std::fs::write(dest, text).expect("config writes");
}

/// Serves the app on a free port behind a real edge; abort the task when
/// done.
async fn behind_edge(app: &TestApp) -> (Edge, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("api binds");
    let api = listener.local_addr().expect("addr").to_string();
    let router = app.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    (Edge::start(&api).await, server)
}

/// A body far over `JSON_MAX_BYTES` (10 MB) is a JSON 413 through the edge,
/// every time: the API reads the rest of the body before it answers, so the edge,
/// still sending it, gets the answer instead of a reset connection (502).
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn an_oversized_body_is_413_through_the_edge_every_time(db: PgPool) {
    let app = TestApp::new(db).await;
    let (edge, server) = behind_edge(&app).await;

    let body = bytes::Bytes::from(vec![b'a'; 10 * 1024 * 1024]);
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    // Without the drain, 502s come in bursts and some runs of 20 see none:
    // 60 tries make a run without one very unlikely.
    for _ in 0..60 {
        let res = http
            .post(format!("{}/urls", edge.base))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", app.key))
            .body(body.clone())
            .send()
            .await;
        match res {
            Ok(res) => {
                let status = res.status().as_u16();
                let text = res.text().await.unwrap_or_default();
                if status == 413 {
                    let json: serde_json::Value =
                        serde_json::from_str(&text).expect("a JSON error body");
                    assert!(json["error"].is_string(), "{json}");
                }
                statuses.push(status);
            }
            Err(_) => statuses.push(0),
        }
    }
    assert!(
        statuses.iter().all(|s| *s == 413),
        "want 60 × 413, got {statuses:?}"
    );
    drop(edge);
    server.abort();
}

/// Every path of the OpenAPI document reaches the API through the edge: a
/// request without a key is the API's 401, never the redirect service's
/// answer for an unknown short code (the edge once sent `/keys` there).
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn every_documented_path_is_routed_to_the_api(db: PgPool) {
    let app = TestApp::new(db).await;
    let (edge, server) = behind_edge(&app).await;

    let http = reqwest::Client::new();
    let doc: serde_json::Value = http
        .get(format!("{}/openapi.json", edge.base))
        .send()
        .await
        .expect("openapi.json through the edge")
        .json()
        .await
        .expect("a JSON document");
    let paths: Vec<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .filter(|p| !matches!(p.as_str(), "/health" | "/ready"))
        .map(|p| p.replace("{id}", "1"))
        .collect();
    assert!(paths.iter().any(|p| p == "/keys"), "{paths:?}");
    let mut wrong = Vec::new();
    for path in &paths {
        let res = http
            .get(format!("{}{path}", edge.base))
            .send()
            .await
            .expect("an answer");
        let status = res.status().as_u16();
        let challenge = res.headers().contains_key("www-authenticate");
        if status != 401 || !challenge {
            wrong.push(format!("{path}: {status}"));
        }
    }
    assert!(wrong.is_empty(), "not routed to the API: {wrong:?}");
    drop(edge);
    server.abort();
}
