//! glidepath's integration tests: one binary. Real demo-node processes on
//! 127.0.0.1, the real `glidepath` binary as a child process (so it can be
//! killed with SIGKILL), the real SQLite journal.

mod follow;
mod gates;
mod harness;
mod limits;
mod lint;
mod plans;
mod real;
mod rollout;
mod safety;
mod system;
