//! The drivers a plan asks for: its balancer(s), deployer, service
//! control, health probe and metrics source, built from its sections (the
//! one place `plan` meets `drivers`; the drivers themselves only know the
//! config types of `crate::config`).

use super::Plan;
use crate::config::{BalancerCfg, DeployKind, SliSource};
use crate::drivers::*;
use std::sync::Arc;

impl Drivers {
    /// The real drivers a plan asks for.
    pub fn for_plan(plan: &Plan) -> Drivers {
        let balancer: Arc<dyn Balancer> = match plan.balancers.as_slice() {
            [one] => balancer(one, plan),
            many => Arc::new(MultiBalancer(
                many.iter().map(|b| balancer(b, plan)).collect(),
            )),
        };
        let d = &plan.deploy;
        let (deployer, service): (Arc<dyn Deployer>, Arc<dyn ServiceControl>) = match &d.kind {
            DeployKind::Local => (
                Arc::new(
                    LocalDeployer::new(d.keep_releases)
                        .with_timeout(d.command_timeout)
                        .with_releases(plan.known_releases()),
                ),
                Arc::new(CommandService::new(
                    &d.restart,
                    d.restart_timeout,
                    plan.dir.clone(),
                )),
            ),
            DeployKind::Command {
                current,
                stage,
                switch,
            } => (
                Arc::new(CommandDeployer {
                    current: current.clone(),
                    stage: stage.clone(),
                    switch: switch.clone(),
                    timeout: d.command_timeout,
                    plan_dir: plan.dir.clone(),
                }),
                Arc::new(CommandService::new(
                    &d.restart,
                    d.restart_timeout,
                    plan.dir.clone(),
                )),
            ),
            DeployKind::Ssh {
                host,
                user,
                port,
                identity_file,
                options,
            } => {
                let ssh = Arc::new(SshDeployer {
                    ssh: Ssh::new(
                        host.clone(),
                        user.clone(),
                        *port,
                        identity_file.clone(),
                        options.clone(),
                        d.command_timeout,
                    ),
                    keep: d.keep_releases,
                    known: plan.known_releases(),
                });
                let service = Arc::new(SshService {
                    ssh: ssh.clone(),
                    template: d.restart.clone(),
                    timeout: d.restart_timeout,
                    plan_dir: plan.dir.clone(),
                });
                (ssh, service)
            }
        };
        Drivers {
            balancer,
            deployer,
            service,
            health: health(plan),
            metrics: plan.sli.as_ref().map(|s| {
                let source = match &s.source {
                    SliSource::Scrape { url } => Arc::new(
                        ScrapeSource::new(url, s.timeout, s.checks.clone()).with_recent(s.recent),
                    ) as Arc<dyn MetricsSource>,
                    SliSource::Prometheus { url, auth } => Arc::new(
                        PrometheusSource::new(url, auth.clone(), s.timeout, s.checks.clone())
                            .with_recent(s.recent),
                    )
                        as Arc<dyn MetricsSource>,
                };
                if s.probe_checks.is_empty() {
                    source
                } else {
                    // the probe checks run beside the source's own
                    Arc::new(crate::probe::WithProbeChecks {
                        inner: source,
                        checks: s.probe_checks.clone(),
                        timeout: s.timeout,
                        version: plan.release.version.clone(),
                        plan_dir: plan.dir.clone(),
                    }) as Arc<dyn MetricsSource>
                }
            }),
        }
    }
}

/// The health probe, wrapped with `[health] probe` when the plan has one.
fn health(plan: &Plan) -> Arc<dyn HealthProbe> {
    let inner = Arc::new(Health::new(plan.health.clone(), plan.dir.clone()));
    match &plan.health.probe {
        None => inner,
        Some(p) => Arc::new(crate::probe::WithProbe {
            inner,
            probe: p.clone(),
            timeout: plan.health.timeout,
            plan_dir: plan.dir.clone(),
        }),
    }
}

fn balancer(cfg: &BalancerCfg, plan: &Plan) -> Arc<dyn Balancer> {
    match cfg {
        BalancerCfg::None => Arc::new(NoBalancer),
        BalancerCfg::Http {
            drain,
            ready,
            state,
            timeout,
        } => Arc::new(HttpBalancer::new(drain, ready, state, *timeout)),
        BalancerCfg::Haproxy {
            socket,
            address,
            backend,
            servers,
            frontend,
            timeout,
        } => Arc::new(HaproxyBalancer::new(
            socket.as_ref().map(|s| plan.dir.join(s)),
            address.clone(),
            backend.clone(),
            servers.clone(),
            frontend.clone(),
            *timeout,
        )),
        BalancerCfg::Command {
            drain,
            enable,
            active,
            check,
            timeout,
        } => Arc::new(CommandBalancer {
            drain: drain.clone(),
            enable: enable.clone(),
            active: active.clone(),
            check: check.clone(),
            timeout: *timeout,
            plan_dir: plan.dir.clone(),
        }),
    }
}
