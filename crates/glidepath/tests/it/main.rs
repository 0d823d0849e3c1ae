//! glidepath's integration tests: one binary. Real demo-node processes on
//! 127.0.0.1, the real `glidepath` binary as a child process (so it can be
//! killed with SIGKILL), the real SQLite journal, and a real PostgreSQL
//! journal (`team.rs`, and the kill -9 suite again in `rollout.rs`).

mod budget;
mod exit_codes;
mod follow;
mod gates;
mod harness;
mod honest;
mod journal_move;
mod json;
mod judge;
mod limits;
mod lint;
mod location;
mod notify;
mod onboarding;
mod operator;
mod phases;
mod plans;
mod preflight;
mod probe;
mod real;
mod real_outage;
mod real_ssh;
mod release_override;
mod report;
mod rollout;
mod safety;
mod serve;
mod system;
mod task_edges;
mod team;
mod templates;
mod tools;
mod upgrade;
mod watch;
mod watch_status;
