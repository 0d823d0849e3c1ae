//! `glidepath serve`: a dashboard, a JSON API with Server-Sent Events,
//! operator actions behind a bearer token, and `/metrics`, all read from
//! the journal (so it shows the runs of every process on the machine,
//! started before or after it).
//!
//! - `mod.rs`: [`ServeConfig`], binding (loopback unless allowed), the
//!   accept loop (a connection limit and a header read timeout), the
//!   router, and what every answer gets: a time limit, a body limit, the
//!   security headers and the `Host` check.
//! - `api.rs`: `/api/v1/runs…` (the `--output json` types), the event
//!   stream, the actions (queued through [`crate::control::queue`], never
//!   carried out here), and the dashboard's step list.
//! - `metrics.rs`: `/metrics` in the Prometheus text format, from the
//!   journal, cached briefly.
//! - `dashboard.html`, `dashboard.js`, `dashboard.css`: the page, built
//!   into the binary (no external resource).

mod api;
mod metrics;

pub use api::{CheckLimit, RunSteps, StepEntry};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// The default address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 256;
/// Event streams open at once; more are refused with 503.
pub const MAX_STREAMS: usize = 64;
/// A client must send its request headers within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Any answer but an event stream must be ready within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest request body (an action's JSON).
pub const MAX_BODY: usize = 16 * 1024;
/// An event stream ends after this; the browser reconnects where it was
/// (`Last-Event-ID`).
pub const STREAM_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// How often an event stream looks for new events in the journal.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long an action waits for the live process to act before it
/// answers `queued`.
pub const ACTION_WAIT: Duration = Duration::from_secs(10);

/// What `glidepath serve` was asked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// A SQLite file or a PostgreSQL database.
    pub journal: crate::journal::Location,
    /// The bearer token of the actions; `None` disables them (403).
    pub token: Option<String>,
    /// Bind an address other than loopback.
    pub allow_remote: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0} is not a loopback address: the dashboard and the API have no TLS, and anyone who can reach them reads every run\nhint: serve on 127.0.0.1 (and reach it over an SSH tunnel), or pass --allow-remote behind a TLS proxy that controls who connects")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
}

/// What every handler shares.
pub(crate) struct App {
    pub journal: crate::journal::Location,
    /// The API's connection (an event stream opens its own).
    /// The server's journal handle (shared with the event streams when it
    /// is a database: one connection, not one per stream).
    pub db: Arc<Mutex<Box<dyn crate::journal::Store>>>,
    pub token: Option<String>,
    pub streams: Arc<Semaphore>,
    pub metrics: Mutex<metrics::Cache>,
    /// Hosts a browser may name in `Host` (DNS rebinding); empty: any.
    pub hosts: Vec<String>,
}

/// A bound server: [`Server::addr`] is where it listens (port 0 resolved).
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Arc<App>,
}

impl Server {
    /// Check the address and bind it.
    pub async fn bind(cfg: ServeConfig) -> Result<Server, ServeError> {
        if !cfg.listen.ip().is_loopback() && !cfg.allow_remote {
            return Err(ServeError::NotLoopback(cfg.listen));
        }
        // opening a database connects: off the async threads
        let loc = cfg.journal.clone();
        let db = tokio::task::spawn_blocking(move || loc.open())
            .await
            .map_err(|e| crate::journal::JournalError::Unavailable {
                location: cfg.journal.to_string(),
                message: e.to_string(),
            })??;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let hosts = if cfg.allow_remote {
            Vec::new()
        } else {
            ["127.0.0.1", "localhost", "[::1]"]
                .iter()
                .flat_map(|h| [h.to_string(), format!("{h}:{port}")])
                .collect()
        };
        Ok(Server {
            listener,
            app: Arc::new(App {
                journal: cfg.journal,
                db: Arc::new(Mutex::new(db)),
                token: cfg.token.filter(|t| !t.is_empty()),
                streams: Arc::new(Semaphore::new(MAX_STREAMS)),
                metrics: Mutex::new(metrics::Cache::default()),
                hosts,
            }),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener")
    }

    /// Whether actions are enabled (a token was given).
    pub fn actions_enabled(&self) -> bool {
        self.app.token.is_some()
    }

    /// Serve until the process ends: each connection on its own task, at
    /// most [`MAX_CONNECTIONS`] at once, its headers within
    /// [`HEADER_TIMEOUT`].
    pub async fn run(self) {
        use hyper_util::rt::{TokioIo, TokioTimer};
        use hyper_util::service::TowerToHyperService;
        let router = router(self.app.clone());
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (stream, peer) = match self.listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // out of descriptors and the like: wait, do not spin
                    eprintln!("serve: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let svc = TowerToHyperService::new(router.clone().layer(axum::Extension(Peer(peer))));
            tokio::spawn(async move {
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(64 * 1024);
                let _ = b.serve_connection(TokioIo::new(stream), svc).await;
                drop(permit);
            });
        }
    }
}

/// The client's address (for the log of refused actions).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub SocketAddr);

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/runs/{id}", get(page))
        .route("/dashboard.js", get(script))
        .route("/dashboard.css", get(style))
        .route("/metrics", get(metrics::handler))
        .route("/api/v1/runs", get(api::runs))
        .route("/api/v1/runs/{id}", get(api::run))
        .route("/api/v1/runs/{id}/steps", get(api::steps))
        .route("/api/v1/runs/{id}/events", get(api::events))
        .route("/api/v1/runs/{id}/{action}", post(api::action))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

const PAGE: &str = include_str!("dashboard.html");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");

async fn page() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE)
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

async fn not_found() -> Response {
    api::error(StatusCode::NOT_FOUND, "no such page".into())
}

/// Every request: the `Host` check, the time limit (event streams excepted:
/// they are bounded by [`MAX_STREAMS`] and [`STREAM_LIFETIME`]), and the
/// security headers on every answer. No CORS header is ever sent: another
/// origin's page cannot read an answer.
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if !app.hosts.is_empty() {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !app.hosts.iter().any(|h| h == host) {
            return secure(api::error(
                StatusCode::MISDIRECTED_REQUEST,
                "this server answers only to a loopback Host (127.0.0.1, localhost, [::1]): --allow-remote lifts it".into(),
            ));
        }
    }
    let streaming = req.uri().path().ends_with("/events");
    let resp = if streaming {
        next.run(req).await
    } else {
        match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
            Ok(r) => r,
            Err(_) => api::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the answer took too long".into(),
            ),
        }
    };
    secure(resp)
}

fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, "content-security-policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    resp
}
