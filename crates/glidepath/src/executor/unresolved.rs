//! Runs that left a node for a person, and the runs they hold back until
//! `glidepath resolve` closes them.
//!
//! A run leaves nodes for a person when it ends `rollback_failed`, or ends
//! any other way (even `succeeded`, within `max_failed_nodes`) with a node
//! kept out of rotation because restoring it failed. Two records hold a new
//! run back, for two reaches:
//! - **the journal**: the last run of every fleet is looked at; one that
//!   left nodes for a person and has no `Resolved` event refuses a run of
//!   the same fleet, and a run of any other fleet of the journal that names
//!   one of those nodes by address (a renamed copy of the plan; a second
//!   machine on a shared PostgreSQL journal);
//! - **this machine's lock directory** (`journal::locks`): a marker per
//!   node address, written when such a run ends and removed by `resolve`,
//!   refuses a run from any other journal on this machine (`--journal`,
//!   another user's default journal).

use super::ExecError;
use crate::journal::{locks, JournalError, RunRecord, RunStatus, Store};
use crate::plan::{self, Plan};
use glidepath_core::{Event, NodeStatus, RunState};
use std::collections::BTreeSet;
use std::path::Path;

/// The plan a run was started with, as journaled.
pub fn journaled_plan(rec: &RunRecord) -> Result<Plan, ExecError> {
    let path = Path::new(&rec.plan_path);
    plan::parse(
        path,
        &rec.plan_source,
        path.parent().unwrap_or(Path::new(".")),
    )
    .map(|(p, _)| p)
    .map_err(|e| ExecError::BadJournaledPlan {
        run: rec.id.clone(),
        message: match e {
            plan::PlanError::Invalid(r) => r.short(),
            other => other.to_string(),
        },
    })
}

/// The nodes (name, address) a finished run left for a person, if it did
/// and nobody resolved it: those kept out of rotation; for a
/// `rollback_failed` run without one, those that failed (else all).
pub fn left_for_person(
    j: &dyn Store,
    rec: &RunRecord,
) -> Result<Option<Vec<(String, String)>>, ExecError> {
    if !rec.status.is_final() || matches!(rec.status, RunStatus::Resolved | RunStatus::Refused) {
        return Ok(None);
    }
    let events = j.events(&rec.id)?;
    if events.iter().any(|e| matches!(e, Event::Resolved { .. })) {
        return Ok(None);
    }
    let plan = match journaled_plan(rec) {
        Ok(p) => p,
        // a plan this binary no longer reads: only the status tells
        Err(_) if rec.status != RunStatus::RollbackFailed => return Ok(None),
        Err(e) => return Err(e),
    };
    let state = RunState::replay(&plan.rollout_spec(), &events);
    let address = |name: &str| {
        plan.nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.address.clone())
            .unwrap_or_default()
    };
    let pick = |f: &dyn Fn(&glidepath_core::NodeState) -> bool| -> Vec<(String, String)> {
        state
            .nodes
            .iter()
            .filter(|(_, n)| f(n))
            .map(|(name, _)| (name.clone(), address(name)))
            .collect()
    };
    let kept = pick(&|n| n.status == NodeStatus::Failed && n.out_of_rotation);
    if rec.status != RunStatus::RollbackFailed {
        return Ok((!kept.is_empty()).then_some(kept));
    }
    if !kept.is_empty() {
        return Ok(Some(kept));
    }
    let failed = pick(&|n| n.status == NodeStatus::Failed);
    if !failed.is_empty() {
        return Ok(Some(failed));
    }
    Ok(Some(plan.node_addresses()))
}

/// A run that holds this one back.
#[derive(Debug)]
pub struct Held {
    pub run: RunRecord,
    /// The nodes it left for a person (names in its plan).
    pub nodes: Vec<String>,
}

/// The unresolved run of this journal that holds a run of `plan` back, if
/// any (see the module doc); `except` is the new run itself.
pub fn unresolved(j: &dyn Store, plan: &Plan, except: &str) -> Result<Option<Held>, ExecError> {
    let mut ours: Option<BTreeSet<String>> = None;
    let mut seen = BTreeSet::new();
    for r in j.runs(i64::MAX as usize)? {
        if r.id == except || r.status == RunStatus::Refused || !seen.insert(r.fleet.clone()) {
            continue;
        }
        let Some(nodes) = left_for_person(j, &r)? else {
            continue;
        };
        let overlap = r.fleet == plan.fleet_name || {
            let ours = ours.get_or_insert_with(|| {
                plan.nodes
                    .iter()
                    .flat_map(|n| locks::node_keys(&n.address))
                    .collect()
            });
            nodes
                .iter()
                .any(|(_, a)| locks::node_keys(a).iter().any(|k| ours.contains(k)))
        };
        if overlap {
            return Ok(Some(Held {
                nodes: nodes.into_iter().map(|(n, _)| n).collect(),
                run: r,
            }));
        }
    }
    Ok(None)
}

/// After a run ended: mark, in this machine's lock directory, the nodes it
/// left for a person (nothing when it left none). A marker that cannot be
/// written is returned as an error for the caller to report: the journal
/// still holds the fleet back.
pub fn mark(j: &dyn Store, rec: &RunRecord) -> Result<(), ExecError> {
    if let Some(nodes) = left_for_person(j, rec)? {
        locks::hold(&nodes, &rec.id, &rec.fleet, &j.location())?;
    }
    Ok(())
}

/// Before a run: the markers of this machine's lock directory on `plan`'s
/// nodes. One of this journal whose run no longer holds anything back
/// (resolved here, or on another machine sharing the journal) is stale and
/// removed; any other (another journal's, or one whose run this journal no
/// longer has: the node may still be out) refuses the run.
pub fn check_marks(j: &dyn Store, plan: &Plan) -> Result<(), ExecError> {
    for m in locks::held(&plan.node_addresses())? {
        if locks::same_journal(&m.journal, &j.location()) {
            match j.run(&m.run) {
                Ok(rec) => {
                    if left_for_person(j, &rec)?.is_none() {
                        let _ = std::fs::remove_file(&m.path);
                    }
                    // else: the journal's own check names it
                    continue;
                }
                Err(JournalError::NoSuchRun(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        return Err(ExecError::HeldOnMachine(Box::new(m)));
    }
    Ok(())
}
