//! The HTTP server of the service, with a fast path in front of the router.
//!
//! Most requests are `GET /{code}` for a link the in-process cache (L1)
//! holds. For those the router's work (routing, extractors, five tower
//! layers, a boxed future each) cost more than the answer itself, so
//! [`FastPath`] answers them directly: `GET|HEAD /{code}` with a valid code
//! whose current, positive L1 entry exists (and, for a link with rules,
//! whose answer depends on the request alone: no click limit, no password,
//! not expired) gets the same answer the router's handler gives (the
//! link's redirect status, `Location`, `X-Cache: HIT`, `Cache-Control`,
//! `X-Request-ID` echoed or made), recorded the same way: the same request
//! span continuing the caller's trace, duration histogram and access-log line
//! ([`RequestTelemetry`], shared with the router's layer), the same lookup
//! counter and, for a GET, the same click. Everything else (L1 misses,
//! unknown codes, `/health`, `/ready`, `/metrics`, other methods) goes to the
//! router unchanged.
//!
//! [`serve`] is `axum::serve` for this service: HTTP/1.1 with keep-alive,
//! the peer address handed to the router as `ConnectInfo`, and a graceful
//! shutdown that lets in-flight requests finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use shortline_shared::http::{REQUEST_ID_HEADER, RequestTelemetry, request_id};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::code;
use crate::policy::Visitor;
use crate::resolve::Layer;
use crate::routes::{NO_STORE, REDIRECT_ROUTE, RequestFacts, found};
use crate::state::RedirectState;

/// The service's request handler: the fast path, else the router.
pub struct FastPath {
    state: RedirectState,
    router: Router,
    telemetry: RequestTelemetry,
    route: Arc<str>,
}

impl FastPath {
    pub fn new(state: RedirectState) -> Self {
        let router = crate::router(state.clone());
        let telemetry = state.http.clone();
        let route = telemetry.route(REDIRECT_ROUTE);
        Self {
            state,
            router,
            telemetry,
            route,
        }
    }

    /// Answers one request from a client at `peer`.
    pub async fn handle<B>(&self, mut req: Request<B>, peer: SocketAddr) -> Response<Body>
    where
        B: HttpBody<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        if let Some(response) = self.answer_from_l1(&req, peer).await {
            return response;
        }
        req.extensions_mut().insert(ConnectInfo(peer));
        match self.router.clone().oneshot(req.map(Body::new)).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// The redirect for a request L1 can answer; `None` for the router.
    async fn answer_from_l1<B>(
        &self,
        req: &Request<B>,
        peer: SocketAddr,
    ) -> Option<Response<Body>> {
        let start = Instant::now();
        let method = req.method();
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let code = req.uri().path().strip_prefix('/')?;
        if !code::is_valid(code) {
            return None;
        }
        let headers = req.headers();
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let key = self.state.hosts.key(host, code);
        let target = self.state.links.cached(&key).await?;
        // A link with rules is answered here only when nothing but the
        // request decides it (no click limit, no password, not expired).
        let (location, outcome, cache_control) = match &target.policy {
            None => (
                target.location()?,
                None,
                self.state.cache_control(target.status),
            ),
            Some(policy) => {
                if policy.needs_router() || policy.expired(chrono::Utc::now()) {
                    return None;
                }
                let visitor = Visitor::of(headers, req.uri().query());
                let chosen = policy.choose(target.location_text(), &visitor, &self.state.agents);
                (
                    HeaderValue::from_str(&chosen.location).ok()?,
                    Some(chosen.outcome),
                    NO_STORE,
                )
            }
        };
        let request_id = request_id(headers);
        let observed = self.telemetry.begin(
            start,
            method,
            self.route.clone(),
            Some(&request_id),
            headers,
        );
        self.state.metrics.lookup(Layer::L1, true);
        if method == Method::GET {
            let _in_span = observed.span.enter();
            let facts = RequestFacts::new(&self.state.trusted_proxies, Some(peer.ip()), headers);
            self.state
                .clicks
                .record(facts.click(&target, code, outcome));
        }
        let mut response = found(target.status, location, Layer::L1, cache_control);
        response.headers_mut().insert(REQUEST_ID_HEADER, request_id);
        self.telemetry.finish(observed, response.status());
        Some(response)
    }
}

/// A server started by [`spawn`]: the address it listens on, and its task.
pub struct Running {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Waits until the server has stopped (after its `shutdown` fired and
    /// the open connections' requests finished).
    pub async fn stopped(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Binds `listen` (port 0: any free port) and [`serve`]s on it in a task
/// until `shutdown` fires.
pub async fn spawn(
    listen: SocketAddr,
    state: RedirectState,
    shutdown: CancellationToken,
) -> std::io::Result<Running> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(serve(listener, state, shutdown));
    Ok(Running { addr, task })
}

/// Serves HTTP/1.1 on `listener` until `shutdown` fires, then stops
/// accepting and waits for the open connections' requests to finish.
pub async fn serve(
    listener: TcpListener,
    state: RedirectState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let fast = Arc::new(FastPath::new(state));
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the
                    // connections we have, try again shortly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (fast, shutdown) = (fast.clone(), shutdown.clone());
        connections.spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let fast = fast.clone();
                async move { Ok::<_, Infallible>(fast.handle(req, peer).await) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            // Connection errors (client reset, etc.) only end that connection.
            tokio::select! {
                _ = conn.as_mut() => {}
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}
