//! Table-driven tests of the decision core: a simulated fleet answers every
//! step, time advances only when the core asks to wait.
//!
//! - `sim.rs`: the simulated fleet ([`sim::World`]) and the run driver ([`sim::Sim`]).
//! - `forward.rs`, `rollback.rs`, `sli.rs`, `replay.rs`, `outages.rs`,
//!   `budget.rs` (the failure budget, `max_failed_nodes`): table tests by topic.
//! - `props.rs`: property tests (proptest keeps its seeds in
//!   `tests/proptest-regressions/props.txt`, the path it derives for a test
//!   directory with a `main.rs`).

mod budget;
mod forward;
mod outages;
mod props;
mod replay;
mod rollback;
mod sim;
mod sli;
mod tasks;
