//! The plan file: parsing and validation (the low stage of `run`, no I/O
//! besides reading the file and checking the artifact exists). Every problem
//! is collected, not just the first, each with its span and a hint.
//!
//! Layout: [`parse`] reads the TOML document and calls one reader per
//! section, each `<section>::read(r, root, …) -> Option<Cfg>` in its own
//! module (`release`, `fleet`, `strategy`, `balancer`, `deploy`, `health`,
//! `sli` with `checks`, `rollback`, `system`, `journal`, `notify`; `[gates]` is
//! `crate::gates::read`). They share `reader` (the `Reader`: missing
//! sections, wrong types, unknown keys, durations, `did_you_mean`). The
//! config types are in `types`; `template` is the one template module
//! (placeholder sets, `Vars`, `render`, `render_shell`); `artifact` hashes
//! releases; `names` holds the grammars of node names, versions and
//! addresses; `describe` has `Plan::rollout_spec` and `Plan::describe`.

mod balancer;
mod checks;
mod deploy;
mod describe;
mod drivers;
mod fleet;
mod gates;
mod health;
mod journal;
pub mod notify;
mod override_release;
mod placeholders;
pub(crate) mod probe;
mod reader;
mod release;
mod rollback;
mod sli;
mod strategy;
mod system;
mod tasks;

pub use crate::artifact::{
    artifact_sha256, dir_manifest, open_regular, sha256_hex, DIR_SHA256_PIPELINE, MARKER,
};
pub use crate::config::{
    Auth, BalancerCfg, CheckCfg, CheckKind, DeployCfg, DeployKind, HealthCfg, MigrationFile, Node,
    Release, SecretRef, SliCfg, SliSource, Strategy, TaskAction, TaskCfg,
};
pub use crate::names::{check_address, check_node_name, check_version, MAX_NAME_LEN};
pub use crate::template::{
    host_of, port_of, render, render_shell, shown, sq, Vars, DEPLOY_PLACEHOLDERS,
    INSTALL_DIR_PLACEHOLDERS, NODE_PLACEHOLDERS, PLACEHOLDERS, QUERY_PLACEHOLDERS,
    TASK_PLACEHOLDERS,
};
pub use override_release::{with_release, ReleaseOverride};
pub use reader::parse_duration;
pub(crate) use reader::{did_you_mean, Reader};

use crate::diag::{Diag, Report, Severity};
use reader::{sp, Keys};
use std::path::{Path, PathBuf};
use toml_span::value::ValueInner;

/// A validated plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub source: String,
    pub hash: String,
    pub release: Release,
    pub fleet_name: String,
    pub nodes: Vec<Node>,
    pub strategy: Strategy,
    pub balancers: Vec<BalancerCfg>,
    pub deploy: DeployCfg,
    pub health: HealthCfg,
    pub sli: Option<SliCfg>,
    pub rollback_on: Vec<String>,
    /// The last-known-good release as an artifact, for nodes whose
    /// `releases/` no longer holds it.
    pub rollback_release: Option<Release>,
    /// `[journal]`: a SQLite file (`path`) or a PostgreSQL database (`url`).
    pub journal: Option<crate::journal::Location>,
    pub gates: crate::gates::GatesCfg,
    /// `[[pre]]` then `[[post]]` tasks, in order.
    pub tasks: Vec<TaskCfg>,
    /// `[rollback] on_post_failure`.
    pub on_post_failure: glidepath_core::PostFailurePolicy,
    /// `[notify]`: where the run's notifications go.
    pub notify: Option<crate::config::NotifyCfg>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read plan {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plan {} is invalid ({} problem(s))", .0.file, .0.diags.iter().filter(|d| d.severity == Severity::Error).count())]
    Invalid(Report),
    #[error("cannot override the release of plan {path}: {why}")]
    Override { path: PathBuf, why: String },
}

/// The sections a plan may have.
const SECTIONS: &[&str] = &[
    "release", "fleet", "strategy", "balancer", "deploy", "health", "sli", "rollback", "journal",
    "system", "gates", "pre", "post", "notify",
];

/// Read a plan file, override its release (`run --release …`: the
/// override is written into the text, which is what the run journals), and
/// validate it.
pub fn load_with(path: &Path, o: &ReleaseOverride) -> Result<(Plan, Report), PlanError> {
    if o.is_empty() {
        return load(path);
    }
    let source = std::fs::read_to_string(path).map_err(|e| PlanError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let source = with_release(&source, o, &cwd).map_err(|why| PlanError::Override {
        path: path.to_path_buf(),
        why,
    })?;
    let dir = path
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    parse(path, &source, &dir)
}

/// Read and validate a plan file.
pub fn load(path: &Path) -> Result<(Plan, Report), PlanError> {
    let source = std::fs::read_to_string(path).map_err(|e| PlanError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    // Resolve relative paths against the plan's directory, made absolute so
    // that `resume` from another working directory finds the same files.
    let dir = path
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    parse(path, &source, &dir)
}

/// Validate plan text. `dir` resolves relative paths (artifact, journal).
pub fn parse(path: &Path, source: &str, dir: &Path) -> Result<(Plan, Report), PlanError> {
    let report = |diags: Vec<Diag>| Report {
        file: path.display().to_string(),
        source: source.to_string(),
        diags,
    };
    let mut doc = match toml_span::parse(source) {
        Ok(d) => d,
        Err(e) => {
            let msg = e.to_string();
            let d = Diag::error(format!("TOML syntax error: {msg}"), sp(e.span), "here")
                .hint("check quotes, brackets and `key = value` pairs on this line");
            return Err(PlanError::Invalid(report(vec![d])));
        }
    };
    let root = match doc.take() {
        ValueInner::Table(t) => t,
        _ => unreachable!("a TOML document is a table"),
    };
    let mut r = Reader {
        src: source,
        diags: Vec::new(),
        uses_port: None,
    };
    r.known_keys(&root, "the plan", SECTIONS);

    let release = release::read(&mut r, &root, dir);
    let fleet = fleet::read(&mut r, &root).unwrap_or_default();
    let strategy = strategy::read(&mut r, &root, &fleet.nodes).unwrap_or_default();
    let node_names: Vec<&str> = fleet.nodes.iter().map(|n| n.name.as_str()).collect();
    let balancers = balancer::read(&mut r, &root, &node_names).unwrap_or_default();
    let deploy = deploy::read(&mut r, &root, &fleet.nodes, dir);
    let health = health::read(&mut r, &root, dir);
    let sli = sli::read(&mut r, &root, dir);
    sli::check_window(&mut r, &root, sli.as_ref(), &strategy);
    sli::check_baseline(&mut r, &root, sli.as_ref(), &fleet.nodes, &strategy);
    let rollback = rollback::read(&mut r, &root, dir).unwrap_or_default();
    let gates = r
        .section(&root, "gates", Keys::ByReader)
        .map(|(t, at)| crate::gates::read(&mut r, t, at, dir))
        .unwrap_or_default();
    system::read(&mut r, &root, dir);
    let journal = journal::read(&mut r, &root, dir);
    let tasks = tasks::read(&mut r, &root, dir);
    let notify = notify::read(&mut r, &root, dir);
    if let Some(span) = r.uses_port {
        for n in fleet.nodes.iter().filter(|n| port_of(&n.address).is_none()) {
            r.err(
                span,
                format!(
                    "`{{port}}` is used here, but node `{}` has no port in its address `{}`",
                    n.name, n.address
                ),
                "needs a port",
                Some("write every node's address as host:port (e.g. 10.0.0.11:8080)".into()),
            );
        }
    }

    let errors = r.diags.iter().any(|d| d.severity == Severity::Error);
    let mut diags = r.diags;
    diags.sort_by_key(|d| d.span.map_or(0, |s| s.0));
    if errors {
        return Err(PlanError::Invalid(report(diags)));
    }
    let plan = Plan {
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
        source: source.to_string(),
        hash: sha256_hex(source.as_bytes()),
        release: release.expect("validated"),
        fleet_name: fleet.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "fleet".into())
        }),
        nodes: fleet.nodes,
        strategy,
        balancers,
        deploy: deploy.expect("validated"),
        health: health.expect("validated"),
        sli,
        rollback_on: rollback.on,
        rollback_release: rollback.release,
        journal,
        gates,
        tasks,
        on_post_failure: rollback.on_post_failure,
        notify,
    };
    Ok((plan, report(diags)))
}

impl Plan {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The node as the drivers see it (outside a run's step: no releases).
    /// Each node as `(name, address)`: what the node locks and markers key.
    pub fn node_addresses(&self) -> Vec<(String, String)> {
        self.nodes
            .iter()
            .map(|n| (n.name.clone(), n.address.clone()))
            .collect()
    }

    pub fn target(&self, node: &Node) -> crate::drivers::Target {
        crate::drivers::Target {
            name: node.name.clone(),
            address: node.address.clone(),
            install_dir: self.install_dir(node),
            ..Default::default()
        }
    }

    /// The node's install directory (absolute, or relative to the plan dir).
    pub fn install_dir(&self, node: &Node) -> PathBuf {
        self.dir
            .join(self.vars(node).fill(&self.deploy.install_dir))
    }

    /// The releases whose sha256 this plan gives (the new one, and the
    /// `[rollback]` artifact): deployers re-verify them before a switch.
    pub fn known_releases(&self) -> Vec<Release> {
        std::iter::once(self.release.clone())
            .chain(self.rollback_release.clone())
            .collect()
    }

    /// The placeholders every template of this node has (`{node}`,
    /// `{address}`, `{host}`, `{plan_dir}`); drivers add `{install_dir}` and
    /// `{version}` (see `drivers::Target::vars`).
    pub fn vars(&self, node: &Node) -> Vars {
        Vars::node(&node.name, &node.address).with("plan_dir", self.dir.display().to_string())
    }

    /// Where the journal lives unless overridden on the command line: the
    /// plan's `[journal]`, else this machine's.
    pub fn journal_location(&self) -> crate::journal::Location {
        self.journal
            .clone()
            .unwrap_or_else(|| crate::journal::default_path().into())
    }
}
