//! The `[[pre]]` and `[[post]]` tasks of a run: how far each phase got
//! ([`TaskProgress`]), and folding a task's intent, outcome, interruption
//! and acceptance into the [`RunState`].
//!
//! Tasks run one at a time, in order. A task that fails is tried again
//! after its delay until its attempts are spent; then a failed `pre` task
//! ends the run (no node has changed) and a failed `post` task rolls the
//! fleet back or holds for a person, as the plan says. A task that may
//! have run and cannot be undone is remembered: from then on the run never
//! rolls back on its own.

use super::event::{Cause, CauseKind, Step, StepOutcome, TaskRef};
use super::run::RunState;
use crate::spec::{Millis, PostFailurePolicy, RolloutSpec, TaskPhase};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How far the tasks got.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TaskProgress {
    /// `pre` tasks done, in order.
    pub pre_done: usize,
    /// `post` tasks done, in order.
    pub post_done: usize,
    /// Failed attempts of the next task.
    pub tries: u32,
    /// When its last attempt failed.
    pub last_failed: Option<Millis>,
    /// What its last attempt said.
    pub last_detail: String,
    /// The task in flight.
    pub in_flight: Option<TaskRef>,
    /// A task whose attempts are spent, with what it said last.
    pub failed: Option<(TaskRef, String)>,
    /// Values recorded by `capture` tasks, by task name.
    pub captured: BTreeMap<String, String>,
    /// Irreversible tasks that have (or may have) run: `name: note`.
    pub irreversible: Vec<String>,
    /// Tasks a person counted as done (a failure accepted, or a task a
    /// crash cut short that is not safe to repeat).
    pub accepted: Vec<String>,
    /// A person let the post tasks run though nodes that failed within
    /// `max_failed_nodes` do not run the new release.
    #[serde(default)]
    pub post_approved: bool,
    /// The next task could not reach what it needs (the database, the
    /// metrics server): not a verdict; retried with the plan's backoff
    /// until the retry deadline, then the run stops resumable.
    #[serde(default)]
    pub outage: Option<super::node::Outage>,
    /// The files the tasks apply, with their sha256 when the run started.
    #[serde(default)]
    pub pinned: BTreeMap<String, String>,
}

impl TaskProgress {
    /// Tasks of `phase` done so far.
    pub fn done(&self, phase: TaskPhase) -> usize {
        match phase {
            TaskPhase::Pre => self.pre_done,
            TaskPhase::Post => self.post_done,
        }
    }

    fn mark_done(&mut self, phase: TaskPhase) {
        match phase {
            TaskPhase::Pre => self.pre_done += 1,
            TaskPhase::Post => self.post_done += 1,
        }
        self.tries = 0;
        self.last_failed = None;
        self.last_detail.clear();
        self.failed = None;
    }
}

impl RunState {
    /// The irreversible tasks that have run, for messages: `"contract
    /// (drops column users.name)"`, joined.
    pub fn irreversible_list(&self) -> Option<String> {
        (!self.tasks.irreversible.is_empty()).then(|| self.tasks.irreversible.join("; "))
    }

    pub(super) fn task_intent(&mut self, spec: &RolloutSpec, task: &TaskRef) {
        self.tasks.in_flight = Some(task.clone());
        if let Some(note) = spec
            .tasks(task.phase)
            .get(task.index)
            .and_then(|t| t.irreversible.as_ref())
        {
            // It may run from now on: count it as run.
            let entry = format!("{} ({note})", task.name);
            if !self.tasks.irreversible.contains(&entry) {
                self.tasks.irreversible.push(entry);
            }
        }
    }

    pub(super) fn task_outcome(
        &mut self,
        spec: &RolloutSpec,
        at: Millis,
        step: &Step,
        outcome: &StepOutcome,
    ) {
        self.tasks.in_flight = None;
        let Some(task) = &step.task else { return };
        // an outcome for a task that is not the next one (a stale record) is ignored
        if task.index != self.tasks.done(task.phase) {
            return;
        }
        let Some(ts) = spec.tasks(task.phase).get(task.index) else {
            return;
        };
        if outcome.ok {
            if let Some(v) = &outcome.captured {
                self.tasks.captured.insert(task.name.clone(), v.clone());
            }
            self.tasks.outage = None;
            self.tasks.mark_done(task.phase);
            return;
        }
        if outcome.infra {
            let o = self.tasks.outage.get_or_insert(super::node::Outage {
                since: at,
                last: at,
                tries: 0,
                step: step.kind,
                reason: String::new(),
            });
            o.last = at;
            o.tries += 1;
            o.reason = outcome.detail.clone();
            return;
        }
        self.tasks.outage = None;
        self.tasks.tries += 1;
        self.tasks.last_failed = Some(at);
        self.tasks.last_detail = outcome.detail.clone();
        if self.tasks.tries < ts.attempts.max(1) {
            return;
        }
        let why = format!(
            "{} failed{}: {}",
            task.label(spec.tasks(task.phase).len()),
            if ts.attempts > 1 {
                format!(" {} times", self.tasks.tries)
            } else {
                String::new()
            },
            outcome.detail
        );
        self.tasks.failed = Some((task.clone(), why.clone()));
        if task.phase == TaskPhase::Post {
            self.post_task_failed(spec, why);
        }
        // a failed pre task: decide ends the run (no node changed)
    }

    /// A `post` task's attempts are spent: roll back, or hold.
    fn post_task_failed(&mut self, spec: &RolloutSpec, why: String) {
        if let Some(done) = self.irreversible_list() {
            self.held = Some(format!(
                "{why} — not rolling back on its own: {done} cannot be undone. `glidepath promote RUN` accepts and goes on; `glidepath rollback RUN --force --reason TEXT` restores every node's previous release anyway"
            ));
        } else if spec.on_post_failure == PostFailurePolicy::Hold {
            self.held = Some(format!(
                "{why} — on_post_failure = \"hold\": `glidepath promote RUN` accepts and goes on; `glidepath rollback RUN` restores every node's previous release"
            ));
        } else {
            self.begin_rollback(Cause {
                kind: CauseKind::Task,
                node: None,
                reason: why,
            });
        }
    }

    /// After a crash: a task that was in flight is repeated if it is safe
    /// to, else held for a person.
    pub(super) fn task_interrupted(&mut self, spec: &RolloutSpec) {
        // a new process gets a new retry budget
        self.tasks.outage = None;
        let Some(task) = self.tasks.in_flight.take() else {
            return;
        };
        let Some(ts) = spec.tasks(task.phase).get(task.index) else {
            return;
        };
        if !ts.idempotent && task.index == self.tasks.done(task.phase) {
            self.held = Some(format!(
                "{} was running when the process stopped, and it is not declared idempotent: check whether it completed; `glidepath promote RUN` counts it done, `glidepath abort RUN` stops here (mark it `idempotent = true` if it is safe to repeat)",
                task.label(spec.tasks(task.phase).len())
            ));
            self.tasks.failed = Some((task, "interrupted".into()));
        }
    }

    /// `promote` while a task holds the run: count it done.
    pub(super) fn task_accepted(&mut self) -> bool {
        let Some((task, why)) = self.tasks.failed.take() else {
            return false;
        };
        if task.index != self.tasks.done(task.phase) {
            return false;
        }
        self.tasks.accepted.push(format!("{} ({why})", task.name));
        self.tasks.mark_done(task.phase);
        true
    }
}
