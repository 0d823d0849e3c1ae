//! Protocol compatibility across components, and the shortest safe upgrade
//! order. Pure: the system (components, releases with protocol ranges per
//! axis, who talks to whom, skew rules, required stops, stateful components,
//! capability flags) and the versions in use go in; stages come out, each
//! with the reason it must come before the next.
//!
//! A *stage* moves every instance of one component to one release (or
//! switches a capability flag on). While a stage rolls node by node, the
//! old and new releases run side by side, so a stage is allowed only if that
//! *mixed* state is compatible: every pair of communicating instances shares
//! a protocol version on every axis both speak, and every skew rule holds.
//!
//! - `spec.rs`: the declarations ([`SystemSpec`] and its parts) and the
//!   pairwise compatibility words ([`releases_compatible`], [`incompatibility`]).
//! - `system.rs`: the compiled [`System`] (validation in [`System::new`]) and
//!   a [`State`] of versions in use.
//! - `check.rs`: a state's violations, and whether a [`Move`] is safe.
//! - `search.rs`: [`System::plan`], the A* over stages to a [`Target`].
//! - `explain.rs`: [`System::explain`], moves into [`Stage`]s with reasons.

mod check;
mod explain;
mod search;
mod spec;
mod system;

pub use check::Move;
pub use explain::Stage;
pub use search::{Target, Unreachable};
pub use spec::{
    cmp_versions, incompatibility, releases_compatible, CapabilitySpec, ComponentSpec, Range,
    ReleaseSpec, SkewRule, SpecError, SystemSpec,
};
pub use system::{State, System};
