//! Benchmarks that print figures (README "Performance").
//!
//!   cargo build --release && cargo run --release --example bench -- [engine|rollback|health|lint|planner|preflight|judge|journal|serve[-latency|-rss|-page]|prometheus|all]
//!
//! engine:   CPU time per node step of the executor + core + SQLite journal,
//!           with drivers that return at once (no waits on a fleet).
//! rollback: the demo's broken release with a 1 s probe interval, several
//!           times: from the bad release serving to the rollback decision and
//!           to the canary serving the previous release again.
//! health:   a good release to 100 demo nodes with the health check's
//!           default 1 s interval and with 20 ms: the nodes' step times.
//! lint:     `glidepath lint` vs squawk's CLI on a 20,000-statement file.
//! planner:  `glidepath plan` on 20 components × 50 releases, 10,000 instances.
//! prometheus: the same behind real HAProxy with SLIs from real Prometheus
//!           (scrape 1 s, 10 s rate window); needs haproxy and prometheus.
//! judge:    the canary judge's detection budget by simulation: events (and
//!           seconds at the demo's rate) to call a 1.5×/2×/5× error-rate
//!           and a +20 %/+50 % p95 regression at a 10 % traffic share,
//!           beside a fixed-horizon test of the same power.
//! preflight: the preflight gates (built-in + declared) at 100 and 1,000
//!           local nodes: real install dirs (`releases/1`, `current`), a
//!           local deployer, `balancer = none`, a health check (tcp against
//!           one local listener; then `command = "true"`, a process per
//!           node) and a `[[gates.custom]]` command.
//! journal:  the PostgreSQL journal beside SQLite: append latency, command
//!           delivery from another process, takeover after a holder dies,
//!           50 fleets rolled at once by 50 processes (needs PostgreSQL).
//! serve:    `glidepath serve`: event-to-client latency over SSE during a
//!           demo rollout, RSS with 1,000 runs in the journal, and a
//!           200-node run's API answer and page load in headless Chromium.

mod engine;
mod health;
mod journal;
mod judge;
mod lint;
mod planner;
mod preflight;
mod rollback;
mod serve;

use std::path::PathBuf;

/// The release build of the glidepath binary, next to this example.
fn glidepath_bin() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("glidepath")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    if what == "engine" || what == "all" {
        engine::engine().await;
    }
    if what == "rollback" || what == "all" {
        rollback::rollback(5).await;
    }
    if what == "health" || what == "all" {
        health::health(100).await;
    }
    if what == "lint" || what == "all" {
        lint::lint_vs_squawk();
    }
    if what == "planner" || what == "all" {
        planner::planner();
    }
    if what == "preflight" || what == "all" {
        preflight::preflight().await;
    }
    if what == "judge" || what == "all" {
        judge::judge();
    }
    if what == "journal" || what == "all" {
        journal::journal().await;
    }
    if what == "all" || what.starts_with("serve") {
        serve::serve_figures(&what).await;
    }
    if what == "prometheus" || what == "all" {
        rollback::prometheus(5).await;
    }
}
