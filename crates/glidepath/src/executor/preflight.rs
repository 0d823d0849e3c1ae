//! Preflight: every gate before `Started`, cancellable by a signal; a
//! resumed run that never started goes through it again.

use super::*;

impl Executor {
    /// Preflight (cancellable by a signal), then `Started`, then the loop.
    /// Used by `start` and by `resume` of a run that never passed preflight:
    /// no node changes before every gate has passed in this process.
    pub(super) async fn preflight_then_drive(&mut self) -> Result<RunResult, ExecError> {
        let mut stop = self.stop.clone();
        let already = stop.borrow_and_update().0 > 0;
        let pre = if already {
            Err(stop.borrow().1)
        } else {
            tokio::select! {
                r = self.preflight() => Ok(r),
                _ = stop.changed() => Err(stop.borrow().1),
            }
        };
        let before = match pre {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                self.journal
                    .set_status(&self.run_id, RunStatus::Refused, &e.to_string())?;
                self.journal
                    .release_lease(&self.plan.fleet_name, &self.run_id)?;
                return Err(e);
            }
            Err(signal) => {
                return self
                    .finish_before_start(
                        Outcome::Aborted,
                        format!(
                        "{signal} during preflight: the run was stopped before any node changed"
                    ),
                    )
                    .await;
            }
        };
        self.journal
            .set_status(&self.run_id, RunStatus::Running, "")?;
        self.record(Event::Started {
            at: now_ms(),
            before,
        })
        .await?;
        let files: BTreeMap<String, String> = self
            .plan
            .tasks
            .iter()
            .flat_map(|t| match &t.action {
                crate::config::TaskAction::Migrate { files, .. } => files
                    .iter()
                    .map(|f| (f.name.clone(), f.sha256.clone()))
                    .collect::<Vec<_>>(),
                _ => vec![],
            })
            .collect();
        if !files.is_empty() {
            self.record(Event::FilesPinned {
                at: now_ms(),
                files,
            })
            .await?;
        }
        self.drive().await
    }

    /// End a run that never started (nothing changed): journal `Finished`,
    /// release the lease.
    pub(super) async fn finish_before_start(
        &mut self,
        outcome: Outcome,
        reason: String,
    ) -> Result<RunResult, ExecError> {
        self.reporter.note(&reason);
        self.record(Event::Finished {
            at: now_ms(),
            outcome,
            reason,
        })
        .await?;
        self.journal
            .release_lease(&self.plan.fleet_name, &self.run_id)?;
        Ok(RunResult {
            run_id: self.run_id.clone(),
            outcome,
            state: self.state.clone(),
        })
    }

    /// Resume a run whose process died before preflight passed (no
    /// `Started` event): nothing has changed, so an abort or rollback waiting
    /// for it just ends it; otherwise every gate runs again, with the forces
    /// journaled by the first attempt (who, when and why stay on record).
    pub(super) async fn resume_before_start(
        &mut self,
        events: &[Event],
    ) -> Result<RunResult, ExecError> {
        let pending = self.journal.pending_commands(&self.run_id)?;
        if let Some(c) = pending
            .iter()
            .find(|c| matches!(c.kind, CommandKind::Abort | CommandKind::Rollback))
        {
            for c in &pending {
                self.journal.consume_command(c.id)?;
            }
            self.journal
                .set_status(&self.run_id, RunStatus::Running, "")?;
            return self
                .finish_before_start(
                    Outcome::Aborted,
                    format!(
                        "{} before preflight passed ({}): no node was changed",
                        c.kind, c.reason
                    ),
                )
                .await;
        }
        self.forces = events
            .iter()
            .filter_map(|e| match e {
                Event::GateForced { gate, reason, .. } => Some((gate.clone(), reason.clone())),
                _ => None,
            })
            .collect();
        self.forces.dedup();
        self.reporter.note(&format!(
            "run {} never passed preflight (its process died during it): running every gate again before any node changes",
            self.run_id
        ));
        self.journal
            .set_status(&self.run_id, RunStatus::Preflight, "")?;
        self.preflight_then_drive().await
    }

    /// Gates that must pass before any node changes: the built-in ones
    /// (checksum, rollback targets, reachability, health) and the plan's
    /// `[gates]`. A failing declared gate may be forced with a reason.
    pub(super) async fn preflight(
        &mut self,
    ) -> Result<BTreeMap<String, Option<String>>, ExecError> {
        let (mut results, before) = builtin_checks(
            &crate::gates::builtin::BuiltinInputs::of(&self.plan),
            &self.drivers,
        )
        .await;
        let deployed = same_release(&before);
        let now = jiff::Timestamp::now();
        let inputs = crate::gates::Inputs::of(&self.plan);
        results.extend(
            crate::gates::evaluate(&self.plan.gates, &inputs, now, deployed.as_deref()).await,
        );
        let by = format!(
            "{}@{}",
            crate::journal::operator(),
            crate::journal::hostname()
        );
        for r in results.iter_mut() {
            if r.verdict == crate::gates::Verdict::Fail && !r.builtin {
                if let Some(reason) = self
                    .forces
                    .iter()
                    .find(|(g, _)| *g == r.gate)
                    .map(|(_, why)| why.clone())
                {
                    r.forced = Some(reason.clone());
                    self.record(Event::GateForced {
                        at: now_ms(),
                        gate: r.gate.clone(),
                        reason,
                        by: by.clone(),
                    })
                    .await?;
                }
            }
        }
        for (g, _) in &self.forces {
            if !results.iter().any(|r| &r.gate == g) {
                return Err(ExecError::Gate(format!(
                    "--force {g}: the plan has no gate `{g}` (gates: {})",
                    results
                        .iter()
                        .map(|r| r.gate.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        self.record(Event::GatesChecked {
            at: now_ms(),
            results: results
                .iter()
                .map(|r| glidepath_core::GateRecord {
                    gate: r.gate.clone(),
                    verdict: if r.forced.is_some() {
                        "forced".into()
                    } else {
                        format!("{:?}", r.verdict).to_lowercase()
                    },
                    reason: r.reason.clone(),
                })
                .collect(),
        })
        .await?;
        for line in crate::gates::render(&results).lines() {
            self.reporter.note(&format!("preflight  {line}"));
        }
        let failing: Vec<&crate::gates::GateResult> = results
            .iter()
            .filter(|r| r.verdict == crate::gates::Verdict::Fail && r.forced.is_none())
            .collect();
        if failing.is_empty() {
            let (config_hashes, env) =
                crate::gates::snapshot(self.plan.gates.config.as_ref(), &inputs);
            self.record(Event::Snapshot {
                at: now_ms(),
                versions: before.clone(),
                config_hashes,
                env,
            })
            .await?;
            return Ok(before);
        }
        let text = failing
            .iter()
            .map(|r| {
                let force = if r.builtin {
                    String::new()
                } else {
                    format!(" (or --force {} --reason \"…\")", r.gate)
                };
                format!(
                    "{}: {}{}{force}",
                    r.gate,
                    r.reason,
                    r.fix
                        .as_ref()
                        .map(|f| format!(" — fix: {f}"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n  ");
        if failing.iter().all(|r| r.infra) {
            Err(ExecError::Unreachable(text))
        } else {
            Err(ExecError::Gate(text))
        }
    }
}
