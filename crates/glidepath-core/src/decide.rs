//! The decision function: given the spec, the state and `now`, what happens
//! next and why. It never performs the steps; the executor does, journaling
//! an intent before and an outcome after each one.

use crate::sli::close_window;
use crate::spec::{Millis, RolloutSpec, TaskPhase};
use crate::state::{Event, NodeStatus, Outcome, Phase, RunState, Step, StepKind, TaskRef, Track};

/// What the executor should do now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    /// Steps to start now (they may run concurrently: at most one per node).
    pub steps: Vec<Step>,
    /// A transition to journal and apply right away (no driver involved).
    pub transition: Option<Event>,
    /// Nothing to start before this time (unless an outcome arrives first).
    pub wake_at: Option<Millis>,
    /// Why the run is waiting (on a person, or on the infrastructure).
    pub waiting: Option<String>,
    /// What it waits on, when it waits (`waiting` is set).
    pub waits_on: Option<WaitsOn>,
}

/// What a waiting run waits on: a person (a pause point, a held breach or
/// task, post tasks held for a promote) or the infrastructure (an outage,
/// a fleet-wide incident, nodes found down), which it waits out by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitsOn {
    Person,
    Infrastructure,
}

impl WaitsOn {
    /// The run's status while it waits: `paused` (for a person) or
    /// `waiting` (on the infrastructure).
    pub fn status(self) -> &'static str {
        match self {
            WaitsOn::Person => "paused",
            WaitsOn::Infrastructure => "waiting",
        }
    }
}

impl Decision {
    fn wait_until(&mut self, t: Millis) {
        self.wake_at = Some(self.wake_at.map_or(t, |w| w.min(t)));
    }

    /// The run waits on a person.
    fn for_person(&mut self, why: String) {
        self.waiting = Some(why);
        self.waits_on = Some(WaitsOn::Person);
    }

    /// The run waits on the infrastructure.
    fn for_infra(&mut self, why: String) {
        self.waiting = Some(why);
        self.waits_on = Some(WaitsOn::Infrastructure);
    }
}

fn step(kind: StepKind, node: &str, version: Option<&str>, reason: String) -> Step {
    Step {
        kind,
        node: Some(node.to_string()),
        version: version.map(str::to_string),
        reason,
        task: None,
    }
}

/// A run-level step (no node).
fn run_step(kind: StepKind, reason: String) -> Step {
    Step {
        kind,
        node: None,
        version: None,
        reason,
        task: None,
    }
}

/// The next task of `phase` (tasks run one at a time, in order), or the
/// end of a run whose `pre` task failed.
fn decide_task(
    spec: &RolloutSpec,
    state: &RunState,
    now: Millis,
    phase: TaskPhase,
    d: &mut Decision,
) {
    let list = spec.tasks(phase);
    let index = state.tasks.done(phase);
    let Some(ts) = list.get(index) else { return };
    if let Some((t, why)) = &state.tasks.failed {
        if t.phase == TaskPhase::Pre {
            let irreversible = state
                .irreversible_list()
                .map(|l| format!("; it could not be undone: {l}"))
                .unwrap_or_default();
            d.transition = Some(finish(
                now,
                Outcome::Failed,
                format!("{why}; no node was changed{irreversible}"),
            ));
        }
        return;
    }
    if let Some(o) = &state.tasks.outage {
        // said while a retry is in flight too: the reason does not flicker
        d.for_infra(format!(
            "infrastructure unreachable: task \"{}\" failed: {}; retrying every {}–{} for up to {}, then the run stops resumable (exit 4)",
            ts.name,
            o.reason,
            secs(spec.retry.backoff_ms),
            secs(spec.retry.max_backoff_ms),
            secs(spec.retry.deadline_ms)
        ));
    }
    if state.run_step_in_flight.is_some() {
        return; // one run-level step at a time
    }
    if let Some(last) = state.tasks.last_failed {
        let due = last + ts.retry_delay_ms;
        if now < due {
            d.wait_until(due);
            return;
        }
    }
    if let Some(o) = &state.tasks.outage {
        let due = o.last + spec.retry.delay(o.tries);
        if now < due {
            d.wait_until(due);
            return;
        }
    }
    let task = TaskRef {
        phase,
        index,
        name: ts.name.clone(),
    };
    let mut reason = format!("{}: {}", task.label(list.len()), ts.what);
    if phase == TaskPhase::Pre && index == 0 {
        reason.push_str(" (before any node changes)");
    }
    if let Some(o) = &state.tasks.outage {
        reason.push_str(&format!(
            " (retry {} after an infrastructure fault: {})",
            o.tries, o.reason
        ));
    } else if state.tasks.tries > 0 {
        reason.push_str(&format!(
            " (attempt {} of {}; the last said: {})",
            state.tasks.tries + 1,
            ts.attempts,
            state.tasks.last_detail
        ));
    }
    d.steps.push(Step {
        task: Some(task),
        ..run_step(StepKind::Task, reason)
    });
}

/// The post tasks assume the whole fleet runs the new release: when nodes
/// that failed within `max_failed_nodes` serve the old one, they wait for
/// a person before the first post task (`promote` runs them anyway).
fn post_tasks_wait(spec: &RolloutSpec, state: &RunState) -> Option<String> {
    if state.tasks.post_done > 0 || state.tasks.post_approved {
        return None;
    }
    let failed = state.failed_forward(spec);
    if failed.is_empty() {
        return None;
    }
    let names: Vec<&str> = failed.iter().map(|(n, _)| n.as_str()).collect();
    let irreversible = if spec.post.iter().any(|t| t.irreversible.is_some()) {
        " (some cannot be undone)"
    } else {
        ""
    };
    Some(format!(
        "{} failed within max_failed_nodes and do(es) not run {}: the {} post task(s){irreversible} assume the whole fleet does. Fix the node(s) and `glidepath promote RUN` to run them, or `glidepath rollback RUN`",
        names.join(", "),
        spec.version,
        spec.post.len()
    ))
}

/// Why the post tasks wait for a person now, if they do: the run is at
/// them (the last group done, its window and peers check passed, no pause
/// pending) and [`post_tasks_wait`] says so.
pub(crate) fn post_tasks_held(spec: &RolloutSpec, state: &RunState) -> Option<String> {
    let last = spec.groups.len().checked_sub(1)?;
    let at_post = state.phase == Phase::Rolling
        && state.held.is_none()
        && state.group == last
        && state.group_complete(spec, last)
        && state.peers.passed == Some(last)
        && spec
            .window
            .as_ref()
            .and_then(|w| w.length_after(last, spec.groups.len()))
            .is_none_or(|_| state.windows_passed.contains(&last))
        && (!spec.pause_after.contains(&last) || state.promoted.contains(&last))
        && state.tasks.post_done < spec.post.len();
    if at_post {
        post_tasks_wait(spec, state)
    } else {
        None
    }
}

/// Every node runs the new release (and the watch passed): the `post`
/// tasks, then the end.
fn finish_rollout(
    spec: &RolloutSpec,
    state: &RunState,
    now: Millis,
    reason: String,
    d: &mut Decision,
) {
    if state.tasks.post_done < spec.post.len() {
        if let Some(why) = post_tasks_wait(spec, state) {
            d.for_person(why);
            return;
        }
        decide_task(spec, state, now, TaskPhase::Post, d);
        return;
    }
    let accepted = if state.tasks.accepted.is_empty() {
        String::new()
    } else {
        format!(
            "; accepted by a person: {}",
            state.tasks.accepted.join("; ")
        )
    };
    d.transition = Some(finish(
        now,
        Outcome::Succeeded,
        format!("{reason}{accepted}"),
    ));
}

fn role(spec: &RolloutSpec, node: &str) -> String {
    match spec.group_of(node) {
        Some(0) => format!("canary {node}"),
        Some(g) => format!("{node} (batch {g}/{})", spec.groups.len() - 1),
        None => node.to_string(),
    }
}

/// Reason text for the next step of a node.
fn reason_for(
    spec: &RolloutSpec,
    node: &str,
    track: Track,
    kind: StepKind,
    target: &str,
) -> String {
    let who = role(spec, node);
    let why = match (track, kind) {
        (Track::Back, StepKind::Drain) => "take out of rotation to restore".to_string(),
        (_, StepKind::Drain) => format!("take out of rotation before deploying {target}"),
        (_, StepKind::CheckDrained) => "wait for 0 active connections".to_string(),
        (Track::Back, StepKind::Stage) => {
            format!("make sure last-known-good {target} is on the node")
        }
        (_, StepKind::Stage) => format!("stage release {target} and verify its checksum"),
        (Track::Back, StepKind::Switch) => format!("switch back to last-known-good {target}"),
        (_, StepKind::Switch) => format!("switch current to {target}"),
        (_, StepKind::Restart) => format!("restart to serve {target}"),
        (_, StepKind::CheckHealth) => format!("health check on {target}"),
        (Track::Restore, StepKind::Enable) => {
            "put back into rotation (release unchanged)".to_string()
        }
        (_, StepKind::Enable) => "put back into rotation".to_string(),
        (_, StepKind::PostCheck) => "check it serves through the balancer".to_string(),
        (_, k) => k.as_str().to_string(),
    };
    format!("{who}: {why}")
}

/// Next steps for the nodes of `candidates` that walk a track, honouring
/// `max_unavailable` for nodes that would newly leave rotation.
fn advance_nodes(
    spec: &RolloutSpec,
    state: &RunState,
    now: Millis,
    candidates: &[String],
    d: &mut Decision,
) {
    // Out of rotation: nodes the run drained (a node kept out after a failed
    // restore does not count in a rollback: it must not keep the others
    // from being restored), and, on the forward path, nodes found down and
    // nodes kept out (a restore failed within the failure budget).
    let rolling = state.phase == Phase::Rolling;
    let mut unavailable = state
        .nodes
        .iter()
        .filter(|(name, s)| {
            (s.status != NodeStatus::Failed
                && (s.out_of_rotation || s.in_flight == Some(StepKind::Drain)))
                || (rolling && state.down.contains_key(*name))
                || (rolling && s.status == NodeStatus::Failed && s.out_of_rotation)
        })
        .count();
    for name in candidates {
        let node = &state.nodes[name];
        if node.in_flight.is_some() {
            continue;
        }
        let (track, kind) = match (node.track, node.next_step()) {
            // a node that failed within the budget is not tried again
            (Track::Idle, _)
                if state.phase == Phase::Rolling
                    && node.status == NodeStatus::Untouched
                    && node.failed_forward.is_none() =>
            {
                (Track::Forward, StepKind::Drain)
            }
            (t, Some(k)) => (t, k),
            _ => continue,
        };
        if let Some(o) = &node.outage {
            let due = o.last + spec.retry.delay(o.tries);
            if now < due {
                d.wait_until(due);
                continue;
            }
        }
        if kind == StepKind::Drain && !node.out_of_rotation {
            // (max_unavailable is at least 1: restoring always gets a node
            // through, since failed nodes are not counted.)
            if unavailable >= spec.max_unavailable.max(1) {
                continue;
            }
            if !(state.phase == Phase::Rolling && state.down.contains_key(name)) {
                unavailable += 1;
            }
        }
        let target = match track {
            // restoring: the release the node had (Restore never switched it)
            Track::Back | Track::Restore => node.before.clone().unwrap_or_default(),
            _ => spec.version.clone(),
        };
        // Polling steps wait between tries; a health check's wait starts
        // short and grows by half (half as long as it has waited so far,
        // so it looks again at most 50 % later than needed) up to its
        // interval.
        let interval = match kind {
            StepKind::CheckDrained => Some(spec.drain_poll_ms),
            StepKind::CheckHealth | StepKind::PostCheck => {
                let waited = match (node.step_since, node.last_try) {
                    (Some(since), Some(last)) => last.saturating_sub(since),
                    _ => 0,
                };
                Some(
                    (waited / 2)
                        .max(crate::spec::HEALTH_FIRST_RETRY_MS)
                        .min(spec.health_interval_ms),
                )
            }
            _ => None,
        };
        if let (Some(iv), Some(last)) = (interval, node.last_try) {
            if now < last + iv {
                d.wait_until(last + iv);
                continue;
            }
        }
        let reason = if let Some(o) = &node.outage {
            format!(
                "{} (retry {} after an infrastructure fault: {})",
                reason_for(spec, name, track, kind, &target),
                o.tries,
                o.reason
            )
        } else if node.last_try.is_some() {
            format!(
                "{} (still waiting: {})",
                reason_for(spec, name, track, kind, &target),
                node.last_detail
            )
        } else {
            reason_for(spec, name, track, kind, &target)
        };
        let version = matches!(
            kind,
            StepKind::Stage
                | StepKind::Switch
                | StepKind::Restart
                | StepKind::CheckHealth
                | StepKind::PostCheck
        )
        .then_some(target.as_str());
        d.steps.push(step(kind, name, version, reason));
    }
}

/// How a run that succeeded ends: every node runs the release, or all but
/// those that failed within the failure budget, each named with why and
/// what it serves now.
fn succeeded(spec: &RolloutSpec, state: &RunState) -> String {
    let failed = state.failed_forward(spec);
    if failed.is_empty() {
        return format!("all {} nodes run {}", state.nodes.len(), spec.version);
    }
    let list: Vec<String> = failed
        .iter()
        .map(|(name, why)| {
            let n = &state.nodes[*name];
            let before = n.before.as_deref().unwrap_or("its previous release");
            let now = match n.status {
                NodeStatus::RolledBack => format!("restored to {before}"),
                NodeStatus::Failed if n.out_of_rotation => {
                    "its restore failed: kept out of rotation for a human".to_string()
                }
                NodeStatus::Failed => "its restore failed, in rotation: check it".to_string(),
                _ => format!("still on {before}, never switched"),
            };
            format!("{name} ({why}; {now})")
        })
        .collect();
    let updated = state
        .nodes
        .values()
        .filter(|n| n.status == NodeStatus::Updated)
        .count();
    format!(
        "{updated} of {} nodes run {}; {} failed within max_failed_nodes = {}: {}",
        state.nodes.len(),
        spec.version,
        failed.len(),
        spec.max_failed_nodes,
        list.join("; ")
    )
}

fn finish(at: Millis, outcome: Outcome, reason: String) -> Event {
    Event::Finished {
        at,
        outcome,
        reason,
    }
}

/// Why an SLI window starts after group `g`.
fn window_reason(spec: &RolloutSpec, g: usize, length_ms: u64, interval_ms: u64) -> String {
    let (len, every) = (length_ms as f64 / 1000.0, interval_ms as f64 / 1000.0);
    if g == 0 {
        format!(
            "canary {} runs {}: watch SLIs for {len}s, probing every {every}s",
            spec.groups[0].join(", "),
            spec.version
        )
    } else if spec.is_last_batch(g) {
        format!(
            "every node runs {}: watch the whole fleet for {len}s, probing every {every}s (a breach reverts every node)",
            spec.version
        )
    } else {
        let upgraded: usize = spec.groups[..=g].iter().map(|x| x.len()).sum();
        format!(
            "batch {g} done: bake, watching the {upgraded} upgraded node(s) for {len}s before batch {} (a breach rolls them all back)",
            g + 1
        )
    }
}

fn secs(ms: u64) -> String {
    format!("{}s", ms as f64 / 1000.0)
}

/// An infrastructure outage that has lasted the retry deadline, if any.
fn overdue(spec: &RolloutSpec, state: &RunState, now: Millis) -> Option<String> {
    let deadline = spec.retry.deadline_ms;
    let late = |since: Millis| now.saturating_sub(since) >= deadline;
    for (name, n) in &state.nodes {
        if let Some(o) = n.outage.as_ref().filter(|o| late(o.since)) {
            return Some(format!(
                "infrastructure unreachable for {} ({name} {}: {}), past the retry deadline of {}",
                secs(now.saturating_sub(o.since)),
                o.step.as_str(),
                o.reason,
                secs(deadline)
            ));
        }
    }
    if let Some(o) = state.tasks.outage.as_ref().filter(|o| late(o.since)) {
        return Some(format!(
            "infrastructure unreachable for {} (task: {}), past the retry deadline of {}",
            secs(now.saturating_sub(o.since)),
            o.reason,
            secs(deadline)
        ));
    }
    if let Some(since) = state.peers.blocked_since.filter(|s| late(*s)) {
        return Some(format!(
            "{} node(s) found down for {} ({}), more than max_unavailable = {} allows, past the retry deadline of {}",
            state.down.len(),
            secs(now.saturating_sub(since)),
            down_list(state),
            spec.max_unavailable,
            secs(deadline)
        ));
    }
    if let Some(ws) = &state.window {
        if let Some(since) = ws.outage_since.filter(|s| late(*s)) {
            return Some(format!(
                "metrics source unreachable for {} ({}), past the retry deadline of {}",
                secs(now.saturating_sub(since)),
                ws.outage_reason,
                secs(deadline)
            ));
        }
        // An incident that does not end may be the canary's own doing (a
        // shared dependency it overloads): stop and leave it to a person.
        if let Some(since) = ws.incident_since.filter(|s| late(*s)) {
            return Some(format!(
                "{} for {}, past the retry deadline of {}: if the canary could be its cause, `glidepath rollback RUN`; once the fleet recovers, `glidepath resume RUN` watches the window again",
                ws.incident_reason,
                secs(now.saturating_sub(since)),
                secs(deadline)
            ));
        }
    }
    None
}

fn down_list(state: &RunState) -> String {
    state
        .down
        .iter()
        .map(|(n, why)| format!("{n}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why the run waits on the infrastructure (stable text: no clock in it).
fn outage_waiting(spec: &RolloutSpec, state: &RunState) -> Option<String> {
    let r = &spec.retry;
    let (name, o) = state
        .nodes
        .iter()
        .filter_map(|(n, s)| s.outage.as_ref().map(|o| (n, o)))
        .min_by_key(|(_, o)| o.since)?;
    Some(format!(
        "infrastructure unreachable: {name} {} failed: {}; retrying every {}–{} for up to {}, then the run stops with every node as it is, resumable (exit 4; `glidepath rollback RUN` or `abort` to give up)",
        o.step.as_str(),
        o.reason,
        secs(r.backoff_ms),
        secs(r.max_backoff_ms),
        secs(r.deadline_ms)
    ))
}

/// Decide what happens next.
pub fn decide(spec: &RolloutSpec, state: &RunState, now: Millis) -> Decision {
    let mut d = Decision::default();
    if state.is_finished() {
        return d;
    }
    if let Some(why) = &state.suspended {
        d.for_infra(format!(
            "stopped: {why}; `glidepath resume RUN` continues once it answers"
        ));
        return d;
    }
    if let Some(why) = overdue(spec, state, now) {
        let busy = state.run_step_in_flight.is_some() || !state.in_flight().is_empty();
        if busy {
            d.for_infra(format!(
                "{why}: no new step; stopping once the steps in flight finish"
            ));
        } else {
            d.transition = Some(Event::Suspended {
                at: now,
                reason: why,
            });
        }
        return d;
    }
    let mut d = decide_steps(spec, state, now);
    if d.waiting.is_none() {
        if let Some(why) = outage_waiting(spec, state) {
            d.for_infra(why);
        }
    }
    d
}

fn decide_steps(spec: &RolloutSpec, state: &RunState, now: Millis) -> Decision {
    let mut d = Decision::default();
    match state.phase {
        Phase::Finished(_) => {}
        Phase::RollingBack | Phase::Aborting => {
            let order: Vec<String> = spec.nodes().cloned().collect();
            advance_nodes(spec, state, now, &order, &mut d);
            // a task (or probe) in flight finishes first: it is bounded by
            // its timeout, and its outcome belongs in the journal
            let busy = state.run_step_in_flight.is_some()
                || state
                    .nodes
                    .values()
                    .any(|n| n.in_flight.is_some() || n.track != Track::Idle);
            if d.steps.is_empty() && !busy {
                let failed = |out: bool| -> Vec<&String> {
                    state
                        .nodes
                        .iter()
                        .filter(|(_, n)| n.status == NodeStatus::Failed && n.out_of_rotation == out)
                        .map(|(k, _)| k)
                        .collect()
                };
                let (failed, failed_in) = (failed(true), failed(false));
                let in_rotation = if failed_in.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; restoring {} failed but it is in rotation (serving {}): check it",
                        failed_in
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        failed_in
                            .iter()
                            .map(|n| state.nodes[*n].seen.as_deref().unwrap_or("?"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                let cause = state
                    .cause
                    .as_ref()
                    .map(|c| c.reason.clone())
                    .unwrap_or_default();
                let (outcome, reason) = if !failed.is_empty() {
                    (
                        Outcome::RollbackFailed,
                        format!(
                            "restoring {} failed; kept out of rotation for a human{in_rotation}. Cause: {cause}",
                            failed
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                } else if !failed_in.is_empty() {
                    (
                        Outcome::RollbackFailed,
                        format!("rollback incomplete, no node left out of rotation{in_rotation}. Cause: {cause}"),
                    )
                } else if state.phase == Phase::Aborting {
                    let updated = state
                        .nodes
                        .values()
                        .filter(|n| n.status == NodeStatus::Updated)
                        .count();
                    (
                        Outcome::Aborted,
                        format!(
                            "aborted ({cause}); {updated} of {} nodes run {}, the rest their previous release; none left drained",
                            state.nodes.len(),
                            spec.version
                        ),
                    )
                } else {
                    let restored = state
                        .nodes
                        .values()
                        .filter(|n| n.status == NodeStatus::RolledBack)
                        .count();
                    (
                        Outcome::RolledBack,
                        format!(
                            "rolled back {restored} node(s) to their last-known-good release. Cause: {cause}{}",
                            state
                                .irreversible_list()
                                .map(|l| format!(". Not undone (irreversible): {l}"))
                                .unwrap_or_default()
                        ),
                    )
                };
                d.transition = Some(finish(now, outcome, reason));
            }
        }
        Phase::Rolling => {
            if let Some(h) = &state.held {
                d.for_person(h.clone());
                return d;
            }
            if state.tasks.pre_done < spec.pre.len() {
                decide_task(spec, state, now, TaskPhase::Pre, &mut d);
                return d;
            }
            let Some(group) = spec.groups.get(state.group) else {
                finish_rollout(spec, state, now, succeeded(spec, state), &mut d);
                return d;
            };
            if !state.group_complete(spec, state.group) {
                advance_nodes(spec, state, now, group, &mut d);
                return d;
            }
            let window = spec
                .window
                .as_ref()
                .and_then(|w| Some((w, w.length_after(state.group, spec.groups.len())?)));
            if let Some((w, length_ms)) = window {
                if !state.windows_passed.contains(&state.group) {
                    // what the window waits on is said whether or not a
                    // probe (a retry) is in flight: it does not flicker
                    match &state.window {
                        None => {
                            if let Some((_, why)) = &state.window_start_failed {
                                d.for_infra(format!(
                                    "the SLI window cannot start, the metrics source failed: {why}; retrying every {}s (`glidepath rollback RUN` to give up)",
                                    w.interval_ms as f64 / 1000.0
                                ));
                            }
                        }
                        Some(ws) => {
                            if let Some(since) = ws.outage_since {
                                d.for_infra(format!(
                                    "metrics source unreachable since {:.1}s into the SLI window ({}): the window is paused and resumes when it answers (`glidepath rollback RUN` to give up)",
                                    since.saturating_sub(ws.started) as f64 / 1000.0,
                                    ws.outage_reason
                                ));
                            } else if let Some(since) = ws.incident_since {
                                d.for_infra(format!(
                                    "{:.1}s into the SLI window, {}: the window is paused and goes on when the fleet recovers (`glidepath status RUN` shows both groups' figures; `glidepath rollback RUN` to give up)",
                                    since.saturating_sub(ws.started) as f64 / 1000.0,
                                    ws.incident_reason
                                ));
                            }
                        }
                    }
                    if state.run_step_in_flight.is_some() {
                        return d; // one probe at a time
                    }
                    match &state.window {
                        None if state
                            .window_start_failed
                            .as_ref()
                            .is_some_and(|(at, _)| now < at + w.interval_ms) =>
                        {
                            let (at, _) = state.window_start_failed.clone().expect("checked");
                            d.wait_until(at + w.interval_ms);
                        }
                        None => d.steps.push(run_step(
                            StepKind::StartWindow,
                            window_reason(spec, state.group, length_ms, w.interval_ms),
                        )),
                        Some(ws) => {
                            let end = ws.end(length_ms, now);
                            let last = ws.last_probe.unwrap_or(ws.started);
                            if now >= end && last >= end {
                                let (passed, reason) =
                                    close_window(&w.checks, &ws.latest, length_ms);
                                d.transition = Some(Event::WindowClosed {
                                    at: now,
                                    passed,
                                    reason,
                                });
                            } else {
                                let due = (last + w.interval_ms).min(end);
                                if now >= due {
                                    d.steps.push(run_step(
                                        StepKind::Probe,
                                        format!(
                                            "probe {} of the SLI window ({:.1}s of {}s elapsed)",
                                            ws.probes + 1,
                                            now.saturating_sub(ws.started) as f64 / 1000.0,
                                            length_ms as f64 / 1000.0
                                        ),
                                    ));
                                } else {
                                    d.wait_until(due);
                                }
                            }
                        }
                    }
                    return d;
                }
            }
            if spec.pause_after.contains(&state.group) && !state.promoted.contains(&state.group) {
                let what = if state.group == 0 {
                    "the canary".to_string()
                } else {
                    format!("batch {}", state.group)
                };
                d.for_person(format!(
                    "paused after {what} (pause point in the plan): run `glidepath promote RUN` to continue or `glidepath rollback RUN`"
                ));
                return d;
            }
            let next = state.group + 1;
            if state.peers.passed != Some(state.group) {
                if let Some(last) = state.peers.last {
                    // said while a re-check is in flight too
                    d.for_infra(format!(
                        "{} node(s) found down ({}): with max_unavailable = {} there is no room to go on; re-checking every {}–{} for up to {}, then the run stops resumable (exit 4; `glidepath rollback RUN` or `abort` to give up)",
                        state.down.len(),
                        down_list(state),
                        spec.max_unavailable,
                        secs(spec.retry.backoff_ms),
                        secs(spec.retry.max_backoff_ms),
                        secs(spec.retry.deadline_ms)
                    ));
                    if state.run_step_in_flight.is_some() {
                        return d; // one run-level step at a time
                    }
                    let due = last + spec.retry.delay(state.peers.tries);
                    if now < due {
                        d.wait_until(due);
                        return d;
                    }
                }
                if state.run_step_in_flight.is_some() {
                    return d; // one run-level step at a time
                }
                d.steps.push(run_step(
                    StepKind::CheckPeers,
                    format!(
                        "{} done: check that the nodes in rotation answer (a node found down counts against max_unavailable = {})",
                        if state.group == 0 { "canary".to_string() } else { format!("batch {}", state.group) },
                        spec.max_unavailable
                    ),
                ));
                return d;
            }
            if next >= spec.groups.len() {
                let down = if state.down.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; found down at the last check, within max_unavailable = {}: {}",
                        spec.max_unavailable,
                        down_list(state)
                    )
                };
                let reason = format!("{}{down}", succeeded(spec, state));
                finish_rollout(spec, state, now, reason, &mut d);
            } else {
                let watched = state.windows_passed.contains(&state.group);
                let why = if state.group == 0 && watched {
                    "canary healthy and SLI window passed".to_string()
                } else if state.group == 0 {
                    "canary healthy".to_string()
                } else if watched {
                    format!("batch {} done and baked", state.group)
                } else {
                    format!("batch {} done", state.group)
                };
                d.transition = Some(Event::GroupStarted {
                    at: now,
                    group: next,
                    reason: format!(
                        "{why}: start batch {next}/{} ({})",
                        spec.groups.len() - 1,
                        spec.groups[next].join(", ")
                    ),
                });
            }
        }
    }
    d
}

/// The pause a `promote` would act on now, if any: an SLI breach held for a
/// person, or a pause point of the plan that the run has reached. `None`
/// means nothing waits for a promotion, so a promote must be refused rather
/// than pre-approve a pause that has not come yet.
pub fn awaiting_promotion(spec: &RolloutSpec, state: &RunState) -> Option<String> {
    if state.phase != Phase::Rolling {
        return None;
    }
    if let Some(h) = &state.held {
        return Some(h.clone());
    }
    if let Some(why) = post_tasks_held(spec, state) {
        return Some(why);
    }
    spec.groups.get(state.group)?;
    let complete = state.group_complete(spec, state.group);
    let window = spec
        .window
        .as_ref()
        .and_then(|w| w.length_after(state.group, spec.groups.len()));
    let window_due = window.is_some() && !state.windows_passed.contains(&state.group);
    if !complete {
        return None;
    }
    // the watch after the last batch may be ended early
    if window_due && spec.is_last_batch(state.group) && state.window.is_some() {
        return Some(
            "watching the whole fleet after the last batch: `promote` ends the watch early".into(),
        );
    }
    if window_due {
        return None;
    }
    if spec.pause_after.contains(&state.group) && !state.promoted.contains(&state.group) {
        return Some(if state.group == 0 {
            "paused after the canary".to_string()
        } else {
            format!("paused after batch {}", state.group)
        });
    }
    None
}
