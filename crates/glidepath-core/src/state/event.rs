//! What the core and the executor exchange: the [`StepKind`]s a driver
//! carries out, a decided [`Step`] with its reason, the [`StepOutcome`] a
//! driver reports, how a run ended ([`Outcome`]) and why it left the
//! forward path ([`Cause`]), and the journaled [`Event`]s themselves.

use crate::sli::Observation;
use crate::spec::{Millis, RolloutSpec, TaskPhase};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A step the executor carries out through a driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Take the node out of rotation at the load balancer.
    Drain,
    /// Read the node's active connections (repeated until 0 or the drain timeout).
    CheckDrained,
    /// Copy the artifact into `releases/<version>` and verify its checksum.
    Stage,
    /// Atomically point `current` at a release.
    Switch,
    /// Restart the service.
    Restart,
    /// One health probe (repeated until healthy or the health deadline).
    CheckHealth,
    /// Put the node back into rotation.
    Enable,
    /// Check the node serves through the load balancer after re-enabling.
    PostCheck,
    /// Take metric baselines: the SLI window starts.
    StartWindow,
    /// Probe every SLI check once.
    Probe,
    /// Probe the nodes that should be serving (in rotation, not being
    /// deployed) at a batch boundary: a node found down counts against
    /// `max_unavailable`.
    CheckPeers,
    /// One `[[pre]]` or `[[post]]` task (named by `Step::task`).
    Task,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Drain => "drain",
            StepKind::CheckDrained => "check_drained",
            StepKind::Stage => "stage",
            StepKind::Switch => "switch",
            StepKind::Restart => "restart",
            StepKind::CheckHealth => "check_health",
            StepKind::Enable => "enable",
            StepKind::PostCheck => "post_check",
            StepKind::StartWindow => "start_window",
            StepKind::Probe => "probe",
            StepKind::CheckPeers => "check_peers",
            StepKind::Task => "task",
        }
    }

    /// Every node step is idempotent by construction (draining a drained node,
    /// switching to the release already current, restarting, probing): after
    /// a crash the executor may repeat the one step that was in flight.
    pub fn idempotent(self) -> bool {
        true
    }

    /// An infrastructure fault (`StepOutcome::infra`) in this step is waited
    /// out (retried with backoff until the retry deadline) rather than
    /// failing the node. Health probes are the exception: a node that does
    /// not answer its health check is the release's problem, judged against
    /// the health deadline.
    pub fn waits_out_outages(self) -> bool {
        matches!(
            self,
            StepKind::Drain
                | StepKind::CheckDrained
                | StepKind::Stage
                | StepKind::Switch
                | StepKind::Restart
                | StepKind::Enable
                | StepKind::PostCheck
        )
    }
}

/// One action decided by the core, with the reason a human reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub kind: StepKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The release the step acts on (stage/switch/health).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub reason: String,
    /// The `[[pre]]`/`[[post]]` task a `task` step runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskRef>,
}

/// Which task a `task` step runs: its phase, its place in the plan's list,
/// and its name (checked against the plan on resume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRef {
    pub phase: TaskPhase,
    pub index: usize,
    pub name: String,
}

impl TaskRef {
    /// `pre 2/3 "expand"`.
    pub fn label(&self, of: usize) -> String {
        format!(
            "{} {}/{of} \"{}\"",
            self.phase.as_str(),
            self.index + 1,
            self.name
        )
    }
}

/// What a driver reported for a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StepOutcome {
    pub ok: bool,
    pub detail: String,
    /// A number the step measured (active connections for `check_drained`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The failure was the infrastructure's (unreachable), not the release's.
    #[serde(default)]
    pub infra: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observations: Vec<Observation>,
    /// `check_peers`: the nodes that did not answer, with what was seen.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub down: BTreeMap<String, String>,
    /// A `capture` task: the value it recorded (bounded), which a later
    /// `compare` task checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured: Option<String>,
}

impl StepOutcome {
    pub fn ok(detail: impl Into<String>) -> Self {
        StepOutcome {
            ok: true,
            detail: detail.into(),
            ..Default::default()
        }
    }
    pub fn failed(detail: impl Into<String>) -> Self {
        StepOutcome {
            ok: false,
            detail: detail.into(),
            ..Default::default()
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every node runs the new release.
    Succeeded,
    /// The rollout failed (or an operator asked) and every changed node was restored.
    RolledBack,
    /// An operator stopped the run; no node is half-deployed or left drained.
    Aborted,
    /// Restoring some node failed: it is kept out of rotation and needs a human.
    RollbackFailed,
    /// A `pre` task failed: the run stopped before any node changed.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::RolledBack => "rolled_back",
            Outcome::Aborted => "aborted",
            Outcome::RollbackFailed => "rollback_failed",
            Outcome::Failed => "failed",
        }
    }
}

/// Why a run left the forward path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    Health,
    Sli,
    Step,
    Infra,
    Operator,
    /// A `post` task failed.
    Task,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub kind: CauseKind,
    pub node: Option<String>,
    pub reason: String,
}

/// Journaled facts. Applying them in order rebuilds a [`RunState`](super::RunState).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run began; `before` is each node's release at that moment (its
    /// last-known-good, the rollback target).
    Started {
        at: Millis,
        before: BTreeMap<String, Option<String>>,
    },
    /// The executor is about to carry out a step.
    Intent {
        at: Millis,
        step: Step,
    },
    /// The step finished.
    Outcome {
        at: Millis,
        step: Step,
        outcome: StepOutcome,
    },
    /// The process that ran the steps in flight died; they will be repeated.
    Interrupted {
        at: Millis,
        in_flight: Vec<Step>,
    },
    /// The SLI window ended with this verdict.
    WindowClosed {
        at: Millis,
        passed: bool,
        reason: String,
    },
    /// The next group (batch) starts.
    GroupStarted {
        at: Millis,
        group: usize,
        reason: String,
    },
    Promoted {
        at: Millis,
        reason: String,
    },
    AbortRequested {
        at: Millis,
        reason: String,
    },
    RollbackRequested {
        at: Millis,
        reason: String,
    },
    Finished {
        at: Millis,
        outcome: Outcome,
        reason: String,
    },
    /// Preflight gates and their verdicts (before any change).
    GatesChecked {
        at: Millis,
        results: Vec<GateRecord>,
    },
    /// The pre-flight snapshot a runbook asks for: node releases, config
    /// file hashes, and named env values (keyed fingerprints, or the value
    /// for the names the plan marks `env_clear`).
    Snapshot {
        at: Millis,
        versions: BTreeMap<String, Option<String>>,
        config_hashes: Vec<(String, String)>,
        env: Vec<(String, String)>,
    },
    /// An operator forced a failing gate: who, and why.
    GateForced {
        at: Millis,
        gate: String,
        reason: String,
        by: String,
    },
    /// An infrastructure outage outlasted the retry deadline: the run took
    /// no new step, the steps in flight finished, and the process stopped.
    /// The run is not finished: `resume` continues it.
    Suspended {
        at: Millis,
        reason: String,
    },
    /// The sha256 of each file the run's tasks will apply (migrations), as
    /// validated and linted when the run started: a file edited since is
    /// refused, even after a resume re-reads the plan.
    FilesPinned {
        at: Millis,
        files: BTreeMap<String, String>,
    },
    /// A person closed a `rollback_failed` run after fixing the node(s) it
    /// kept out of rotation (`glidepath resolve`): who, and what was done.
    /// Nothing else changes in the state: the run stays as it ended.
    Resolved {
        at: Millis,
        by: String,
        reason: String,
    },
    /// Who drives the run from where, journaled by each process that starts
    /// or resumes it (before anything else it journals): the operator, the
    /// host (as in leases), its pid and glidepath's version, and the
    /// rollout as the core sees it (`spec`: groups, window, checks and
    /// their limits), so that a report is a function of the journal alone.
    /// Nothing in the run's state depends on it.
    Origin {
        at: Millis,
        user: String,
        host: String,
        pid: u32,
        tool_version: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spec: Option<Box<RolloutSpec>>,
    },
}

/// One preflight gate's verdict, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    pub gate: String,
    pub verdict: String,
    pub reason: String,
}

impl Event {
    pub fn at(&self) -> Millis {
        match self {
            Event::Started { at, .. }
            | Event::Intent { at, .. }
            | Event::Outcome { at, .. }
            | Event::Interrupted { at, .. }
            | Event::WindowClosed { at, .. }
            | Event::GroupStarted { at, .. }
            | Event::Promoted { at, .. }
            | Event::AbortRequested { at, .. }
            | Event::RollbackRequested { at, .. }
            | Event::Finished { at, .. }
            | Event::GatesChecked { at, .. }
            | Event::Snapshot { at, .. }
            | Event::GateForced { at, .. }
            | Event::Suspended { at, .. }
            | Event::FilesPinned { at, .. }
            | Event::Resolved { at, .. } => *at,
            Event::Origin { at, .. } => *at,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Started { .. } => "started",
            Event::Intent { .. } => "intent",
            Event::Outcome { .. } => "outcome",
            Event::Interrupted { .. } => "interrupted",
            Event::WindowClosed { .. } => "window_closed",
            Event::GroupStarted { .. } => "group_started",
            Event::Promoted { .. } => "promoted",
            Event::AbortRequested { .. } => "abort_requested",
            Event::RollbackRequested { .. } => "rollback_requested",
            Event::Finished { .. } => "finished",
            Event::GatesChecked { .. } => "gates_checked",
            Event::Snapshot { .. } => "snapshot",
            Event::GateForced { .. } => "gate_forced",
            Event::Suspended { .. } => "suspended",
            Event::FilesPinned { .. } => "files_pinned",
            Event::Resolved { .. } => "resolved",
            Event::Origin { .. } => "origin",
        }
    }
}
