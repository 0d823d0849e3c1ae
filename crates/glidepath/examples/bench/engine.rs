//! engine: CPU time per node step of the executor + core + SQLite journal,
//! with drivers that return at once (no waits on a fleet).

use async_trait::async_trait;
use glidepath::demo::fleet::write_release;
use glidepath::demo::plans::LocalPlan;
use glidepath::drivers::*;
use glidepath::executor::Executor;
use glidepath::journal::{Journal, Store};
use glidepath::plan::Release;
use glidepath::report::Silent;
use glidepath_core::Observation;
use std::sync::Arc;
use std::time::Instant;

/// Drivers that return at once (also `serve`'s runs).
pub(crate) struct Instant0;

#[async_trait]
impl Balancer for Instant0 {
    async fn drain(&self, _: &Target) -> DResult<String> {
        Ok("drained".into())
    }
    async fn active(&self, _: &Target) -> DResult<u64> {
        Ok(0)
    }
    async fn enable(&self, _: &Target) -> DResult<String> {
        Ok("enabled".into())
    }
    async fn check_in_rotation(&self, _: &Target) -> DResult<String> {
        Ok("in".into())
    }
    async fn preflight(&self, _: &Target) -> DResult<String> {
        Ok("ok".into())
    }
}

#[async_trait]
impl Deployer for Instant0 {
    async fn current(&self, _: &Target) -> DResult<Option<String>> {
        Ok(Some("1".into()))
    }
    async fn stage(&self, _: &Target, _: &Release) -> DResult<String> {
        Ok("staged".into())
    }
    async fn switch(&self, _: &Target, v: &str) -> DResult<String> {
        Ok(format!("current → {v}"))
    }
    async fn has_release(&self, _: &Target, _: &str) -> DResult<bool> {
        Ok(true)
    }
}

#[async_trait]
impl ServiceControl for Instant0 {
    async fn restart(&self, _: &Target, _: &str) -> DResult<String> {
        Ok("restarted".into())
    }
    async fn check(&self, _: &Target, _: &str) -> DResult<String> {
        Ok("ok".into())
    }
}

#[async_trait]
impl HealthProbe for Instant0 {
    async fn probe(&self, _: &Target, _: Option<&str>) -> DResult<String> {
        Ok("200".into())
    }
}

#[async_trait]
impl MetricsSource for Instant0 {
    async fn start_window(&self, _: &[Target], _: &[Target]) -> DResult<String> {
        Ok("baseline".into())
    }
    async fn observe(&self, _: &[Target], _: &[Target]) -> Vec<Observation> {
        vec![]
    }
}

fn cpu_ms() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 * 1000.0 + tv.tv_usec as f64 / 1000.0;
    t(u.ru_utime) + t(u.ru_stime)
}

/// [`Instant0`] as every driver.
pub(crate) fn instant_drivers() -> Drivers {
    let d = Arc::new(Instant0);
    Drivers {
        balancer: d.clone(),
        deployer: d.clone(),
        service: d.clone(),
        health: d.clone(),
        metrics: Some(d),
    }
}

pub async fn engine() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = 200;
    let rel = write_release(dir.path(), &glidepath::demo::releases()[1]).unwrap();
    let path = LocalPlan::new(nodes, 10000)
        .write(dir.path(), &rel)
        .unwrap();
    let (plan, _) = glidepath::plan::load(&path).unwrap_or_else(|_| panic!("bench plan invalid"));
    let d = Arc::new(Instant0);
    let drivers = Drivers {
        balancer: d.clone(),
        deployer: d.clone(),
        service: d.clone(),
        health: d.clone(),
        metrics: Some(d),
    };
    let journal = Journal::open(&dir.path().join("glidepath.db")).unwrap();
    let (c0, w0) = (cpu_ms(), Instant::now());
    let r = Executor::start(plan.clone(), journal, drivers, Arc::new(Silent))
        .await
        .unwrap();
    let (cpu, wall) = (cpu_ms() - c0, w0.elapsed().as_secs_f64() * 1000.0);
    let events = Journal::open(&dir.path().join("glidepath.db"))
        .unwrap()
        .events(&r.run_id)
        .unwrap();
    let steps = events
        .iter()
        .filter(|e| matches!(e, glidepath_core::Event::Outcome { .. }))
        .count();
    println!(
        "engine: {nodes} nodes, {steps} node steps, outcome {}",
        r.outcome.as_str()
    );
    println!("  CPU per node step (executor + core + journal, drivers instant): {:.3} ms  (wall {:.3} ms/step incl. fsync)", cpu / steps as f64, wall / steps as f64);

    // the core alone: decide() + apply() per step
    let spec = plan.rollout_spec();
    let t0 = Instant::now();
    let mut state = glidepath_core::RunState::new(&spec);
    let mut decisions = 0u64;
    for e in &events {
        let _ = glidepath_core::decide(&spec, &state, e.at());
        state.apply(&spec, e);
        decisions += 1;
    }
    let per = t0.elapsed().as_secs_f64() * 1e6 / decisions as f64;
    println!("  core alone (decide + apply, {nodes}-node state): {per:.1} µs per event");
}
