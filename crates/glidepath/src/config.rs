//! The configuration a plan's sections are read into (the section readers
//! are `plan/<section>.rs`).

use glidepath_core::{BatchSize, CheckSpec, DrainTimeoutPolicy};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub version: String,
    pub artifact: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BalancerCfg {
    None,
    /// Drain/ready endpoints over HTTP and a JSON state endpoint.
    Http {
        drain: String,
        ready: String,
        state: String,
        timeout: Duration,
    },
    /// HAProxy's runtime API over a unix socket or TCP.
    Haproxy {
        socket: Option<PathBuf>,
        address: Option<String>,
        backend: String,
        /// node name → HAProxy server name (default: the node name).
        servers: std::collections::BTreeMap<String, String>,
        /// A URL through the frontend, checked after re-enabling.
        frontend: Option<String>,
        timeout: Duration,
    },
    /// Shell command templates.
    Command {
        drain: String,
        enable: String,
        /// Prints the node's active connections (a number).
        active: String,
        /// Exit 0 when the node is in rotation.
        check: Option<String>,
        timeout: Duration,
    },
}

impl BalancerCfg {
    pub fn kind(&self) -> &'static str {
        match self {
            BalancerCfg::None => "none",
            BalancerCfg::Http { .. } => "http",
            BalancerCfg::Haproxy { .. } => "haproxy",
            BalancerCfg::Command { .. } => "command",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeployKind {
    /// This machine's filesystem.
    Local,
    /// The system OpenSSH client, with connection reuse.
    Ssh {
        /// Host template (default `{host}`: the address without its port).
        host: String,
        user: Option<String>,
        port: Option<u16>,
        identity_file: Option<PathBuf>,
        /// Extra `ssh` arguments (e.g. `-o UserKnownHostsFile=…`).
        options: Vec<String>,
    },
    /// Shell command templates for every step.
    Command {
        current: String,
        stage: String,
        switch: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeployCfg {
    pub kind: DeployKind,
    pub install_dir: String,
    pub keep_releases: usize,
    pub restart: String,
    pub restart_timeout: Duration,
    /// Timeout of every other deploy command (ssh/command deployers), and
    /// of local staging (the copy and its hash).
    pub command_timeout: Duration,
    /// Preflight: proves the restart target exists and the privileges work
    /// (e.g. `systemctl cat api`, `sudo -n true`); runs where `restart` runs.
    pub check: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCfg {
    pub http: Option<String>,
    /// Substring the HTTP body must contain.
    pub body: Option<String>,
    pub tcp: Option<String>,
    pub command: Option<String>,
    pub version_url: Option<String>,
    pub deadline: Duration,
    pub interval: Duration,
    pub timeout: Duration,
    /// A verification probe (`probe = { … }`), checked on each node after
    /// the others (its templates filled with the node's placeholders).
    pub probe: Option<ProbeCfg>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// Share of requests whose `label` starts with `prefix` (e.g. 5xx codes).
    ErrorRatio {
        metric: String,
        label: String,
        prefix: String,
    },
    /// A quantile of a histogram (seconds).
    LatencyQuantile { metric: String, quantile: f64 },
    /// PromQL instant queries: the value, and the sample size; with
    /// `compare = "baseline"`, `events_query` counts the bad events (and
    /// `samples_query` the requests) over `{window}`.
    Query {
        query: String,
        samples_query: Option<String>,
        events_query: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckCfg {
    pub spec: CheckSpec,
    pub kind: CheckKind,
}

/// Where a secret comes from; its value is read at use and never logged.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretRef::Env(v) => {
                std::env::var(v).map_err(|_| format!("environment variable {v} is not set"))
            }
            SecretRef::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read secret file {}: {e}", p.display())),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    Bearer(SecretRef),
    Basic { user: String, password: SecretRef },
}

#[derive(Debug, Clone, PartialEq)]
pub enum SliSource {
    Scrape { url: String },
    Prometheus { url: String, auth: Option<Auth> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SliCfg {
    pub source: SliSource,
    pub timeout: Duration,
    pub checks: Vec<CheckCfg>,
    /// Metrics source failures pause the window (true) or roll back.
    pub pause_on_error: bool,
    /// The rollout's false-regression budget, split among the compare checks.
    pub alpha: f64,
    /// The nodes the canary is compared with (default: every node outside
    /// the canary group, all untouched while the window runs).
    pub baseline: Option<Vec<String>>,
    /// A fleet-wide incident during the window: pause or roll back.
    pub on_incident: glidepath_core::IncidentPolicy,
    /// The span of the values checked against `max`/`min` (the counts the
    /// judge tests span the whole window).
    pub recent: Duration,
    /// `[[sli.check]]`s that are verification probes (`probe = {…}`): run
    /// on each watched node every probe, their value the share that failed.
    pub probe_checks: Vec<ProbeCheck>,
}

/// An SLI check that runs a verification probe on each watched node.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeCheck {
    /// `max` is the share of nodes whose probe may fail (default 0).
    pub spec: CheckSpec,
    pub probe: ProbeCfg,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    pub canary: Vec<String>,
    pub batch: BatchSize,
    pub max_unavailable: Option<usize>,
    pub sli_window: Option<Duration>,
    pub probe_interval: Duration,
    pub pause_after: Vec<usize>,
    pub drain_timeout: Duration,
    pub on_drain_timeout: DrainTimeoutPolicy,
    /// `retry = { backoff, max_backoff, deadline }`: how infrastructure
    /// faults are waited out.
    pub retry: glidepath_core::RetrySpec,
    /// `batch_bake`: watch the upgraded nodes this long after each batch.
    pub batch_bake: Option<Duration>,
    /// `watch_after`: watch the whole fleet this long after the last batch.
    pub watch_after: Option<Duration>,
    /// `max_failed_nodes`: how many batch nodes may fail (each restored on
    /// its own) before the run rolls back; a count or a share of the fleet.
    pub max_failed_nodes: glidepath_core::FailureBudget,
}

/// One `[[pre]]` or `[[post]]` task: what it does, how long it may take,
/// how often it is tried. (The core's `TaskSpec` is built from it.)
#[derive(Debug, Clone, PartialEq)]
pub struct TaskCfg {
    pub name: String,
    pub phase: glidepath_core::TaskPhase,
    pub action: TaskAction,
    /// Record what the task saw (a command's stdout) for a later
    /// `compare_to` task.
    pub capture: bool,
    pub timeout: Duration,
    /// 1 + `retries`.
    pub attempts: u32,
    pub retry_delay: Duration,
    pub idempotent: bool,
    /// `reversible = false` (or a contract migration): what cannot be undone.
    pub irreversible: Option<String>,
}

/// What a task does.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskAction {
    /// A shell command (`run`); `{version}`, `{plan_dir}` and `{run}` are
    /// filled, quoted.
    Command { run: String },
    /// SQL migrations applied in order, each in a transaction with its row
    /// in the database's `glidepath_migrations` ledger, so each runs once.
    Migrate {
        files: Vec<MigrationFile>,
        database_url: SecretRef,
    },
    /// A verification probe (`probe = {…}`), its templates filled with the
    /// task's values.
    Probe(Box<ProbeCfg>),
    /// Do what the capture task `capture` did again, and pass when it sees
    /// the same value.
    CompareTo {
        capture: String,
        action: Box<TaskAction>,
    },
}

/// One migration file of a `migrate` task, as read when the plan was.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationFile {
    /// The path as the plan writes it (the ledger key).
    pub name: String,
    pub path: PathBuf,
    /// Its sha256 when the plan was read: a file changed since is refused.
    pub sha256: String,
    /// A post-phase (contract) file, by `glidepath lint`'s rule.
    pub contract: bool,
}

impl TaskCfg {
    /// What the task does, in a few words (`migrate 0042_expand.sql`).
    pub fn describe(&self) -> String {
        let what = self.action.describe();
        if self.capture {
            format!("{what}, recording its output")
        } else {
            what
        }
    }

    /// `describe`, with the timeout, retries and declarations.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} — {} (timeout {}",
            self.name,
            self.describe(),
            humantime::format_duration(self.timeout)
        );
        if self.attempts > 1 {
            s.push_str(&format!(
                ", {} retries {} apart",
                self.attempts - 1,
                humantime::format_duration(self.retry_delay)
            ));
        }
        s.push_str(if self.idempotent {
            ", repeated after a crash"
        } else {
            ", not repeated after a crash: held for a person"
        });
        s.push(')');
        if let Some(n) = &self.irreversible {
            s.push_str(&format!(" IRREVERSIBLE: {n}"));
        }
        s
    }
}

impl TaskAction {
    pub fn describe(&self) -> String {
        match self {
            TaskAction::Command { run } => format!("run `{}`", crate::shell::shown(run)),
            TaskAction::Migrate { files, .. } => format!(
                "migrate {} (once each, recorded in glidepath_migrations)",
                files
                    .iter()
                    .map(|f| if f.contract {
                        format!("{} [contract]", f.name)
                    } else {
                        f.name.clone()
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            TaskAction::Probe(p) => format!("probe {}", p.describe()),
            TaskAction::CompareTo { capture, .. } => {
                format!("compare with what `{capture}` recorded")
            }
        }
    }
}

/// A verification probe (`probe = { … }`, read by `plan::probe::read`):
/// what `crate::probe::run` checks. URLs, addresses and the command may be
/// templates, filled by `ProbeCfg::fill` before the probe runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeCfg {
    Http(HttpProbe),
    WebSocket(WsProbe),
    Tcp(TcpProbe),
    Command(CommandProbe),
    PromQl(PromQlProbe),
}

/// `http = URL`: the status (any 2xx unless `status`), a body substring, and
/// JSON fields by JSON pointer, each equal to its expected value.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpProbe {
    pub url: String,
    pub status: Option<u16>,
    pub body: Option<String>,
    pub json: Vec<(String, serde_json::Value)>,
    pub within: Option<Duration>,
}

/// `websocket = URL`: the handshake, then `send` (a JSON text message), and
/// a reply whose `type` is `expect_type` and whose `caps_field` holds every
/// one of `caps`.
#[derive(Debug, Clone, PartialEq)]
pub struct WsProbe {
    pub url: String,
    pub send: Option<String>,
    pub expect_type: Option<String>,
    pub caps: Vec<String>,
    pub caps_field: String,
    pub within: Option<Duration>,
}

/// `tcp = "host:port"`: a connection is accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpProbe {
    pub address: String,
    pub within: Option<Duration>,
}

/// `command = "…"`: exit 0 (and `stdout` in its output), run in `dir`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandProbe {
    pub command: String,
    pub stdout: Option<String>,
    pub dir: PathBuf,
    pub within: Option<Duration>,
}

/// What a PromQL probe makes of a query with no series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEmpty {
    /// No series is 0 (a rate of events that did not happen): the default.
    Zero,
    /// No series fails the probe.
    Fail,
}

/// `promql = QUERY, prometheus = URL`: one value, within `min`/`max`.
#[derive(Debug, Clone, PartialEq)]
pub struct PromQlProbe {
    pub query: String,
    pub prometheus: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub on_empty: OnEmpty,
    pub within: Option<Duration>,
}

/// `[notify]`: where the run's notifications go (read by `plan::notify`,
/// delivered by `notify::Notifier`).
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyCfg {
    pub sinks: Vec<NotifySink>,
    /// How long the end of a run waits for deliveries in flight.
    pub grace: Duration,
}

/// One destination of notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySink {
    /// How messages name it (`webhook 1`, `slack 2`, `command 1`): never
    /// its URL, which may be a secret.
    pub label: String,
    pub kind: NotifyKind,
    /// The events it receives (`on = [...]`); `None`: all of them.
    pub on: Option<Vec<String>>,
    /// Each call's timeout.
    pub timeout: Duration,
    /// The body: the event as JSON, or Slack's `{"text": …}`.
    pub format: NotifyFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFormat {
    Json,
    Slack,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NotifyKind {
    /// An HTTP POST (plain `http://`: this build has no TLS).
    Webhook {
        url: NotifyUrl,
        /// Sent as `Authorization: Bearer …`.
        token: Option<SecretRef>,
    },
    /// A shell command, the event as JSON on its stdin and in
    /// `$GLIDEPATH_EVENT`.
    Command { command: String },
}

/// A webhook's URL: written in the plan (which is journaled), or a secret
/// read at each delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum NotifyUrl {
    Plain(String),
    Secret(SecretRef),
}

/// The events a sink may ask for (`on = [...]`).
pub const NOTIFY_EVENTS: &[&str] = &[
    "start",
    "waiting",
    "breach",
    "rollback",
    "incident",
    "suspended",
    "finished",
    "failed",
    "rollback_failed",
];
