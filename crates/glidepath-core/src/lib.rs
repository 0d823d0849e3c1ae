//! The pure decision core of glidepath.
//!
//! Given a [`RolloutSpec`], a [`RunState`] (rebuilt from journaled
//! [`Event`]s) and the current time, [`decide`] returns the next steps, each
//! with a human-readable reason. This crate does no I/O, reads no clock and
//! has no async code: every function is deterministic and table-tested.

mod compare;
pub mod compat;
mod decide;
pub mod metrics;
pub mod seq;
mod sli;
mod spec;
mod state;

pub use compare::{judge_probe, CompareState, Comparison};
pub use decide::{awaiting_promotion, decide, Decision, WaitsOn};
pub use sli::{
    close_window, fails_now, judge, Counts, Fault, Group, Judgement, Observation, Verdict,
};
pub use spec::{
    plan_groups, BatchSize, CheckSpec, CompareSpec, DrainTimeoutPolicy, FailureBudget,
    IncidentPolicy, InconclusivePolicy, Millis, PostFailurePolicy, RetrySpec, RolloutSpec,
    TaskPhase, TaskSpec, WindowSpec,
};
pub use state::{
    Cause, CauseKind, Event, GateRecord, NodeState, NodeStatus, Outage, Outcome, PeersCheck, Phase,
    RunState, Step, StepKind, StepOutcome, TaskProgress, TaskRef, Track, WindowState,
};
