//! The run as a whole: [`RunState`] (phase, group, nodes, SLI window,
//! passed windows, promotions, cause, suspension, peers found down), its
//! queries, and the run-level transitions every fold uses: begin a
//! rollback, begin an abort, act on a failed SLI window.

use super::event::{Cause, CauseKind, Outcome, StepKind};
use super::node::{abort_node, NodeState, NodeStatus, PeersCheck, Track};
use super::tasks::TaskProgress;
use crate::compare::CompareState;
use crate::sli::Judgement;
use crate::spec::{Millis, RolloutSpec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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
    /// The compare checks' evidence so far, one per check.
    #[serde(default)]
    pub compare: Vec<CompareState>,
    /// A fleet-wide incident since then: the window is paused.
    #[serde(default)]
    pub incident_since: Option<Millis>,
    /// What the incident looks like (both groups' values).
    #[serde(default)]
    pub incident_reason: String,
}

impl WindowState {
    /// When the window ends, counting pauses (an ongoing one up to `now`).
    pub fn end(&self, length_ms: u64, now: Millis) -> Millis {
        let outage = self.outage_since.map_or(0, |s| now.saturating_sub(s));
        let incident = self.incident_since.map_or(0, |s| now.saturating_sub(s));
        self.started + length_ms + self.paused_ms + outage.max(incident)
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
    /// The latest verdict of each SLI check, kept after the window closes:
    /// what `status` explains.
    #[serde(default)]
    pub sli: Vec<Judgement>,
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
    /// The `[[pre]]`/`[[post]]` tasks' progress.
    #[serde(default)]
    pub tasks: TaskProgress,
    /// A person resolved what the run left for them (`Event::Resolved`):
    /// who, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
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
            sli: Vec::new(),
            run_step_in_flight: None,
            suspended: None,
            down: BTreeMap::new(),
            peers: PeersCheck::default(),
            tasks: TaskProgress::default(),
            resolved: None,
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

    pub fn in_flight(&self) -> Vec<(String, StepKind)> {
        self.nodes
            .iter()
            .filter_map(|(n, s)| s.in_flight.map(|k| (n.clone(), k)))
            .collect()
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }

    /// The nodes that failed on the forward path within the failure budget
    /// (`max_failed_nodes`), in fleet order, with why.
    pub fn failed_forward<'a>(&'a self, spec: &'a RolloutSpec) -> Vec<(&'a String, &'a str)> {
        spec.nodes()
            .filter_map(|n| Some((n, self.nodes.get(n)?.failed_forward.as_deref()?)))
            .collect()
    }

    /// Whether every node of group `g` is done: updated, or failed within
    /// the budget and restored (or its restore failed).
    pub fn group_complete(&self, spec: &RolloutSpec, g: usize) -> bool {
        spec.groups.get(g).is_some_and(|group| {
            group.iter().all(|n| {
                self.nodes.get(n).is_some_and(|s| {
                    s.status == NodeStatus::Updated
                        || (s.failed_forward.is_some()
                            && s.track == Track::Idle
                            && s.in_flight.is_none())
                })
            })
        })
    }

    /// The nodes of groups `..=g` that run the new release (a node that
    /// failed within the budget runs the old one): what an SLI window
    /// after group `g` watches.
    pub fn upgraded<'a>(&'a self, spec: &'a RolloutSpec, g: usize) -> Vec<&'a String> {
        let g = g.min(spec.groups.len().saturating_sub(1));
        spec.groups[..(g + 1).min(spec.groups.len())]
            .iter()
            .flatten()
            .filter(|n| {
                self.nodes
                    .get(*n)
                    .is_none_or(|s| s.failed_forward.is_none())
            })
            .collect()
    }

    /// Nodes kept out of rotation because their restore failed.
    pub fn kept_out(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.status == NodeStatus::Failed && n.out_of_rotation)
            .count()
    }

    pub(super) fn begin_rollback(&mut self, cause: Cause) {
        let operator = cause.kind == CauseKind::Operator;
        if self.cause.is_none() || cause.kind == CauseKind::Operator {
            self.cause = Some(cause);
        }
        self.held = None;
        self.phase = Phase::RollingBack;
        for node in self.nodes.values_mut() {
            // a node whose restore failed on the forward path (within the
            // failure budget) stays kept out for a human, unless an
            // operator asks for the rollback
            if node.in_flight.is_none() && (operator || node.status != NodeStatus::Failed) {
                node.turn_back();
            }
        }
    }

    pub(super) fn begin_abort(&mut self, reason: String) {
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

    pub(super) fn sli_failed(&mut self, spec: &RolloutSpec, reason: String) {
        let auto = spec.window.as_ref().is_some_and(|w| w.rollback_on_breach);
        if auto {
            self.begin_rollback(Cause {
                kind: CauseKind::Sli,
                node: None,
                reason,
            });
        } else {
            self.held = Some(format!(
                "{reason} — automatic rollback is off for SLI breaches: `glidepath promote RUN` to accept, `glidepath rollback RUN` to restore, `glidepath abort RUN` to stop here"
            ));
        }
    }
}
