//! One node's part of a run: the [`Track`] (step sequence) it walks, its
//! [`NodeStatus`], its [`NodeState`] (position, in-flight step, drained,
//! switched, the release last seen, an [`Outage`] being waited out), and
//! the node-level transitions: starting a track, turning back, aborting,
//! advancing to the next step. Also [`PeersCheck`], the batch-boundary check
//! of the nodes that should be serving.

use super::event::StepKind;
use crate::spec::Millis;
use serde::{Deserialize, Serialize};

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
    /// Why it failed on the forward path, when the failure budget
    /// (`max_failed_nodes`) let the run go on without it: it is restored to
    /// its last-known-good release on its own, never tried again, and
    /// neither watched nor part of the baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_forward: Option<String>,
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
    pub(super) fn new(before: Option<String>) -> Self {
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
            failed_forward: None,
        }
    }

    /// The next step of its track, if any.
    pub fn next_step(&self) -> Option<StepKind> {
        self.track.steps().get(self.pos).copied()
    }

    pub(super) fn start(&mut self, track: Track) {
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

    /// Leave the forward path: restore whatever was changed. A node already
    /// being restored (a failure within the budget) keeps its place.
    pub(super) fn turn_back(&mut self) {
        if matches!(self.track, Track::Back | Track::Restore) {
            return;
        }
        if self.switched || self.status == NodeStatus::Failed {
            self.start(Track::Back);
        } else if self.out_of_rotation {
            self.start(Track::Restore);
        } else if self.track == Track::Forward {
            self.start(Track::Idle);
        }
    }
}

pub(super) fn abort_node(node: &mut NodeState) {
    match node.track {
        Track::Forward if node.healthy_new => {} // finish: only enable + post-check remain
        Track::Forward => node.turn_back(),
        _ => {}
    }
}

pub(super) fn advance(node: &mut NodeState) {
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
