//! The JSON output contract: what every command prints with `--output json`.
//!
//! One document per command on stdout, always an object, always with
//! `schema_version` first. The same things have the same names everywhere:
//! a run is `run_id`, a time is an RFC 3339 string (`started_at`,
//! `updated_at`, `since`), and the process holding a run is a [`Holder`]
//! object. Errors are `{schema_version, error, exit_code}`, with the
//! command's own fields when it has more to say (`problems`, `reachable`).
//! The text renderers read the same structs.
//!
//! The bodies, per command: `validate` [`Valid`] or [`Invalid`];
//! `preflight` [`Preflight`]; `run`, `resume` and `status`
//! [`RunSummary`]; `history` [`History`]; `promote`,
//! `abort`, `rollback` [`Command`]; `inventory`
//! [`crate::upgrade::Inventory`]; `plan` [`crate::upgrade::UpgradePlan`] or
//! [`PlanUnreachable`]; `upgrade` and `status CAMPAIGN` [`CampaignSummary`]
//! (or [`CampaignFailed`]); `lint` [`Lint`]; `demo` [`crate::demo::DemoReport`];
//! `journal export` [`JournalExport`], `journal import` [`JournalImport`],
//! `journal info` [`JournalInfo`]; any error [`Error`].

use crate::gates::GateResult;
use crate::journal::{
    pid_alive, CampaignRecord, CampaignStatus, Lease, RunRecord, RunStatus, StageAction,
    StageStatus,
};
use crate::lint::FileReport;
use glidepath_core::Cause;
use serde::Serialize;

/// Bumped when a key is renamed or removed, or changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// A document: `schema_version`, then the body's own keys.
#[derive(Debug, Serialize)]
pub struct Document<T: Serialize> {
    pub schema_version: u32,
    #[serde(flatten)]
    pub body: T,
}

/// The one JSON document a command prints (pretty, one per process).
pub fn document<T: Serialize>(body: T) -> String {
    serde_json::to_string_pretty(&Document {
        schema_version: SCHEMA_VERSION,
        body,
    })
    .expect("output types serialize")
}

/// Milliseconds since the epoch, written as RFC 3339 (UTC, milliseconds).
pub mod rfc3339 {
    use serde::Serializer;

    pub fn format(ms: u64) -> String {
        humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string()
    }

    pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*ms))
    }

    pub mod option {
        use serde::Serializer;

        pub fn serialize<S: Serializer>(ms: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => s.serialize_str(&super::format(*ms)),
                None => s.serialize_none(),
            }
        }
    }
}

/// The process holding a run's fleet lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// When it took the lease.
    #[serde(with = "rfc3339")]
    pub since: u64,
    /// False when the process is gone (or stopped heartbeating): `resume`
    /// finishes its run.
    pub alive: bool,
}

impl Holder {
    pub fn of(lease: &Lease, now: u64) -> Holder {
        Holder {
            pid: lease.pid,
            host: lease.host.clone(),
            since: lease.since,
            alive: !lease.holder_dead(now),
        }
    }
}

/// An error: the message and the process exit code.
#[derive(Debug, Serialize)]
pub struct Error<'a> {
    pub error: &'a str,
    pub exit_code: u8,
}

/// A run as `history` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RunEntry {
    pub run_id: String,
    pub fleet: String,
    pub version: String,
    pub status: RunStatus,
    pub reason: String,
    pub plan_path: String,
    pub plan_hash: String,
    #[serde(with = "rfc3339")]
    pub started_at: u64,
    #[serde(with = "rfc3339")]
    pub updated_at: u64,
}

impl From<&RunRecord> for RunEntry {
    fn from(r: &RunRecord) -> Self {
        RunEntry {
            run_id: r.id.clone(),
            fleet: r.fleet.clone(),
            version: r.version.clone(),
            status: r.status,
            reason: r.reason.clone(),
            plan_path: r.plan_path.clone(),
            plan_hash: r.plan_hash.clone(),
            started_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// `history`.
#[derive(Debug, Serialize)]
pub struct History {
    pub runs: Vec<RunEntry>,
}

/// `preflight`.
#[derive(Debug, Serialize)]
pub struct Preflight<'a> {
    /// True when no gate fails.
    pub passed: bool,
    pub gates: &'a [GateResult],
}

/// `validate` of a valid plan.
#[derive(Debug, Serialize)]
pub struct Valid<'a> {
    pub valid: bool,
    pub plan: &'a std::path::Path,
    pub steps: &'a [String],
}

/// `validate` (or any command reading a plan or a system file) of an
/// invalid file: every problem, and the error.
#[derive(Debug, Serialize)]
pub struct Invalid<'a> {
    pub valid: bool,
    pub problems: serde_json::Value,
    pub error: &'a str,
    pub exit_code: u8,
}

/// `lint`.
#[derive(Debug, Serialize)]
pub struct Lint<'a> {
    pub files: &'a [FileReport],
}

/// `plan` of a target no safe order reaches: the plan (`reachable: false`,
/// `reason`) and the error.
#[derive(Debug, Serialize)]
pub struct PlanUnreachable<'a> {
    #[serde(flatten)]
    pub plan: &'a crate::upgrade::UpgradePlan,
    pub error: &'a str,
    pub exit_code: u8,
}

/// What `promote`, `abort` and `rollback` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandResult {
    /// The live process journaled it.
    Applied,
    /// Queued for whoever resumes the run (a promote with no live process).
    Queued,
    /// No live process held the run: this process took it over and carried
    /// the command out (`summary` is the run at the end).
    CarriedOut,
    /// The run had already finished: nothing to do.
    AlreadyFinished,
}

/// `promote`, `abort`, `rollback`.
#[derive(Debug, Serialize)]
pub struct Command<'a> {
    pub run_id: &'a str,
    pub command: &'a str,
    /// The command was carried out (by the live process or by this one).
    pub acknowledged: bool,
    pub result: CommandResult,
    /// The run's status when it had already finished, or at the end.
    pub status: Option<&'a str>,
    /// The live process that acknowledged it.
    pub holder: Option<&'a Holder>,
    /// The run at the end, when this process carried the command out.
    pub summary: Option<&'a RunSummary>,
}

/// Per-node summary of a run. `now` is what the journal says the node
/// should run (intent: where `current` points); `seen` is what was last
/// observed (the release a preflight, health, post-check or peers check
/// confirmed), which differs while a step's effect is unconfirmed.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSummary {
    pub node: String,
    pub before: Option<String>,
    pub now: Option<String>,
    pub seen: Option<String>,
    /// `out` while the run holds it out of rotation.
    pub rotation: &'static str,
    /// What the last peers check saw, if it found the node down.
    pub down: Option<String>,
    pub status: String,
    pub steps: usize,
    pub busy_ms: u64,
    pub last: String,
}

/// A run as `status` and `history` show it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub fleet: String,
    pub version: String,
    pub status: String,
    pub reason: String,
    /// The commands that apply now, spelled out (run id, `--journal` when
    /// not the default), each with what it does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_commands: Vec<String>,
    pub cause: Option<Cause>,
    #[serde(with = "rfc3339")]
    pub started_at: u64,
    /// The last journaled event (or the record's last change).
    #[serde(with = "rfc3339")]
    pub updated_at: u64,
    pub duration_ms: u64,
    pub waiting: Option<String>,
    /// The process holding the run's fleet lease, if any.
    pub holder: Option<Holder>,
    pub nodes: Vec<NodeSummary>,
    pub decisions: Vec<String>,
    /// Each SLI check's latest verdict, with the figures behind it (for a
    /// compare check, both groups' counts, the ratio with its confidence
    /// interval, and the e-value against 1/alpha).
    pub sli: Vec<glidepath_core::Judgement>,
    /// The `[[pre]]`/`[[post]]` tasks, in order, with where each stands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskSummary>,
    /// Irreversible tasks that have run (or may have): what a rollback
    /// cannot undo.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub irreversible: Vec<String>,
    /// The nodes that failed on the forward path within the failure budget
    /// (`max_failed_nodes`): the run went on without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_nodes: Vec<FailedNode>,
    /// The campaign stage this run carries out (`glidepath upgrade`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<CampaignRef>,
}

/// A node that failed on the forward path within the failure budget: it
/// was restored on its own (never tried again) and the run went on.
#[derive(Debug, Clone, Serialize)]
pub struct FailedNode {
    pub node: String,
    /// Why it failed on the forward path.
    pub reason: String,
    /// Its status now: `rolled_back` (restored to its last-known-good
    /// release), `restored` (put back into rotation, never switched),
    /// `untouched` (never left rotation), `failed` (its restore failed),
    /// or `in_progress` while it is being restored.
    pub status: String,
    /// The release it should serve now (`null` once its restore failed).
    pub now: Option<String>,
    /// `out` while it is out of rotation (being restored, or kept out).
    pub rotation: &'static str,
}

/// One task in a run's summary.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TaskSummary {
    /// `pre` or `post`.
    pub phase: String,
    pub name: String,
    /// What it does.
    pub what: String,
    /// `done`, `accepted` (a person counted it done), `failed`,
    /// `running`, `retrying`, or `pending`.
    pub status: String,
    /// What its last attempt said.
    pub detail: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irreversible: Option<String>,
}

/// Where a run sits in its campaign: stage `stage` of `stages`.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignRef {
    pub campaign_id: String,
    /// 1-based.
    pub stage: usize,
    pub stages: usize,
    pub title: String,
    pub status: CampaignStatus,
}

impl CampaignRef {
    pub fn of(c: &CampaignRecord, run: &str) -> Option<CampaignRef> {
        let s = c.stages.iter().find(|s| s.run_id.as_deref() == Some(run))?;
        Some(CampaignRef {
            campaign_id: c.id.clone(),
            stage: s.index + 1,
            stages: c.stages.len(),
            title: s.action.title(),
            status: c.status,
        })
    }
}

/// One stage of a campaign, as `status` and `upgrade` show it.
#[derive(Debug, Clone, Serialize)]
pub struct StageEntry {
    /// 1-based.
    pub stage: usize,
    pub title: String,
    /// What it does: `kind` (`upgrade`: `component`, `from`, `to`,
    /// `rollout_plan`, `artifact`, `sha256`; `enable_flag`: `flag`,
    /// `command`, `timeout_ms`, `dir`).
    #[serde(flatten)]
    pub action: StageAction,
    pub why: String,
    pub status: StageStatus,
    /// The run carrying it out (absent until it has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub detail: String,
    #[serde(with = "rfc3339")]
    pub updated_at: u64,
}

/// The process carrying a campaign out (not a lease [`Holder`]: a campaign
/// has no heartbeat; each stage's run holds its fleet's lease).
#[derive(Debug, Clone, Serialize)]
pub struct CampaignProcess {
    pub pid: u32,
    pub host: String,
    /// Known only on the same host: false when that process is gone.
    pub alive: Option<bool>,
}

/// A campaign (`glidepath upgrade`, `glidepath status CAMPAIGN`).
#[derive(Debug, Clone, Serialize)]
pub struct CampaignSummary {
    pub campaign_id: String,
    pub system_path: String,
    pub to: Vec<String>,
    pub enable: Vec<String>,
    pub status: CampaignStatus,
    pub reason: String,
    #[serde(with = "rfc3339")]
    pub started_at: u64,
    #[serde(with = "rfc3339")]
    pub updated_at: u64,
    /// While `running`: the process carrying it out.
    pub process: Option<CampaignProcess>,
    /// The stage under way or where it stopped (1-based); `null` once every
    /// stage succeeded.
    pub stage: Option<usize>,
    pub stages_total: usize,
    pub stages: Vec<StageEntry>,
}

impl CampaignSummary {
    pub fn of(c: &CampaignRecord) -> CampaignSummary {
        let process = (c.status == CampaignStatus::Running).then(|| CampaignProcess {
            pid: c.pid,
            host: c.host.clone(),
            alive: (c.host == crate::journal::hostname()).then(|| pid_alive(c.pid)),
        });
        CampaignSummary {
            campaign_id: c.id.clone(),
            system_path: c.system_path.clone(),
            to: c.to.clone(),
            enable: c.enable.clone(),
            status: c.status,
            reason: c.reason.clone(),
            started_at: c.created_at,
            updated_at: c.updated_at,
            process,
            stage: c.current().map(|s| s.index + 1),
            stages_total: c.stages.len(),
            stages: c
                .stages
                .iter()
                .map(|s| StageEntry {
                    stage: s.index + 1,
                    title: s.action.title(),
                    action: s.action.clone(),
                    why: s.why.clone(),
                    status: s.status,
                    run_id: s.run_id.clone(),
                    detail: s.detail.clone(),
                    updated_at: s.updated_at,
                })
                .collect(),
        }
    }

    /// The text `status CAMPAIGN` prints.
    pub fn render(&self) -> String {
        let mut s = format!(
            "campaign {}  {}  to {}{}  started {}
status: {}",
            self.campaign_id,
            self.system_path,
            self.to.join(" "),
            if self.enable.is_empty() {
                String::new()
            } else {
                format!(" enable {}", self.enable.join(" "))
            },
            crate::journal::fmt_time(self.started_at),
            self.status,
        );
        match self.stage {
            Some(k) => s.push_str(&format!(", stage {k} of {}", self.stages_total)),
            None => s.push_str(&format!(", {} stage(s) done", self.stages_total)),
        }
        s.push('\n');
        // the reason, unless the stage where it stopped says it already
        let said = self
            .stage
            .and_then(|k| self.stages.get(k - 1))
            .is_some_and(|st| !st.detail.is_empty() && self.reason.ends_with(&st.detail));
        if !self.reason.is_empty() && !said {
            s.push_str(&format!("reason: {}\n", self.reason));
        }
        if let Some(h) = &self.process {
            match h.alive {
                Some(false) => s.push_str(&format!(
                    "process: pid {} on {} is gone — `glidepath upgrade --resume {}` continues\n",
                    h.pid, h.host, self.campaign_id
                )),
                _ => s.push_str(&format!("process: pid {} on {}\n", h.pid, h.host)),
            }
        }
        for st in &self.stages {
            s.push_str(&format!(
                "  {}. {:<10} {}{}\n",
                st.stage,
                st.status.as_str(),
                st.title,
                st.run_id
                    .as_deref()
                    .map_or(String::new(), |r| format!("  (run {r})"))
            ));
            if !st.detail.is_empty() && st.status != StageStatus::Succeeded {
                s.push_str(&format!("     {}\n", st.detail));
            }
        }
        s
    }
}

/// `upgrade` that did not end in success: the campaign, the error and the
/// exit code.
#[derive(Debug, Serialize)]
pub struct CampaignFailed<'a> {
    #[serde(flatten)]
    pub campaign: &'a CampaignSummary,
    pub error: &'a str,
    pub exit_code: u8,
}

/// `journal export`: what went into the dump.
#[derive(Debug, Serialize)]
pub struct JournalExport<'a> {
    /// The journal read (a path, or a URL without its password).
    pub journal: &'a str,
    pub file: &'a std::path::Path,
    /// The dump's `format` and `version` (its header line).
    pub format: &'a str,
    pub format_version: u32,
    pub runs: &'a [String],
    pub campaigns: &'a [String],
}

/// What `journal import` did with one line of the dump.
#[derive(Debug, Clone, Serialize)]
pub struct ImportLine {
    /// 1-based (the header is line 1).
    pub line: usize,
    /// `run` or `campaign` (absent when the line is unreadable).
    pub kind: Option<&'static str>,
    pub id: Option<String>,
    /// `imported`, `skipped` (already there, identical), `refused` (there
    /// with other content) or `malformed`.
    pub result: &'static str,
    /// Why it was refused or is malformed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `journal import`.
#[derive(Debug, Serialize)]
pub struct JournalImport<'a> {
    /// The journal written (a path, or a URL without its password).
    pub journal: &'a str,
    pub file: &'a std::path::Path,
    pub imported: usize,
    pub skipped: usize,
    /// Refused or malformed lines (the command exits 2).
    pub refused: usize,
    pub lines: &'a [ImportLine],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
}

/// A lease as `journal info` lists it.
#[derive(Debug, Serialize)]
pub struct LeaseEntry {
    pub fleet: String,
    pub run_id: String,
    pub holder: Holder,
    pub epoch: i64,
}

/// `journal info`.
#[derive(Debug, Serialize)]
pub struct JournalInfo {
    /// `sqlite` or `postgresql`.
    pub backend: &'static str,
    /// A path, or the URL without its password.
    pub location: String,
    /// The journal's schema version (not the document's `schema_version`).
    pub journal_schema_version: i64,
    /// The newest journal schema this glidepath knows.
    pub known_journal_schema_version: i64,
    pub runs: u64,
    pub campaigns: u64,
    /// Leases whose holder is alive.
    pub live_leases: usize,
    pub leases: Vec<LeaseEntry>,
}
