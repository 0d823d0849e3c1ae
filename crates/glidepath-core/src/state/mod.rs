//! The state of a run and the events that change it. The journal stores
//! [`Event`]s; folding them with [`RunState::apply`] rebuilds the state
//! exactly, which is how `resume` works after a crash.
//!
//! - `event.rs`: steps, step outcomes, causes and the journaled [`Event`]s.
//! - `node.rs`: a node's [`Track`], [`NodeStatus`] and [`NodeState`], with
//!   the node-level transitions (start a track, turn back, advance).
//! - `run.rs`: [`RunState`] and [`WindowState`], their queries, and the
//!   run-level transitions (begin a rollback or an abort).
//! - `apply.rs`: folding an event ([`RunState::apply`], [`RunState::replay`]).
//! - `outcome.rs`: folding a step's outcome (deadlines, outages, failures).
//! - `tasks.rs`: the `[[pre]]`/`[[post]]` tasks' progress ([`TaskProgress`]).
//!
//! What to do next is decided from this state in `decide.rs`.

mod apply;
mod event;
mod node;
mod outcome;
mod run;
mod tasks;

pub use event::{
    Cause, CauseKind, Event, GateRecord, Outcome, Step, StepKind, StepOutcome, TaskRef,
};
pub use node::{NodeState, NodeStatus, Outage, PeersCheck, Track};
pub use run::{Phase, RunState, WindowState};
pub use tasks::TaskProgress;
