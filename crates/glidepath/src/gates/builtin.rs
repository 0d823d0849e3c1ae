//! The built-in gates every run passes, whatever the plan declares: the
//! artifact's checksum, a rollback target on every node, the balancer,
//! permissions, health, and the metrics source. They cannot be forced.
//! The nodes are checked concurrently (at most [`PREFLIGHT_CONCURRENCY`] at
//! a time); the results are in node-name order, as if checked one by one.
//!
//! They see the plan only as [`BuiltinInputs`] (built by `plan`, in
//! `plan/gates.rs`) and the fleet only through `drivers`.

use super::{GateResult, Verdict};
use crate::artifact::artifact_sha256;
use crate::config::Release;
use crate::drivers::{Drivers, Target};
use std::collections::BTreeMap;

/// How many nodes preflight checks at once.
pub const PREFLIGHT_CONCURRENCY: usize = 32;

/// What the built-in gates need of a plan.
#[derive(Debug, Clone)]
pub struct BuiltinInputs {
    /// The release to deploy (its artifact and reviewed sha256).
    pub release: Release,
    /// The `[rollback]` artifact, if the plan gives one.
    pub rollback: Option<Release>,
    /// `[deploy] check`: the command proving the restart target.
    pub check: Option<String>,
    /// Every node, in name order.
    pub targets: Vec<Target>,
    /// How many balancers the plan declares (`kind = "none"` is none).
    pub balancers: usize,
}

/// What one node's built-in checks found: each failure with whether it is
/// the infrastructure's (unreachable).
#[derive(Debug, Default)]
struct NodeFindings {
    /// The balancer does not answer for it (nothing else was checked).
    balancer: Option<(String, bool)>,
    /// No rollback target (checking stopped there).
    target: Option<(String, bool)>,
    perms: Vec<(String, bool)>,
    /// Its current release is restored from the `[rollback]` artifact if needed.
    provided: bool,
    health: Option<(String, bool)>,
    /// Its current release, when every check reached it.
    current: Option<String>,
    /// The checks that reached it (a failure stops the next ones).
    reached: Reached,
}

/// Which of a node's checks were carried out.
#[derive(Debug, Default, Clone, Copy)]
struct Reached {
    target: bool,
    perms: bool,
    health: bool,
}

/// The checks of one node, in the order a person would run them; a
/// failure that makes the next ones meaningless stops there.
async fn check_node(
    drivers: Drivers,
    t: Target,
    check: Option<String>,
    rollback_version: Option<String>,
) -> NodeFindings {
    let mut f = NodeFindings::default();
    if let Err(e) = drivers.balancer.preflight(&t).await {
        f.balancer = Some((format!("{}: {e}", t.name), e.is_infra()));
        // the balancer may not answer because the node itself is down (a
        // balancer on the node, like the demo's): a node that does not
        // answer its health check either is unhealthy before the run, not
        // an infrastructure outage
        if e.is_infra() {
            f.reached.health = true;
            if let Err(h) = drivers.health.probe(&t, None).await {
                f.health = Some((
                    format!("{} is unhealthy before the rollout ({h})", t.name),
                    false,
                ));
            }
        }
        return f;
    }
    match drivers.balancer.out_before(&t).await {
        Ok(None) => {}
        Ok(Some(why)) => {
            // someone took it out (maintenance, a failed run kept it out):
            // the rollout would put it back without their say
            f.health = Some((
                format!(
                    "{} is out of rotation before the rollout ({why}); put it back in rotation once it is fine, or leave it out of the plan",
                    t.name
                ),
                false,
            ));
            f.reached.health = true;
            return f;
        }
        Err(e) => {
            f.balancer = Some((format!("{}: {e}", t.name), e.is_infra()));
            return f;
        }
    }
    f.reached.target = true;
    let cur = match drivers.deployer.current(&t).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            f.target = Some((
                format!(
                    "{} has no current release in {}: nothing to roll back to",
                    t.name,
                    t.install_dir.display()
                ),
                false,
            ));
            return f;
        }
        Err(e) => {
            f.target = Some((format!("{}: {e}", t.name), e.is_infra()));
            return f;
        }
    };
    // `{previous}` at preflight: the release the node runs now
    let t = Target {
        previous: cur.clone(),
        ..t
    };
    f.reached.perms = true;
    if let Err(e) = drivers.deployer.check_writable(&t).await {
        f.perms.push((format!("{}: {e}", t.name), e.is_infra()));
    }
    if let Some(c) = &check {
        if let Err(e) = drivers.service.check(&t, c).await {
            f.perms.push((
                format!("{}: restart target check failed: {e}", t.name),
                e.is_infra(),
            ));
        }
    }
    if !drivers
        .deployer
        .has_release(&t, &cur)
        .await
        .unwrap_or(false)
    {
        if rollback_version.as_deref() == Some(cur.as_str()) {
            f.provided = true;
        } else {
            f.target = Some((format!("{}: the current release {cur} is missing from releases/ (provide it with [rollback] artifact, version and sha256)", t.name), false));
            return f;
        }
    }
    f.reached.health = true;
    if let Err(e) = drivers.health.probe(&t, Some(&cur)).await {
        f.health = Some((
            format!("{} is unhealthy before the rollout ({e})", t.name),
            e.is_infra(),
        ));
    }
    f.current = Some(cur);
    f
}

/// Each node's findings, in the order of `targets`, checking at most
/// [`PREFLIGHT_CONCURRENCY`] nodes at once.
async fn check_nodes(inputs: &BuiltinInputs, drivers: &Drivers) -> Vec<NodeFindings> {
    let targets = &inputs.targets;
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(PREFLIGHT_CONCURRENCY));
    let mut set = tokio::task::JoinSet::new();
    for (i, t) in targets.iter().cloned().enumerate() {
        let permit = sem.clone().acquire_owned().await.expect("never closed");
        let (drivers, check) = (drivers.clone(), inputs.check.clone());
        let rollback_version = inputs.rollback.as_ref().map(|r| r.version.clone());
        set.spawn(async move {
            let f = check_node(drivers, t, check, rollback_version).await;
            drop(permit);
            (i, f)
        });
    }
    let mut found: Vec<Option<NodeFindings>> = targets.iter().map(|_| None).collect();
    while let Some(res) = set.join_next().await {
        match res {
            Ok((i, f)) => found[i] = Some(f),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a preflight check was cancelled: {e}"),
        }
    }
    found
        .into_iter()
        .map(|f| f.expect("every node checked"))
        .collect()
}

/// The built-in gates every run passes: artifact checksum, a rollback
/// target on every node, the balancer, health, and the metrics source.
/// Returns the results and each node's current release.
pub async fn builtin_checks(
    inputs: &BuiltinInputs,
    drivers: &Drivers,
) -> (Vec<GateResult>, BTreeMap<String, Option<String>>) {
    let mut out = Vec::new();
    let builtin = |mut g: GateResult, infra: bool| {
        g.builtin = true;
        g.infra = infra;
        g
    };
    let rel = &inputs.release;
    out.push(match artifact_sha256(&rel.artifact) {
        Ok(sum) if sum == rel.sha256 => builtin(GateResult::new("artifact", Verdict::Pass, format!("sha256 {}… matches", &sum[..12]), None), false),
        Ok(sum) => builtin(
            GateResult::new(
                "artifact",
                Verdict::Fail,
                format!("artifact {} has sha256 {sum}, the plan says {}: refusing to deploy an artifact that is not the one reviewed", rel.artifact.display(), rel.sha256),
                Some("rebuild or re-download the reviewed artifact, or review this one and put its sha256 in the plan"),
            ),
            false,
        ),
        Err(e) => builtin(GateResult::new("artifact", Verdict::Fail, format!("cannot read artifact {}: {e}", rel.artifact.display()), None), false),
    });
    if let Some(rb) = &inputs.rollback {
        match artifact_sha256(&rb.artifact) {
            Ok(sum) if sum == rb.sha256 => {}
            Ok(sum) => out.push(builtin(
                GateResult::new(
                    "artifact",
                    Verdict::Fail,
                    format!(
                        "the [rollback] artifact {} has sha256 {sum}, the plan says {}",
                        rb.artifact.display(),
                        rb.sha256
                    ),
                    Some("point [rollback] at the reviewed last-known-good artifact"),
                ),
                false,
            )),
            Err(e) => out.push(builtin(
                GateResult::new(
                    "artifact",
                    Verdict::Fail,
                    format!(
                        "cannot read the [rollback] artifact {}: {e}",
                        rb.artifact.display()
                    ),
                    None,
                ),
                false,
            )),
        }
    }
    let mut before = BTreeMap::new();
    let (mut lb, mut targets_bad, mut health_bad) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lb_infra, mut target_infra, mut health_infra) = (true, true, true);
    let (mut perms, mut perm_infra) = (Vec::new(), true);
    let mut provided: Vec<String> = Vec::new();
    let (mut reached_target, mut reached_perms, mut reached_health) = (0, 0, 0);
    let all = &inputs.targets;
    for (t, f) in all.iter().zip(check_nodes(inputs, drivers).await) {
        reached_target += usize::from(f.reached.target);
        reached_perms += usize::from(f.reached.perms);
        reached_health += usize::from(f.reached.health);
        if let Some((m, infra)) = f.balancer {
            lb_infra &= infra;
            lb.push(m);
        }
        if let Some((m, infra)) = f.target {
            target_infra &= infra;
            targets_bad.push(m);
        }
        for (m, infra) in f.perms {
            perm_infra &= infra;
            perms.push(m);
        }
        if f.provided {
            provided.push(t.name.clone());
        }
        if let Some((m, infra)) = f.health {
            health_infra &= infra;
            health_bad.push(m);
        }
        if let Some(cur) = f.current {
            before.insert(t.name.clone(), Some(cur));
        }
    }
    let n = all.len();
    // a gate that reached no node checked nothing: it is skipped, with why
    let skipped = |gate: &str, why: String| {
        builtin(GateResult::new(gate, Verdict::Skipped, why, None), false)
    };
    let why_not = |reached: usize| {
        if n == 0 {
            "the plan has 0 nodes".to_string()
        } else if reached == 0 {
            format!("not checked on any of the {n} node(s): an earlier check of each failed")
        } else {
            String::new()
        }
    };
    let unreached = |reached: usize| {
        if reached < n {
            format!(
                "; {} node(s) not checked (an earlier check failed)",
                n - reached
            )
        } else {
            String::new()
        }
    };
    out.push(if !lb.is_empty() {
        builtin(
            GateResult::new(
                "balancer",
                Verdict::Fail,
                lb.join("; "),
                Some("check the balancer's address/socket and that it knows each node"),
            ),
            lb_infra,
        )
    } else if inputs.balancers == 0 {
        skipped(
            "balancer",
            "no balancer (kind = \"none\"): nothing drains or counts connections".into(),
        )
    } else if n == 0 {
        skipped("balancer", why_not(0))
    } else {
        builtin(
            GateResult::new(
                "balancer",
                Verdict::Pass,
                format!("{} balancer(s) answer for all {n} nodes", inputs.balancers),
                None,
            ),
            false,
        )
    });
    out.push(if !targets_bad.is_empty() {
        builtin(GateResult::new("rollback-target", Verdict::Fail, targets_bad.join("; "), Some("a fleet glidepath never deployed: `glidepath adopt PLAN` records what each node runs today as its first release (releases/<version> + current)")), target_infra)
    } else if before.is_empty() {
        skipped("rollback-target", why_not(reached_target))
    } else if before.len() == n
        && before
            .iter()
            .all(|(_, v)| v.as_deref() == Some(inputs.release.version.as_str()))
    {
        // a second run of the release the fleet runs: nothing would change,
        // and a rollback would "restore" the same release
        builtin(
            GateResult::new(
                "rollback-target",
                Verdict::Fail,
                format!(
                    "every node already runs {}: nothing to roll out, and a rollback would have no other release to return to",
                    inputs.release.version
                ),
                Some("roll out a new release (`glidepath run PLAN --release V --artifact A --sha256 H`); `glidepath history` shows the run that deployed this one"),
            ),
            false,
        )
    } else {
        let versions: Vec<String> = before.iter().map(|(n, v)| format!("{n}={}", v.as_deref().unwrap_or("-"))).collect();
        let more = unreached(reached_target);
        builtin(GateResult::new("rollback-target", Verdict::Pass, if provided.is_empty() {
                    format!("last-known-good releases: {}{more}", versions.join(" "))
                } else {
                    format!("last-known-good releases: {} (restored from the [rollback] artifact on {} if needed){more}", versions.join(" "), provided.join(", "))
                }, None), false)
    });
    out.push(if !perms.is_empty() {
        builtin(
            GateResult::new(
                "permissions",
                Verdict::Fail,
                perms.join("; "),
                Some("fix ownership/sudo rules or the unit name on the node before the rollout"),
            ),
            perm_infra,
        )
    } else if reached_perms == 0 {
        skipped("permissions", why_not(reached_perms))
    } else {
        let what = if inputs.check.is_some() {
            "install dirs writable, restart target checked"
        } else {
            "install dirs writable (add [deploy] check = … to prove the restart target)"
        };
        builtin(
            GateResult::new(
                "permissions",
                Verdict::Pass,
                format!(
                    "{what} on {reached_perms} node(s){}",
                    unreached(reached_perms)
                ),
                None,
            ),
            false,
        )
    });
    out.push(if !health_bad.is_empty() {
        builtin(
            GateResult::new(
                "health",
                Verdict::Fail,
                health_bad.join("; "),
                Some("fix the fleet first: a rollout starts from a healthy fleet"),
            ),
            health_infra,
        )
    } else if reached_health == 0 {
        skipped("health", why_not(reached_health))
    } else {
        builtin(
            GateResult::new(
                "health",
                Verdict::Pass,
                format!(
                    "{reached_health} of {n} nodes healthy{}",
                    unreached(reached_health)
                ),
                None,
            ),
            false,
        )
    });
    if let Some(m) = &drivers.metrics {
        out.push(match m.preflight(all).await {
            Ok(d) => builtin(GateResult::new("metrics", Verdict::Pass, d, None), false),
            Err(e) => builtin(
                GateResult::new(
                    "metrics",
                    Verdict::Fail,
                    format!("metrics source: {e}"),
                    None,
                ),
                e.is_infra(),
            ),
        });
    } else {
        out.push(skipped(
            "metrics",
            "no [sli] section: the run watches no metrics".into(),
        ));
    }
    (out, before)
}

/// The release every node runs, when they all run the same one.
pub fn same_release(before: &BTreeMap<String, Option<String>>) -> Option<String> {
    let mut it = before.values().flatten();
    let first = it.next()?.clone();
    it.all(|v| *v == first).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Release;
    use crate::drivers::{Balancer, DResult, Deployer, HealthProbe, ServiceControl};
    use async_trait::async_trait;
    use std::sync::Arc;
    use std::time::Duration;

    /// Nodes named `*-bare` have no current release; every health probe
    /// waits until `healthy` probes wait at once, which only happens when
    /// the nodes are checked concurrently.
    struct Fake {
        barrier: tokio::sync::Barrier,
    }

    #[async_trait]
    impl Balancer for Fake {
        async fn drain(&self, _: &Target) -> DResult<String> {
            Ok(String::new())
        }
        async fn active(&self, _: &Target) -> DResult<u64> {
            Ok(0)
        }
        async fn enable(&self, _: &Target) -> DResult<String> {
            Ok(String::new())
        }
        async fn check_in_rotation(&self, _: &Target) -> DResult<String> {
            Ok(String::new())
        }
        async fn preflight(&self, _: &Target) -> DResult<String> {
            Ok(String::new())
        }
    }

    #[async_trait]
    impl Deployer for Fake {
        async fn current(&self, t: &Target) -> DResult<Option<String>> {
            Ok((!t.name.ends_with("-bare")).then(|| "1".to_string()))
        }
        async fn stage(&self, _: &Target, _: &Release) -> DResult<String> {
            Ok(String::new())
        }
        async fn switch(&self, _: &Target, _: &str) -> DResult<String> {
            Ok(String::new())
        }
        async fn has_release(&self, _: &Target, _: &str) -> DResult<bool> {
            Ok(true)
        }
        async fn check_writable(&self, _: &Target) -> DResult<String> {
            Ok(String::new())
        }
    }

    #[async_trait]
    impl ServiceControl for Fake {
        async fn restart(&self, _: &Target, _: &str) -> DResult<String> {
            Ok(String::new())
        }
        async fn check(&self, _: &Target, _: &str) -> DResult<String> {
            Ok(String::new())
        }
    }

    #[async_trait]
    impl HealthProbe for Fake {
        async fn probe(&self, t: &Target, _: Option<&str>) -> DResult<String> {
            match tokio::time::timeout(Duration::from_secs(5), self.barrier.wait()).await {
                Ok(_) => Ok("200".into()),
                Err(_) => Err(crate::drivers::DriverError::Failed(format!(
                    "{} was probed alone: the nodes are checked one by one",
                    t.name
                ))),
            }
        }
    }

    #[tokio::test]
    async fn nodes_are_checked_concurrently_and_reported_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.bin"), b"binary 2").unwrap();
        let sha = artifact_sha256(&dir.path().join("app.bin")).unwrap();
        // plan order is not name order
        let names = ["n3", "z-bare", "n1", "n4", "a-bare", "n2"];
        let nodes: String = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "  {{ name = \"{n}\", address = \"127.0.0.1:{}\" }},\n",
                    9001 + i
                )
            })
            .collect();
        let src = format!(
            "[release]\nversion = \"2\"\nartifact = \"app.bin\"\nsha256 = \"{sha}\"\n[fleet]\nname = \"t\"\nnodes = [\n{nodes}]\n[strategy]\ncanary = [\"n1\"]\nbatch_size = 2\n[balancer]\nkind = \"none\"\n[deploy]\nkind = \"local\"\ninstall_dir = \"nodes/{{node}}\"\nrestart = \"true\"\n[health]\ntcp = \"{{address}}\"\n[rollback]\non = [\"health\"]\n"
        );
        let path = dir.path().join("plan.toml");
        std::fs::write(&path, src).unwrap();
        let (plan, _) = crate::plan::load(&path).unwrap();
        let fake = Arc::new(Fake {
            barrier: tokio::sync::Barrier::new(4),
        });
        let drivers = Drivers {
            balancer: fake.clone(),
            deployer: fake.clone(),
            service: fake.clone(),
            health: fake,
            metrics: None,
        };
        let (results, before) = builtin_checks(&BuiltinInputs::of(&plan), &drivers).await;
        let gate = |g: &str| results.iter().find(|r| r.gate == g).unwrap();
        assert_eq!(gate("health").verdict, Verdict::Pass, "{results:#?}");
        assert_eq!(
            gate("health").reason,
            "4 of 6 nodes healthy; 2 node(s) not checked (an earlier check failed)"
        );
        let target = gate("rollback-target");
        assert_eq!(target.verdict, Verdict::Fail);
        let a = target.reason.find("a-bare has no current release").unwrap();
        let z = target.reason.find("z-bare has no current release").unwrap();
        assert!(a < z, "in name order: {}", target.reason);
        assert_eq!(before.keys().collect::<Vec<_>>(), ["n1", "n2", "n3", "n4"]);
    }
}
