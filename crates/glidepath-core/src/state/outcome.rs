//! Folding one step's outcome into a [`RunState`]: run-level steps (start
//! the SLI window, probe it, check the peers) and node steps (advance, poll
//! until the drain or health deadline, wait out an infrastructure outage,
//! or fail the node: a forward node turns the run back, a restoring node is
//! marked `Failed`).

use super::event::{Cause, CauseKind, Step, StepKind, StepOutcome};
use super::node::{abort_node, advance, NodeStatus, Outage, PeersCheck, Track};
use super::run::{Phase, RunState, WindowState};
use crate::compare::{judge_probe, CompareState};
use crate::sli::fails_now;
use crate::spec::{DrainTimeoutPolicy, IncidentPolicy, Millis, RolloutSpec};

impl RunState {
    /// Whether the failure budget lets the run go on past `node`'s failure
    /// on the forward path: a batch node (a canary's failure always rolls
    /// back: the canary is the experiment), and room left in the budget.
    fn within_budget(&self, spec: &RolloutSpec, node: &str) -> bool {
        spec.group_of(node).is_some_and(|g| g > 0)
            && self.failed_forward(spec).len() < spec.max_failed_nodes
    }

    /// The reason a failure rolls the run back, naming the nodes that
    /// failed before it within the budget.
    fn past_budget(&self, spec: &RolloutSpec, node: &str, reason: String) -> String {
        if spec.max_failed_nodes == 0 {
            return reason;
        }
        if spec.group_of(node) == Some(0) {
            return format!(
                "{reason} (a canary failure rolls back whatever max_failed_nodes = {} allows)",
                spec.max_failed_nodes
            );
        }
        let before = self.failed_forward(spec);
        let list: Vec<String> = before
            .iter()
            .map(|(n, why)| format!("{n} ({why})"))
            .collect();
        format!(
            "{reason}; max_failed_nodes = {} is spent, {} node(s) failed before: {}",
            spec.max_failed_nodes,
            before.len(),
            list.join("; ")
        )
    }

    pub(super) fn apply_outcome(
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
            StepKind::Task => {
                self.task_outcome(spec, at, step, outcome);
                return;
            }
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
                        compare: spec
                            .window
                            .iter()
                            .flat_map(|w| &w.checks)
                            .filter_map(|c| {
                                let st = CompareState::new(c, c.compare.as_ref()?);
                                // after a batch, the upgraded nodes share the traffic
                                // (nodes failed within the budget take no part)
                                Some(if self.group == 0 {
                                    st
                                } else {
                                    let failed = self.failed_forward(spec).len();
                                    let all: usize = spec.groups.iter().map(|g| g.len()).sum();
                                    let up = self.upgraded(spec, self.group).len();
                                    st.with_share(
                                        up as f64 / all.saturating_sub(failed).max(1) as f64,
                                    )
                                })
                            })
                            .collect(),
                        incident_since: None,
                        incident_reason: String::new(),
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
                // a node kept out after a failed restore is out too
                if self.down.len() + self.kept_out() <= room {
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
                let mut incidents = Vec::new();
                for check in &wspec.checks {
                    if let Some(obs) = outcome.observations.iter().find(|o| o.check == check.name) {
                        let cmp = w.compare.iter_mut().find(|c| c.check == check.name);
                        let j = judge_probe(check, obs, cmp);
                        if fails_now(check, &j) {
                            failed.push(j.reason.clone());
                        }
                        if j.incident && !check.shadow {
                            incidents.push(check.name.clone());
                        }
                        w.latest.retain(|x| x.check != check.name);
                        w.latest.push(j);
                    }
                }
                self.sli = w.latest.clone();
                if failed.is_empty() && !incidents.is_empty() {
                    match wspec.on_incident {
                        IncidentPolicy::Pause => {
                            w.incident_since.get_or_insert(at);
                            // stable while it lasts (the figures are in
                            // each check's verdict)
                            w.incident_reason = format!(
                                "a fleet-wide incident: {} past the limit on the canary and its baseline alike",
                                incidents.join(", ")
                            );
                        }
                        IncidentPolicy::Rollback if self.phase == Phase::Rolling => {
                            let figures: Vec<String> = w
                                .latest
                                .iter()
                                .filter(|j| j.incident)
                                .map(|j| j.reason.clone())
                                .collect();
                            let reason = format!(
                                "SLI window: {} (the plan says on_incident = \"rollback\")",
                                figures.join("; ")
                            );
                            self.begin_rollback(Cause {
                                kind: CauseKind::Sli,
                                node: None,
                                reason,
                            });
                            return;
                        }
                        IncidentPolicy::Rollback => {}
                    }
                } else if let Some(since) = w.incident_since.take() {
                    // the fleet recovered: the window's end moves by the pause
                    w.paused_ms += at.saturating_sub(since);
                    w.incident_reason.clear();
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
                    if phase == Phase::Rolling {
                        if self.within_budget(spec, &name) {
                            // The failure budget lets the run go on: this
                            // node alone goes back, and is reported.
                            let node = self.nodes.get_mut(&name).expect("node exists");
                            node.failed_forward = Some(reason.clone());
                            node.last_detail = reason;
                            node.turn_back();
                            return;
                        }
                        // The node itself goes back first; the run follows.
                        let reason = self.past_budget(spec, &name, reason);
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
                    let budgeted = node.failed_forward.is_some();
                    node.status = NodeStatus::Failed;
                    node.track = Track::Idle;
                    node.pos = 0;
                    node.last_detail = reason.clone();
                    // A node kept out on the forward path takes a place
                    // under max_unavailable: with none left, the run cannot
                    // go on.
                    let limit = spec.max_unavailable.max(1);
                    if budgeted && phase == Phase::Rolling && self.kept_out() >= limit {
                        let reason = format!(
                            "{reason}; {name} failed within max_failed_nodes = {} and is kept out of rotation, which leaves no room under max_unavailable = {limit} to go on",
                            spec.max_failed_nodes
                        );
                        self.begin_rollback(Cause {
                            kind,
                            node: Some(name.clone()),
                            reason,
                        });
                    }
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
