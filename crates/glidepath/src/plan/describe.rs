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
                checks: sli.checks.iter().map(|c| c.spec.clone()).collect(),
                rollback_on_breach: self.rollback_on.iter().any(|o| o == "sli"),
                pause_on_metrics_error: sli.pause_on_error,
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
        }
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
                            format!("{} {t} (min {} samples)", c.name, c.min_samples)
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
                }
            }
            if spec.pause_after.contains(&i) {
                out.push("pause: wait for `glidepath promote RUN`".into());
            }
        }
        out.push(format!(
            "on a failed health check{}: restore each changed node to its previous release (keep {} releases per node)",
            if self.rollback_on.iter().any(|o| o == "sli") { " or SLI breach" } else { "" },
            self.deploy.keep_releases
        ));
        out
    }
}
