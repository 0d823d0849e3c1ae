//! Drivers: the only code that touches the fleet. The executor talks to
//! them through these traits; each implementation is its own module, so a
//! new balancer or deployer plugs in without touching the core.
//!
//! Every driver call has a timeout. Errors say whether the infrastructure
//! was unreachable ([`DriverError::Unreachable`]) or the step itself failed.

mod balancer_command;
pub mod balancer_haproxy;
mod balancer_http;
mod balancer_multi;
mod balancer_none;
mod deploy_command;
pub mod deploy_local;
pub mod deploy_ssh;
mod health_http;
pub mod http;
pub mod metrics_prometheus;
mod metrics_scrape;
pub mod service_command;

pub use balancer_command::CommandBalancer;
pub use balancer_haproxy::HaproxyBalancer;
pub use balancer_http::HttpBalancer;
pub use balancer_multi::MultiBalancer;
pub use balancer_none::NoBalancer;
pub use deploy_command::CommandDeployer;
pub use deploy_local::LocalDeployer;
pub use deploy_ssh::{Ssh, SshDeployer, SshService};
pub use health_http::Health;
pub use metrics_prometheus::PrometheusSource;
pub use metrics_scrape::{ScrapeSource, RECENT};
pub use service_command::CommandService;

use crate::config::Release;
use crate::template::Vars;
use async_trait::async_trait;
use glidepath_core::Observation;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A node as drivers see it, with the releases of the step at hand.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Target {
    pub name: String,
    pub address: String,
    pub install_dir: PathBuf,
    /// The release the step is about (`{version}` where a driver call has
    /// no version of its own, e.g. a balancer command): the new release on
    /// the forward path, the last-known-good in a rollback. Empty outside a
    /// run's step.
    pub release: String,
    /// `{previous}`: the release the node ran when the run started (its
    /// last-known-good). Empty when unknown.
    pub previous: String,
}

impl Target {
    /// Every placeholder of a step on this node (`{node}`, `{address}`,
    /// `{host}`, `{port}`, `{install_dir}`, `{plan_dir}`, `{version}`,
    /// `{previous}`), from the one builder all templates use. `version`
    /// is the step's release; empty, the target's own `release`.
    pub fn vars(&self, version: &str, plan_dir: &std::path::Path) -> Vars {
        let version = if version.is_empty() {
            self.release.as_str()
        } else {
            version
        };
        self.url_vars()
            .with("install_dir", self.install_dir.display().to_string())
            .with("plan_dir", plan_dir.display().to_string())
            .with("version", version)
            .with("previous", self.previous.as_str())
    }

    /// `{node}`, `{address}` and `{host}`: what a URL template takes.
    pub fn url_vars(&self) -> Vars {
        Vars::node(&self.name, &self.address)
    }
}

/// A release a node reports (its `current`), checked before any use: it is
/// data from the node, on its way into paths and commands.
pub fn reported_version(t: &Target, what: &str, v: &str) -> DResult<String> {
    crate::names::check_version(v).map_err(|why| {
        DriverError::Failed(format!(
            "node {} reports {v:?} as its current release ({what}), refused: {why}",
            t.name
        ))
    })?;
    Ok(v.to_string())
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DriverError {
    /// The infrastructure did not answer (connection refused, timeout).
    #[error("{0}")]
    Unreachable(String),
    /// It answered, and the step failed.
    #[error("{0}")]
    Failed(String),
}

impl DriverError {
    pub fn is_infra(&self) -> bool {
        matches!(self, DriverError::Unreachable(_))
    }
}

pub type DResult<T> = Result<T, DriverError>;

/// Takes nodes out of rotation and puts them back.
#[async_trait]
pub trait Balancer: Send + Sync {
    /// Stop new traffic to the node; in-flight requests finish. Idempotent.
    async fn drain(&self, t: &Target) -> DResult<String>;
    /// Connections/requests still active on the node.
    async fn active(&self, t: &Target) -> DResult<u64>;
    /// Put the node back into rotation. Idempotent.
    async fn enable(&self, t: &Target) -> DResult<String>;
    /// After enabling: the balancer really sends traffic to the node.
    async fn check_in_rotation(&self, t: &Target) -> DResult<String>;
    /// Before the run: the balancer answers for this node.
    async fn preflight(&self, t: &Target) -> DResult<String>;
    /// Before the run: why the node is out of rotation already (drained or
    /// in maintenance by someone: a run would put it back), or `None`. A
    /// balancer that cannot tell says `None`.
    async fn out_before(&self, _t: &Target) -> DResult<Option<String>> {
        Ok(None)
    }
    /// There is a balancer at all (`kind = "none"` has none: nothing is
    /// drained, no connection counted, and the narration says so).
    fn exists(&self) -> bool {
        true
    }
}

/// Places releases on a node and switches between them.
#[async_trait]
pub trait Deployer: Send + Sync {
    /// The release `current` points at, if any.
    async fn current(&self, t: &Target) -> DResult<Option<String>>;
    /// Copy the artifact into `releases/<version>` and verify its checksum. Idempotent.
    async fn stage(&self, t: &Target, release: &Release) -> DResult<String>;
    /// Atomically point `current` at `releases/<version>`. Idempotent.
    async fn switch(&self, t: &Target, version: &str) -> DResult<String>;
    /// Is this release present on the node (a rollback target)?
    async fn has_release(&self, t: &Target, version: &str) -> DResult<bool>;
    /// Before the run: can releases be written on the node? (what a
    /// rehearsal otherwise finds in production: a directory owned by root).
    async fn check_writable(&self, _t: &Target) -> DResult<String> {
        Ok("not checked by this deployer".into())
    }
    /// What the install dir holds before glidepath deployed it (`adopt`):
    /// its `current`, and the entries a first release would take (every
    /// one but `releases`, `current`, hidden ones and `exclude`).
    async fn installed(&self, _t: &Target, _exclude: &[String]) -> DResult<Installed> {
        Err(DriverError::Failed(
            "this deployer keeps no releases/ of its own: nothing to adopt".into(),
        ))
    }
    /// Copy those entries into `releases/<version>` and point `current` at
    /// it atomically, leaving the running service's files where they are.
    /// A node whose `current` exists is left alone. Idempotent.
    async fn adopt(&self, _t: &Target, _version: &str, _exclude: &[String]) -> DResult<String> {
        Err(DriverError::Failed(
            "this deployer keeps no releases/ of its own: nothing to adopt".into(),
        ))
    }
}

/// What [`Deployer::installed`] found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Installed {
    /// The release `current` points at (checked as a version).
    pub current: Option<String>,
    /// Whether `releases/<current>` is there.
    pub current_present: bool,
    /// The entries a first release would take, by name.
    pub entries: Vec<String>,
}

/// Restarts the service so it serves the current release.
#[async_trait]
pub trait ServiceControl: Send + Sync {
    async fn restart(&self, t: &Target, version: &str) -> DResult<String>;
    /// Before the run: a check command (e.g. `systemctl cat api`) where
    /// `restart` would run, proving the target exists and privileges work.
    async fn check(&self, t: &Target, template: &str) -> DResult<String>;
}

/// One health probe of a node.
#[async_trait]
pub trait HealthProbe: Send + Sync {
    /// Ok when healthy (and serving `expect_version`, when the plan can tell).
    async fn probe(&self, t: &Target, expect_version: Option<&str>) -> DResult<String>;
}

/// Reads SLIs for a set of nodes over a window.
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Take baselines: the window starts now. `canary` is the group being
    /// watched, `baseline` the nodes it is compared with (maybe none).
    async fn start_window(&self, canary: &[Target], baseline: &[Target]) -> DResult<String>;
    /// One observation per check, over the window so far: the canary
    /// group's, with the baseline group's beside it when there is one.
    async fn observe(&self, canary: &[Target], baseline: &[Target]) -> Vec<Observation>;
    /// Before the run: the source answers every check's query.
    async fn preflight(&self, nodes: &[Target]) -> DResult<String> {
        self.start_window(nodes, &[]).await
    }
}

/// The drivers one plan uses.
#[derive(Clone)]
pub struct Drivers {
    pub balancer: Arc<dyn Balancer>,
    pub deployer: Arc<dyn Deployer>,
    pub service: Arc<dyn ServiceControl>,
    pub health: Arc<dyn HealthProbe>,
    pub metrics: Option<Arc<dyn MetricsSource>>,
}

pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_max_idle_per_host(4)
        .build()
        .expect("http client builds")
}

/// Map a reqwest error to a driver error: connection problems and timeouts
/// are the infrastructure's.
pub(crate) fn http_err(what: &str, e: reqwest::Error) -> DriverError {
    if e.is_connect() || e.is_timeout() {
        let why = if e.is_timeout() {
            "timed out"
        } else {
            "connection failed"
        };
        DriverError::Unreachable(format!("{what}: {why}"))
    } else {
        DriverError::Failed(format!("{what}: {e}"))
    }
}

/// Send a request; a connection problem or timeout is `http_err`'s, a
/// non-2xx answer is `on_status("METHOD URL: HTTP …")`.
pub(crate) async fn send_checked(
    req: reqwest::RequestBuilder,
    what: &str,
    on_status: fn(String) -> DriverError,
) -> DResult<reqwest::Response> {
    let resp = req.send().await.map_err(|e| http_err(what, e))?;
    if !resp.status().is_success() {
        return Err(on_status(format!("{what}: HTTP {}", resp.status())));
    }
    Ok(resp)
}
