//! The state of a run and the events that change it. The journal stores
//! [`Event`]s; folding them with [`RunState::apply`] rebuilds the state
//! exactly, which is how `resume` works after a crash.

use crate::sli::{fails_now, judge, Judgement, Observation};
use crate::spec::{DrainTimeoutPolicy, Millis, RolloutSpec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::RolledBack => "rolled_back",
            Outcome::Aborted => "aborted",
            Outcome::RollbackFailed => "rollback_failed",
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub kind: CauseKind,
    pub node: Option<String>,
    pub reason: String,
}

/// Journaled facts. Applying them in order rebuilds a [`RunState`].
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
            | Event::Suspended { at, .. } => *at,
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
        }
    }
}

/// Which sequence of steps a node is walking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Track {
    Idle,
    /// Deploy the new release.
    Forward,
    /// Restore the last-known-good release.
    Back,
    /// Only put the node back into rotation (it was drained, never switched).
    Restore,
}

impl Track {
    pub fn steps(self) -> &'static [StepKind] {
        use StepKind::*;
        match self {
            Track::Idle => &[],
            Track::Forward => &[
                Drain,
                CheckDrained,
                Stage,
                Switch,
                Restart,
                CheckHealth,
                Enable,
                PostCheck,
            ],
            Track::Back => &[
                Drain,
                CheckDrained,
                Stage,
                Switch,
                Restart,
                CheckHealth,
                Enable,
                PostCheck,
            ],
            Track::Restore => &[Enable, PostCheck],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Untouched,
    InProgress,
    Updated,
    RolledBack,
    /// Drained and put back without a release change.
    Restored,
    /// Restoring it failed; kept out of rotation.
    Failed,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Untouched => "untouched",
            NodeStatus::InProgress => "in_progress",
            NodeStatus::Updated => "updated",
            NodeStatus::RolledBack => "rolled_back",
            NodeStatus::Restored => "restored",
            NodeStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// Release at the start of the run: the rollback target.
    pub before: Option<String>,
    pub track: Track,
    /// Index of the next step in `track.steps()`.
    pub pos: usize,
    pub status: NodeStatus,
    pub in_flight: Option<StepKind>,
    /// When the current polling step (check_drained, check_health) began.
    pub step_since: Option<Millis>,
    /// When the current polling step was last tried.
    pub last_try: Option<Millis>,
    /// `current` points at the new release.
    pub switched: bool,
    /// We drained it and have not re-enabled it yet.
    pub out_of_rotation: bool,
    /// It passed its health check on the new release.
    pub healthy_new: bool,
    pub last_detail: String,
    /// The infrastructure did not answer this node's current step: it is
    /// retried with backoff until the retry deadline.
    #[serde(default)]
    pub outage: Option<Outage>,
    /// The release the node was last observed serving (at preflight, or a
    /// passing health check, post-check or peers check), as opposed to the
    /// journaled intent.
    #[serde(default)]
    pub seen: Option<String>,
}

/// An infrastructure outage seen by one node's step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    /// First failed attempt.
    pub since: Millis,
    /// Last failed attempt.
    pub last: Millis,
    pub tries: u32,
    pub step: StepKind,
    pub reason: String,
}

/// The batch-boundary check of the nodes that should be serving.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PeersCheck {
    /// The group after which the check passed.
    pub passed: Option<usize>,
    /// Too many nodes found down since then (first such check).
    pub blocked_since: Option<Millis>,
    pub last: Option<Millis>,
    pub tries: u32,
}

impl NodeState {
    fn new(before: Option<String>) -> Self {
        NodeState {
            before,
            track: Track::Idle,
            pos: 0,
            status: NodeStatus::Untouched,
            in_flight: None,
            step_since: None,
            last_try: None,
            switched: false,
            out_of_rotation: false,
            healthy_new: false,
            last_detail: String::new(),
            outage: None,
            seen: None,
        }
    }

    /// The next step of its track, if any.
    pub fn next_step(&self) -> Option<StepKind> {
        self.track.steps().get(self.pos).copied()
    }

    fn start(&mut self, track: Track) {
        self.track = track;
        self.pos = 0;
        self.step_since = None;
        self.last_try = None;
        self.outage = None;
        if track == Track::Idle {
            if self.status == NodeStatus::InProgress {
                self.status = NodeStatus::Untouched;
            }
        } else {
            self.status = NodeStatus::InProgress;
        }
    }

    /// Leave the forward path: restore whatever was changed.
    fn turn_back(&mut self) {
        if self.switched || self.status == NodeStatus::Failed {
            self.start(Track::Back);
        } else if self.out_of_rotation {
            self.start(Track::Restore);
        } else if self.track == Track::Forward {
            self.start(Track::Idle);
        }
    }
}

/// The SLI window in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    pub started: Millis,
    pub last_probe: Option<Millis>,
    pub probes: u32,
    pub latest: Vec<Judgement>,
    /// The metrics source has failed since then: the window is paused.
    #[serde(default)]
    pub outage_since: Option<Millis>,
    /// What the last failure said.
    #[serde(default)]
    pub outage_reason: String,
    /// Time spent paused, added to the window's end.
    #[serde(default)]
    pub paused_ms: u64,
    /// Times the window started over after a metrics outage.
    #[serde(default)]
    pub restarts: u32,
}

impl WindowState {
    /// When the window ends, counting pauses (an ongoing one up to `now`).
    pub fn end(&self, length_ms: u64, now: Millis) -> Millis {
        let ongoing = self.outage_since.map_or(0, |s| now.saturating_sub(s));
        self.started + length_ms + self.paused_ms + ongoing
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Rolling,
    RollingBack,
    Aborting,
    Finished(Outcome),
}

/// Everything the core knows about a run, rebuilt from the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub phase: Phase,
    /// Index of the group being rolled out.
    pub group: usize,
    pub nodes: BTreeMap<String, NodeState>,
    pub window: Option<WindowState>,
    pub windows_passed: BTreeSet<usize>,
    pub promoted: BTreeSet<usize>,
    /// Set when the run waits for an operator (e.g. an SLI breach with
    /// automatic rollback off); `promote` clears it.
    pub held: Option<String>,
    pub cause: Option<Cause>,
    pub started_at: Option<Millis>,
    pub finished_reason: Option<String>,
    /// The last attempt to start the SLI window failed (when, why).
    #[serde(default)]
    pub window_start_failed: Option<(Millis, String)>,
    /// A run-level step (start_window, probe, check_peers) in flight.
    #[serde(default)]
    pub run_step_in_flight: Option<StepKind>,
    /// Set by `Event::Suspended`; cleared when the run is resumed.
    #[serde(default)]
    pub suspended: Option<String>,
    /// Nodes the last peers check found down, with what was seen. They
    /// count against `max_unavailable`.
    #[serde(default)]
    pub down: BTreeMap<String, String>,
    #[serde(default)]
    pub peers: PeersCheck,
}

impl RunState {
    pub fn new(spec: &RolloutSpec) -> Self {
        RunState {
            phase: Phase::Rolling,
            group: 0,
            nodes: spec
                .nodes()
                .map(|n| (n.clone(), NodeState::new(None)))
                .collect(),
            window: None,
            windows_passed: BTreeSet::new(),
            promoted: BTreeSet::new(),
            held: None,
            cause: None,
            started_at: None,
            finished_reason: None,
            window_start_failed: None,
            run_step_in_flight: None,
            suspended: None,
            down: BTreeMap::new(),
            peers: PeersCheck::default(),
        }
    }

    /// The release a node that is not being worked on should be serving:
    /// the new one once updated, else the one it had (unknown if failed).
    pub fn expected_version(&self, spec: &RolloutSpec, node: &str) -> Option<String> {
        let n = self.nodes.get(node)?;
        match n.status {
            NodeStatus::Updated => Some(spec.version.clone()),
            NodeStatus::Failed => None,
            _ if n.switched => Some(spec.version.clone()),
            _ => n.before.clone(),
        }
    }

    /// The nodes a peers check probes: idle, in rotation, not failed; with
    /// the release each should serve.
    pub fn peers_to_check(&self, spec: &RolloutSpec) -> Vec<(String, Option<String>)> {
        self.nodes
            .iter()
            .filter(|(_, n)| {
                n.track == Track::Idle
                    && n.in_flight.is_none()
                    && !n.out_of_rotation
                    && n.status != NodeStatus::Failed
            })
            .map(|(name, _)| (name.clone(), self.expected_version(spec, name)))
            .collect()
    }

    /// Rebuild a state from journaled events.
    pub fn replay<'a>(spec: &RolloutSpec, events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut s = RunState::new(spec);
        for e in events {
            s.apply(spec, e);
        }
        s
    }

    pub fn in_flight(&self) -> Vec<(String, StepKind)> {
        self.nodes
            .iter()
            .filter_map(|(n, s)| s.in_flight.map(|k| (n.clone(), k)))
            .collect()
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }

    fn begin_rollback(&mut self, cause: Cause) {
        if self.cause.is_none() || cause.kind == CauseKind::Operator {
            self.cause = Some(cause);
        }
        self.held = None;
        self.phase = Phase::RollingBack;
        for node in self.nodes.values_mut() {
            if node.in_flight.is_none() {
                node.turn_back();
            }
        }
    }

    fn begin_abort(&mut self, reason: String) {
        self.cause = Some(Cause {
            kind: CauseKind::Operator,
            node: None,
            reason,
        });
        self.held = None;
        self.phase = Phase::Aborting;
        for node in self.nodes.values_mut() {
            if node.in_flight.is_none() {
                abort_node(node);
            }
        }
    }

    /// Fold one event into the state. Pure: `at` comes from the event.
    pub fn apply(&mut self, spec: &RolloutSpec, event: &Event) {
        match event {
            Event::Started { at, before } => {
                self.started_at = Some(*at);
                for (n, v) in before {
                    if let Some(node) = self.nodes.get_mut(n) {
                        node.before = v.clone();
                        node.seen = v.clone();
                    }
                }
            }
            Event::Intent { at, step } => {
                if step.node.is_none() {
                    self.run_step_in_flight = Some(step.kind);
                }
                if let Some(node) = step.node.as_ref().and_then(|n| self.nodes.get_mut(n)) {
                    node.in_flight = Some(step.kind);
                    if node.pos == 0 && node.track == Track::Idle && step.kind == StepKind::Drain {
                        node.start(Track::Forward);
                    }
                    if matches!(
                        step.kind,
                        StepKind::CheckDrained | StepKind::CheckHealth | StepKind::PostCheck
                    ) {
                        node.step_since.get_or_insert(*at);
                        node.last_try = Some(*at);
                    }
                }
            }
            Event::Outcome { at, step, outcome } => self.apply_outcome(spec, *at, step, outcome),
            Event::Interrupted { in_flight, .. } => {
                // A step in flight may or may not have happened: assume the
                // side effect did (restoring is idempotent, skipping it is not).
                for step in in_flight {
                    if let Some(node) = step.node.as_ref().and_then(|n| self.nodes.get_mut(n)) {
                        match step.kind {
                            StepKind::Drain => node.out_of_rotation = true,
                            StepKind::Switch if node.track == Track::Forward => {
                                node.switched = true
                            }
                            _ => {}
                        }
                    }
                }
                // A new process gets a new retry budget.
                self.suspended = None;
                self.peers.blocked_since = None;
                self.peers.last = None;
                self.peers.tries = 0;
                for node in self.nodes.values_mut() {
                    node.in_flight = None;
                    // Drained but not yet switched: the drain is repeated
                    // (idempotent), because a process whose journal failed
                    // puts such nodes back into rotation without a record.
                    if node.out_of_rotation
                        && !node.switched
                        && matches!(node.track, Track::Forward | Track::Back)
                        && node.pos > 0
                        && node.track.steps()[..node.pos]
                            .iter()
                            .all(|k| !matches!(k, StepKind::Switch | StepKind::Restart))
                    {
                        node.pos = 0;
                    }
                    // A polling step restarts its clock after a crash.
                    node.step_since = None;
                    node.last_try = None;
                    node.outage = None;
                    // Nodes caught on the forward path by a rollback or abort
                    // whose outcome never arrived turn back now; nodes already
                    // restoring keep their place.
                    match self.phase {
                        Phase::RollingBack if node.track == Track::Forward => node.turn_back(),
                        Phase::Aborting if node.track == Track::Forward => abort_node(node),
                        _ => {}
                    }
                }
                // Observations from before the crash are not kept: watch again.
                self.window = None;
                self.run_step_in_flight = None;
            }
            Event::WindowClosed { passed, reason, .. } => {
                self.window = None;
                if *passed {
                    self.windows_passed.insert(self.group);
                } else {
                    self.sli_failed(spec, reason.clone());
                }
            }
            Event::GroupStarted { group, .. } => {
                self.group = *group;
            }
            Event::Promoted { .. } => {
                if let Some(_reason) = self.held.take() {
                    // Accepting a held SLI breach counts as passing the window.
                    self.windows_passed.insert(self.group);
                    self.window = None;
                }
                self.promoted.insert(self.group);
            }
            Event::AbortRequested { reason, .. } => {
                if matches!(self.phase, Phase::Rolling) {
                    self.begin_abort(reason.clone());
                }
            }
            Event::RollbackRequested { reason, .. } => {
                if self.phase != Phase::RollingBack {
                    self.begin_rollback(Cause {
                        kind: CauseKind::Operator,
                        node: None,
                        reason: reason.clone(),
                    });
                }
            }
            Event::GatesChecked { .. } | Event::GateForced { .. } | Event::Snapshot { .. } => {}
            Event::Suspended { reason, .. } => self.suspended = Some(reason.clone()),
            Event::Finished {
                outcome, reason, ..
            } => {
                self.phase = Phase::Finished(*outcome);
                self.finished_reason = Some(reason.clone());
            }
        }
    }

    fn sli_failed(&mut self, spec: &RolloutSpec, reason: String) {
        let auto = spec.window.as_ref().is_some_and(|w| w.rollback_on_breach);
        if auto {
            self.begin_rollback(Cause {
                kind: CauseKind::Sli,
                node: None,
                reason,
            });
        } else {
            self.held = Some(format!(
                "{reason} — automatic rollback is off for SLI breaches: `glidepath promote` to accept, `glidepath rollback` to restore"
            ));
        }
    }

    fn apply_outcome(
        &mut self,
        spec: &RolloutSpec,
        at: Millis,
        step: &Step,
        outcome: &StepOutcome,
    ) {
        if step.node.is_none() {
            self.run_step_in_flight = None;
        }
        match step.kind {
            StepKind::StartWindow => {
                if outcome.ok {
                    self.window = Some(WindowState {
                        started: at,
                        last_probe: None,
                        probes: 0,
                        latest: Vec::new(),
                        outage_since: None,
                        outage_reason: String::new(),
                        paused_ms: 0,
                        restarts: 0,
                    });
                    self.window_start_failed = None;
                } else {
                    self.window_start_failed = Some((at, outcome.detail.clone()));
                }
                return;
            }
            StepKind::CheckPeers => {
                let probed: Vec<(String, Option<String>)> = self.peers_to_check(spec);
                self.down = outcome.down.clone();
                for (name, v) in probed {
                    if !self.down.contains_key(&name) && v.is_some() {
                        if let Some(n) = self.nodes.get_mut(&name) {
                            n.seen = v;
                        }
                    }
                }
                let last_group = self.group + 1 >= spec.groups.len();
                // Going on drains at least one more node, unless this was the last group.
                let room = if last_group {
                    spec.max_unavailable
                } else {
                    spec.max_unavailable.saturating_sub(1)
                };
                if self.down.len() <= room {
                    self.peers = PeersCheck {
                        passed: Some(self.group),
                        ..PeersCheck::default()
                    };
                } else {
                    self.peers.blocked_since.get_or_insert(at);
                    self.peers.last = Some(at);
                    self.peers.tries += 1;
                }
                return;
            }
            StepKind::Probe => {
                let Some(wspec) = spec.window.as_ref() else {
                    return;
                };
                let Some(w) = self.window.as_mut() else {
                    return;
                };
                w.last_probe = Some(at);
                w.probes += 1;
                // only an unreachable source is an outage; a refused query
                // is judged (inconclusive, with the source's reason)
                let errors: Vec<String> = outcome
                    .observations
                    .iter()
                    .filter(|o| o.is_outage())
                    .filter_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.check)))
                    .collect();
                if !errors.is_empty() {
                    if wspec.pause_on_metrics_error {
                        w.outage_since.get_or_insert(at);
                        w.outage_reason = errors.join("; ");
                    } else if self.phase == Phase::Rolling {
                        let reason = format!(
                            "metrics source failed during the SLI window: {}",
                            errors.join("; ")
                        );
                        self.begin_rollback(Cause {
                            kind: CauseKind::Infra,
                            node: None,
                            reason,
                        });
                    }
                    return;
                }
                if w.outage_since.take().is_some() {
                    // Observation was interrupted: a pass needs a full window
                    // watched after the metrics source came back.
                    w.started = at;
                    w.paused_ms = 0;
                    w.latest.clear();
                    w.outage_reason.clear();
                    w.restarts += 1;
                }
                let mut failed = Vec::new();
                for check in &wspec.checks {
                    if let Some(obs) = outcome.observations.iter().find(|o| o.check == check.name) {
                        let j = judge(check, obs);
                        if fails_now(check, &j) {
                            failed.push(j.reason.clone());
                        }
                        w.latest.retain(|x| x.check != check.name);
                        w.latest.push(j);
                    }
                }
                if !failed.is_empty() && self.phase == Phase::Rolling && self.held.is_none() {
                    let secs = (at.saturating_sub(w.started)) as f64 / 1000.0;
                    let reason = format!(
                        "SLI breach {secs:.1}s into the window (probe {}): {}",
                        w.probes,
                        failed.join("; ")
                    );
                    self.sli_failed(spec, reason);
                }
                return;
            }
            _ => {}
        }
        let phase = self.phase;
        let Some(name) = step.node.clone() else {
            return;
        };
        let Some(node) = self.nodes.get_mut(&name) else {
            return;
        };
        node.in_flight = None;
        node.last_detail = outcome.detail.clone();
        if !outcome.ok && outcome.infra && step.kind.waits_out_outages() {
            // Not a verdict on the release: wait it out (decide retries
            // with backoff and stops the run at the retry deadline).
            let o = node.outage.get_or_insert(Outage {
                since: at,
                last: at,
                tries: 0,
                step: step.kind,
                reason: String::new(),
            });
            o.last = at;
            o.tries += 1;
            o.step = step.kind;
            o.reason = outcome.detail.clone();
            node.last_detail = format!(
                "infrastructure unreachable ({} failed attempt(s)): {}",
                o.tries, outcome.detail
            );
            match self.phase {
                Phase::RollingBack if node.track == Track::Forward => node.turn_back(),
                Phase::Aborting if node.track == Track::Forward => abort_node(node),
                _ => {}
            }
            return;
        }
        if let Some(o) = node.outage.take() {
            // Time spent waiting out the outage is added to a polling step's
            // deadline (it still advances: the deadline is reached even if
            // faults and failures alternate).
            if let Some(since) = node.step_since.as_mut() {
                *since = (*since + at.saturating_sub(o.since)).min(at);
            }
        }
        if outcome.ok && matches!(step.kind, StepKind::CheckHealth | StepKind::PostCheck) {
            if let Some(v) = &step.version {
                node.seen = Some(v.clone());
            }
        }
        let track = node.track;
        let mut node_failure: Option<(CauseKind, String)> = None;
        match step.kind {
            StepKind::CheckDrained => {
                let active = outcome.value.unwrap_or(f64::NAN);
                let since = node.step_since.unwrap_or(at);
                let waited = at.saturating_sub(since);
                if outcome.ok && active == 0.0 {
                    advance(node);
                } else if waited >= spec.drain_timeout_ms {
                    match spec.on_drain_timeout {
                        DrainTimeoutPolicy::Proceed if outcome.ok => {
                            node.last_detail = format!(
                                "drain timeout ({}s) with {active} active connections: proceeding (on_drain_timeout = \"proceed\")",
                                spec.drain_timeout_ms / 1000
                            );
                            advance(node);
                        }
                        _ => {
                            node_failure = Some((
                                if outcome.infra {
                                    CauseKind::Infra
                                } else {
                                    CauseKind::Step
                                },
                                format!(
                                    "{name} not drained after {:.1}s: {}",
                                    waited as f64 / 1000.0,
                                    outcome.detail
                                ),
                            ))
                        }
                    }
                }
            }
            StepKind::CheckHealth => {
                let since = node.step_since.unwrap_or(at);
                let waited = at.saturating_sub(since);
                if outcome.ok {
                    if track == Track::Forward {
                        node.healthy_new = true;
                    }
                    advance(node);
                } else if waited >= spec.health_deadline_ms {
                    node_failure = Some((
                        CauseKind::Health,
                        format!(
                            "{name} not healthy within the {:.1}s deadline: {}",
                            spec.health_deadline_ms as f64 / 1000.0,
                            outcome.detail
                        ),
                    ));
                }
            }
            StepKind::PostCheck => {
                let since = node.step_since.unwrap_or(at);
                let waited = at.saturating_sub(since);
                if outcome.ok {
                    advance(node);
                } else if waited >= spec.health_deadline_ms {
                    node_failure = Some((
                        if outcome.infra { CauseKind::Infra } else { CauseKind::Health },
                        format!(
                            "{name} not serving through the balancer within the {:.1}s deadline: {}",
                            spec.health_deadline_ms as f64 / 1000.0,
                            outcome.detail
                        ),
                    ));
                }
            }
            kind => {
                if outcome.ok {
                    match kind {
                        StepKind::Drain => node.out_of_rotation = true,
                        StepKind::Switch => node.switched = track == Track::Forward,
                        StepKind::Enable => node.out_of_rotation = false,
                        _ => {}
                    }
                    advance(node);
                } else {
                    node_failure = Some((
                        if outcome.infra {
                            CauseKind::Infra
                        } else {
                            CauseKind::Step
                        },
                        format!("{name}: {} failed: {}", kind.as_str(), outcome.detail),
                    ));
                }
            }
        }
        if let Some((kind, reason)) = node_failure {
            match track {
                Track::Forward => {
                    // The node itself goes back first; the run follows.
                    if phase == Phase::Rolling {
                        self.begin_rollback(Cause {
                            kind,
                            node: Some(name.clone()),
                            reason,
                        });
                    }
                    let node = self.nodes.get_mut(&name).expect("node exists");
                    node.turn_back();
                }
                _ => {
                    node.status = NodeStatus::Failed;
                    node.track = Track::Idle;
                    node.pos = 0;
                    node.last_detail = reason;
                }
            }
            return;
        }
        // The run left the forward path while this step was in flight.
        let node = self.nodes.get_mut(&name).expect("node exists");
        match self.phase {
            Phase::RollingBack if node.track == Track::Forward => node.turn_back(),
            Phase::Aborting if node.track == Track::Forward => abort_node(node),
            _ => {}
        }
    }
}

fn abort_node(node: &mut NodeState) {
    match node.track {
        Track::Forward if node.healthy_new => {} // finish: only enable + post-check remain
        Track::Forward => node.turn_back(),
        _ => {}
    }
}

fn advance(node: &mut NodeState) {
    node.pos += 1;
    node.step_since = None;
    node.last_try = None;
    if node.pos >= node.track.steps().len() {
        node.status = match node.track {
            Track::Forward => NodeStatus::Updated,
            Track::Back => NodeStatus::RolledBack,
            Track::Restore => NodeStatus::Restored,
            Track::Idle => node.status,
        };
        if node.track == Track::Back {
            node.switched = false;
            node.healthy_new = false;
        }
        node.track = Track::Idle;
        node.pos = 0;
    }
}
