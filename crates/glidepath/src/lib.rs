//! glidepath: executable, provable upgrade runbooks.
pub mod artifact;
pub mod campaign;
pub mod config;
pub mod control;
pub mod demo;
pub mod diag;
pub mod drivers;
pub mod events;
pub mod executor;
pub mod files;
pub mod gates;
pub mod hints;
pub mod journal;
pub mod lint;
pub mod live;
pub mod names;
pub mod notify;
pub mod output;
pub mod plan;
pub mod probe;
pub mod report;
pub mod runreport;
pub mod serve;
pub mod shell;
pub mod system;
pub mod tasks;
pub mod template;
pub mod upgrade;
pub mod watch;

#[cfg(test)]
mod layers;
