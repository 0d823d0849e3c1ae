//! Folding journaled events into a [`RunState`]: [`RunState::replay`] and
//! [`RunState::apply`], one arm per [`Event`] (a step's intent, an
//! interruption after a crash, window verdicts, groups, operator requests,
//! the end). A step's outcome is folded in `outcome.rs`.

use super::event::{Cause, CauseKind, Event, StepKind};
use super::node::{abort_node, Track};
use super::run::{Phase, RunState};
use crate::spec::RolloutSpec;

impl RunState {
    /// Rebuild a state from journaled events.
    pub fn replay<'a>(spec: &RolloutSpec, events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut s = RunState::new(spec);
        for e in events {
            s.apply(spec, e);
        }
        s
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
                if let Some(task) = &step.task {
                    self.task_intent(spec, task);
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
                self.task_interrupted(spec);
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
                if crate::decide::post_tasks_held(spec, self).is_some() {
                    // the post tasks may run though some nodes failed
                    self.tasks.post_approved = true;
                    return;
                }
                if self.held.is_some() && self.task_accepted() {
                    // a person accepted a task's failure (or an interrupted
                    // task): nothing else is promoted
                    self.held = None;
                    return;
                }
                if let Some(_reason) = self.held.take() {
                    // Accepting a held SLI breach counts as passing the window.
                    self.windows_passed.insert(self.group);
                    self.window = None;
                } else if spec.is_last_batch(self.group) && self.window.is_some() {
                    // `promote` ends the watch after the last batch early
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
            Event::Resolved { by, reason, .. } => self.resolved = Some(format!("{by}: {reason}")),
            Event::Origin { .. } => {}
            Event::Suspended { reason, .. } => self.suspended = Some(reason.clone()),
            Event::FilesPinned { files, .. } => self.tasks.pinned = files.clone(),
            Event::Finished {
                outcome, reason, ..
            } => {
                self.phase = Phase::Finished(*outcome);
                self.finished_reason = Some(reason.clone());
            }
        }
    }
}
