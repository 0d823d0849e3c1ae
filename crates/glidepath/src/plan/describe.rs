//! What a plan does: `Plan::rollout_spec` (the rollout as the decision
//! core sees it) and `Plan::describe` (the summary `validate` prints).

use super::Plan;
use glidepath_core::{plan_groups, RolloutSpec, WindowSpec};
use std::time::Duration;

impl Plan {
    /// The rollout as the decision core sees it.
    pub fn rollout_spec(&self) -> RolloutSpec {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let groups = plan_groups(&names, &self.strategy.canary, self.strategy.batch);
        let batch_len = groups.iter().skip(1).map(|g| g.len()).max().unwrap_or(1);
        let window = match (&self.sli, self.strategy.sli_window) {
            (Some(sli), Some(w)) => Some(WindowSpec {
                length_ms: w.as_millis() as u64,
                interval_ms: self.strategy.probe_interval.as_millis() as u64,
                checks: self.window_checks(sli, groups.first().map_or(0, |g| g.len())),
                rollback_on_breach: self.rollback_on.iter().any(|o| o == "sli"),
                pause_on_metrics_error: sli.pause_on_error,
                on_incident: sli.on_incident,
                bake_ms: self.strategy.batch_bake.map(|d| d.as_millis() as u64),
                watch_ms: self.strategy.watch_after.map(|d| d.as_millis() as u64),
            }),
            _ => None,
        };
        RolloutSpec {
            version: self.release.version.clone(),
            groups,
            max_unavailable: self.strategy.max_unavailable.unwrap_or(batch_len).max(1),
            pause_after: self.strategy.pause_after.clone(),
            window,
            drain_timeout_ms: self.strategy.drain_timeout.as_millis() as u64,
            drain_poll_ms: 100,
            on_drain_timeout: self.strategy.on_drain_timeout,
            health_deadline_ms: self.health.deadline.as_millis() as u64,
            health_interval_ms: self.health.interval.as_millis() as u64,
            retry: self.strategy.retry,
            pre: self.task_specs(glidepath_core::TaskPhase::Pre),
            post: self.task_specs(glidepath_core::TaskPhase::Post),
            on_post_failure: self.on_post_failure,
            max_failed_nodes: self.strategy.max_failed_nodes.resolve(self.nodes.len()),
        }
    }

    /// The tasks of a phase as the core sees them.
    fn task_specs(&self, phase: glidepath_core::TaskPhase) -> Vec<glidepath_core::TaskSpec> {
        self.tasks
            .iter()
            .filter(|t| t.phase == phase)
            .map(|t| glidepath_core::TaskSpec {
                name: t.name.clone(),
                what: t.describe(),
                attempts: t.attempts,
                retry_delay_ms: t.retry_delay.as_millis() as u64,
                idempotent: t.idempotent,
                irreversible: t.irreversible.clone(),
            })
            .collect()
    }

    /// The tasks of a phase.
    pub fn tasks_of(&self, phase: glidepath_core::TaskPhase) -> Vec<&crate::config::TaskCfg> {
        self.tasks.iter().filter(|t| t.phase == phase).collect()
    }

    /// The irreversible tasks, as `validate` and the summary list them.
    pub fn irreversible(&self) -> Vec<String> {
        self.tasks
            .iter()
            .filter_map(|t| {
                t.irreversible
                    .as_ref()
                    .map(|n| format!("{} {} ({n})", t.phase.as_str(), t.name))
            })
            .collect()
    }

    /// The nodes the canary group is compared with: `[sli] baseline`, or
    /// every node outside the canary group.
    pub fn baseline_nodes(&self) -> Vec<String> {
        match self.sli.as_ref().and_then(|s| s.baseline.clone()) {
            Some(b) => b,
            None => self
                .nodes
                .iter()
                .map(|n| n.name.clone())
                .filter(|n| !self.strategy.canary.contains(n))
                .collect(),
        }
    }

    /// The window's checks as the core sees them: each compare check gets
    /// an equal share of `[sli] alpha` (the rollout's false-regression
    /// budget; shadow checks spend none of it) and the canary group's
    /// expected share of the traffic (its nodes among canary and baseline).
    fn window_checks(
        &self,
        sli: &crate::config::SliCfg,
        canaries: usize,
    ) -> Vec<glidepath_core::CheckSpec> {
        let enforcing = sli
            .checks
            .iter()
            .filter(|c| c.spec.compare.is_some() && !c.spec.shadow)
            .count()
            .max(1);
        let baseline = self.baseline_nodes().len();
        let share = canaries as f64 / (canaries + baseline).max(1) as f64;
        sli.checks
            .iter()
            .map(|c| {
                let mut spec = c.spec.clone();
                if let Some(cmp) = spec.compare.as_mut() {
                    cmp.alpha = sli.alpha / enforcing as f64;
                    cmp.expected_share = share;
                }
                spec
            })
            .chain(sli.probe_checks.iter().map(|p| p.spec.clone()))
            .collect()
    }

    /// What `run` would do, in order, for `validate`.
    pub fn describe(&self) -> Vec<String> {
        let spec = self.rollout_spec();
        let mut out = vec![format!(
            "release {} ({}), sha256 {}…, fleet `{}` of {} node(s)",
            self.release.version,
            self.release.artifact.display(),
            &self.release.sha256[..12],
            self.fleet_name,
            self.nodes.len()
        )];
        out.push("preflight: verify the artifact checksum, read each node's current release (its rollback target), check every node is healthy and reachable at the balancer".into());
        if let Some(p) = &self.health.probe {
            out.push(format!(
                "health check on each node, with the probe: {}",
                p.describe()
            ));
        }
        for t in self.tasks_of(glidepath_core::TaskPhase::Pre) {
            out.push(format!("pre: {}", t.summary()));
        }
        let node_steps = "drain → wait for 0 active connections → stage + verify → switch current → restart → health check → re-enable → post-enable check";
        for (i, g) in spec.groups.iter().enumerate() {
            let who = if i == 0 {
                format!("canary {}", g.join(", "))
            } else {
                format!("batch {}/{}: {}", i, spec.groups.len() - 1, g.join(", "))
            };
            out.push(format!(
                "{who}: {node_steps} (at most {} out of rotation at once)",
                spec.max_unavailable.min(g.len())
            ));
            if i == 0 {
                if let Some(w) = &spec.window {
                    let checks: Vec<String> = w
                        .checks
                        .iter()
                        .map(|c| {
                            let t = match (c.max, c.min) {
                                (Some(m), _) => format!("≤ {m}"),
                                (None, Some(m)) => format!("≥ {m}"),
                                _ => String::new(),
                            };
                            let cmp = match &c.compare {
                                Some(cmp) => format!(
                                    ", compared with the baseline: more than {}% worse at alpha {} is a breach",
                                    cmp.tolerance * 100.0,
                                    cmp.alpha
                                ),
                                None => String::new(),
                            };
                            let shadow = if c.shadow { ", shadow: reported, never acted on" } else { "" };
                            format!("{} {t} (min {} samples{cmp}{shadow})", c.name, c.min_samples)
                        })
                        .collect();
                    out.push(format!(
                        "watch SLIs for {} probing every {}: {}; a breach {}",
                        humantime::format_duration(Duration::from_millis(w.length_ms)),
                        humantime::format_duration(Duration::from_millis(w.interval_ms)),
                        checks.join(", "),
                        if w.rollback_on_breach {
                            "rolls the canary back automatically"
                        } else {
                            "pauses for an operator"
                        }
                    ));
                    let baseline = self.baseline_nodes();
                    if !baseline.is_empty() {
                        out.push(format!(
                            "each check is read for the canary and its baseline ({}); both past a limit is a fleet-wide incident: {}",
                            baseline.join(", "),
                            match w.on_incident {
                                glidepath_core::IncidentPolicy::Pause => "the window pauses until the fleet recovers",
                                glidepath_core::IncidentPolicy::Rollback => "the canary is rolled back",
                            }
                        ));
                    }
                }
            }
            if i > 0 {
                if let Some(len) = spec
                    .window
                    .as_ref()
                    .and_then(|w| w.length_after(i, spec.groups.len()))
                {
                    let len = humantime::format_duration(Duration::from_millis(len));
                    out.push(if i + 1 == spec.groups.len() {
                        format!("watch the whole fleet for {len} (the SLI checks; a breach reverts every node; `promote` ends the watch early)")
                    } else {
                        format!("bake: watch the nodes upgraded so far for {len} before the next batch (a breach rolls them all back)")
                    });
                }
            }
            if spec.pause_after.contains(&i) {
                out.push("pause: wait for `glidepath promote RUN`".into());
            }
        }
        if spec.max_failed_nodes > 0 {
            let how = match self.strategy.max_failed_nodes {
                glidepath_core::FailureBudget::Percent(p) => {
                    format!("max_failed_nodes = \"{p}%\" of {} nodes", self.nodes.len())
                }
                glidepath_core::FailureBudget::Count(_) => "max_failed_nodes".to_string(),
            };
            out.push(format!(
                "failure budget ({how}): up to {} batch node(s) may fail; each is restored to its previous release on its own, reported, not tried again, and the run goes on; one more failure rolls every node back (a canary failure always does)",
                spec.max_failed_nodes
            ));
        }
        for t in self.tasks_of(glidepath_core::TaskPhase::Post) {
            out.push(format!("post: {}", t.summary()));
        }
        if !spec.post.is_empty() {
            out.push(format!(
                "a failed post task {}",
                match self.on_post_failure {
                    glidepath_core::PostFailurePolicy::Rollback =>
                        "rolls every node back (holds for a person once an irreversible task has run)",
                    glidepath_core::PostFailurePolicy::Hold => "holds for a person",
                }
            ));
        }
        let irreversible = self.irreversible();
        if !irreversible.is_empty() {
            out.push(format!(
                "IRREVERSIBLE: {}; once one has run, the run never rolls back on its own and `rollback` needs --force --reason",
                irreversible.join("; ")
            ));
        }
        out.push(format!(
            "on a failed health check{}: restore each changed node to its previous release (keep {} releases per node)",
            if self.rollback_on.iter().any(|o| o == "sli") { " or SLI breach" } else { "" },
            self.deploy.keep_releases
        ));
        if let Some(n) = &self.notify {
            out.push(format!(
                "notify (never blocks the rollout; up to {} at the end): {}",
                humantime::format_duration(n.grace),
                n.sinks
                    .iter()
                    .map(notify_sink)
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        out
    }
}

/// A sink as `validate` shows it: where its secrets come from, never them.
fn notify_sink(s: &crate::config::NotifySink) -> String {
    use crate::config::{NotifyKind, NotifyUrl, SecretRef};
    let from = |r: &SecretRef| match r {
        SecretRef::Env(v) => format!("${v}"),
        SecretRef::File(p) => p.display().to_string(),
    };
    let what = match &s.kind {
        NotifyKind::Webhook { url, token } => {
            let mut w = match url {
                NotifyUrl::Plain(_) => "URL in the plan".to_string(),
                NotifyUrl::Secret(r) => format!("URL from {}", from(r)),
            };
            if let Some(t) = token {
                w.push_str(&format!(", bearer token from {}", from(t)));
            }
            w
        }
        NotifyKind::Command { .. } => "the event on stdin".to_string(),
    };
    let on =
        s.on.as_ref()
            .map_or("every event".to_string(), |on| on.join(", "));
    format!("{} ({what}) on {on}", s.label)
}
