//! The upgrade planner: worked scenarios, and property tests against a
//! brute-force search and an independent compatibility check.

use glidepath_core::compat::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

fn rel(v: &str, protos: &[(&str, u32, u32)]) -> ReleaseSpec {
    ReleaseSpec {
        version: v.into(),
        protocols: protos
            .iter()
            .map(|(a, min, max)| {
                (
                    a.to_string(),
                    Range {
                        min: *min,
                        max: *max,
                    },
                )
            })
            .collect(),
        required_stop: false,
        capabilities: BTreeSet::new(),
    }
}

fn comp(name: &str, talks: &[&str], releases: Vec<ReleaseSpec>) -> ComponentSpec {
    ComponentSpec {
        name: name.into(),
        releases,
        stateful: false,
        talks_to: talks.iter().map(|s| s.to_string()).collect(),
    }
}

fn state(sys: &System, at: &[(&str, &[&str])]) -> State {
    let mut versions = vec![0u64; sys.spec.components.len()];
    for (c, vs) in at {
        let ci = sys.component(c).unwrap();
        for v in *vs {
            versions[ci] |= 1 << sys.release(ci, v).unwrap();
        }
    }
    State { versions, flags: 0 }
}

fn target(sys: &System, to: &[(&str, &str)], flags: &[&str]) -> Target {
    Target {
        releases: to
            .iter()
            .map(|(c, v)| {
                let ci = sys.component(c).unwrap();
                (ci, sys.release(ci, v).unwrap())
            })
            .collect(),
        flags: flags.iter().map(|f| sys.capability(f).unwrap()).collect(),
    }
}

fn stages(sys: &System, start: &State, t: &Target) -> Vec<String> {
    let moves = sys
        .plan(start, t, 100_000)
        .unwrap_or_else(|u| panic!("{}", u.reason));
    sys.explain(start, &moves)
        .into_iter()
        .map(|s| match s {
            Stage::Upgrade { component, to, .. } => format!("{component}→{to}"),
            Stage::EnableFlag { flag, .. } => format!("flag:{flag}"),
        })
        .collect()
}

/// Server, clients and agents with a breaking protocol change on both axes.
fn bridge_system() -> System {
    System::new(SystemSpec {
        components: vec![
            comp(
                "server",
                &[],
                vec![
                    rel("1.0", &[("api", 1, 1), ("agent", 1, 1)]),
                    rel("1.5", &[("api", 1, 2), ("agent", 1, 2)]),
                    rel("2.0", &[("api", 2, 2), ("agent", 2, 2)]),
                ],
            ),
            comp(
                "cli",
                &["server"],
                vec![rel("1.0", &[("api", 1, 1)]), rel("2.0", &[("api", 2, 2)])],
            ),
            comp(
                "agent",
                &["server"],
                vec![
                    rel("1.0", &[("agent", 1, 1)]),
                    rel("2.0", &[("agent", 2, 2)]),
                ],
            ),
        ],
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn bridge_upgrade_server_first_then_clients_and_agents_then_server_again() {
    let sys = bridge_system();
    let start = state(
        &sys,
        &[("server", &["1.0"]), ("cli", &["1.0"]), ("agent", &["1.0"])],
    );
    let t = target(
        &sys,
        &[("server", "2.0"), ("cli", "2.0"), ("agent", "2.0")],
        &[],
    );
    let s = stages(&sys, &start, &t);
    assert_eq!(s.len(), 4, "{s:?}");
    assert_eq!(s[0], "server→1.5");
    assert_eq!(s[3], "server→2.0");
    let moves = sys.plan(&start, &t, 100_000).unwrap();
    let explained = sys.explain(&start, &moves);
    let Stage::Upgrade { why, .. } = &explained[0] else {
        panic!()
    };
    assert!(
        why.contains("share no") && why.contains("protocol version"),
        "{why}"
    );
    // the bridge alone is also a valid target
    assert_eq!(
        stages(&sys, &start, &target(&sys, &[("agent", "2.0")], &[])),
        ["server→1.5", "agent→2.0"]
    );
}

#[test]
fn agent_skew_policy() {
    let versions = ["1.28", "1.29", "1.30", "1.31"];
    let mk = |older| {
        System::new(SystemSpec {
            components: vec![
                comp(
                    "apiserver",
                    &[],
                    versions.iter().map(|v| rel(v, &[("kube", 1, 1)])).collect(),
                ),
                comp(
                    "kubelet",
                    &["apiserver"],
                    versions.iter().map(|v| rel(v, &[("kube", 1, 1)])).collect(),
                ),
            ],
            skew: vec![SkewRule {
                component: "kubelet".into(),
                anchor: "apiserver".into(),
                max_newer: 0,
                max_older: older,
            }],
            ..Default::default()
        })
        .unwrap()
    };
    let sys = mk(3);
    let start = state(&sys, &[("apiserver", &["1.28"]), ("kubelet", &["1.28"])]);
    let t = target(&sys, &[("apiserver", "1.31"), ("kubelet", "1.31")], &[]);
    assert_eq!(
        stages(&sys, &start, &t),
        ["apiserver→1.31", "kubelet→1.31"],
        "3 minors of skew: the server jumps"
    );
    let sys = mk(1);
    assert_eq!(
        stages(&sys, &start, &t),
        [
            "apiserver→1.29",
            "kubelet→1.29",
            "apiserver→1.30",
            "kubelet→1.30",
            "apiserver→1.31",
            "kubelet→1.31"
        ],
        "1 minor of skew: they leapfrog"
    );
    // the kubelet never goes first
    let err = sys.check_move(&start, 1, 1).unwrap_err();
    assert!(
        err.contains(
            "kubelet 1.29 would be 1 release(s) newer than apiserver 1.28 (at most 0 allowed)"
        ),
        "{err}"
    );
}

#[test]
fn required_stop_and_stateful_component() {
    let mut db = comp(
        "db",
        &[],
        vec![
            rel("1.0", &[("sql", 1, 1)]),
            rel("1.9", &[("sql", 1, 1)]),
            rel("2.0", &[("sql", 1, 1)]),
            rel("2.1", &[("sql", 1, 1)]),
        ],
    );
    db.releases[1].required_stop = true;
    let sys = System::new(SystemSpec {
        components: vec![db.clone()],
        ..Default::default()
    })
    .unwrap();
    let start = state(&sys, &[("db", &["1.0"])]);
    assert_eq!(
        stages(&sys, &start, &target(&sys, &[("db", "2.1")], &[])),
        ["db→1.9", "db→2.1"]
    );
    assert!(sys
        .check_move(&start, 0, 3)
        .unwrap_err()
        .contains("db 1.9 is a required stop"));
    db.stateful = true;
    db.releases[1].required_stop = false;
    let sys = System::new(SystemSpec {
        components: vec![db],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        stages(&sys, &start, &target(&sys, &[("db", "2.1")], &[])),
        ["db→1.9", "db→2.0", "db→2.1"]
    );
}

#[test]
fn capability_flag_is_a_separate_step_after_the_binaries() {
    let mut server = comp(
        "server",
        &[],
        vec![rel("1.0", &[("p", 1, 1)]), rel("2.0", &[("p", 1, 1)])],
    );
    let mut agent = comp(
        "agent",
        &["server"],
        vec![rel("1.0", &[("p", 1, 1)]), rel("2.0", &[("p", 1, 1)])],
    );
    server.releases[1].capabilities.insert("fast-sync".into());
    agent.releases[1].capabilities.insert("fast-sync".into());
    let sys = System::new(SystemSpec {
        components: vec![server, agent],
        capabilities: vec![CapabilitySpec {
            name: "fast-sync".into(),
            members: vec!["server".into(), "agent".into()],
        }],
        ..Default::default()
    })
    .unwrap();
    let start = state(&sys, &[("server", &["1.0"]), ("agent", &["1.0"])]);
    let s = stages(
        &sys,
        &start,
        &target(&sys, &[("server", "2.0"), ("agent", "2.0")], &["fast-sync"]),
    );
    assert_eq!(s.len(), 3);
    assert_eq!(s[2], "flag:fast-sync");
    // only the flag asked: the binaries move first anyway
    let s = stages(&sys, &start, &target(&sys, &[], &["fast-sync"]));
    assert_eq!(s.last().unwrap(), "flag:fast-sync");
}

#[test]
fn impossible_target_says_which_pair_breaks_and_what_bridge_is_missing() {
    let sys = System::new(SystemSpec {
        components: vec![
            comp(
                "server",
                &[],
                vec![
                    rel("1.0", &[("agent", 1, 1)]),
                    rel("1.1", &[("agent", 1, 1)]),
                ],
            ),
            comp(
                "agent",
                &["server"],
                vec![
                    rel("1.0", &[("agent", 1, 1)]),
                    rel("2.0", &[("agent", 2, 2)]),
                ],
            ),
        ],
        ..Default::default()
    })
    .unwrap();
    let start = state(&sys, &[("server", &["1.0"]), ("agent", &["1.0"])]);
    let err = sys
        .plan(&start, &target(&sys, &[("agent", "2.0")], &[]), 100_000)
        .unwrap_err();
    assert!(
        err.reason
            .contains("no release of server (from 1.0 on) can talk to agent 2.0"),
        "{}",
        err.reason
    );
    assert!(
        err.reason
            .contains("share no `agent` protocol version (agent speaks 2, server speaks 1)"),
        "{}",
        err.reason
    );
    assert!(
        err.reason.contains("A bridge release is missing"),
        "{}",
        err.reason
    );
}

#[test]
fn mixed_state_during_a_stage_is_checked() {
    // 1.0 and 2.0 of the server cannot both talk to the agent at 1.0 … but
    // after the move only 2.0 runs: the mixed state still forbids it
    let sys = System::new(SystemSpec {
        components: vec![
            comp(
                "server",
                &[],
                vec![rel("1.0", &[("p", 1, 1)]), rel("2.0", &[("p", 2, 2)])],
            ),
            comp(
                "agent",
                &["server"],
                vec![rel("1.0", &[("p", 1, 2)]), rel("1.5", &[("p", 1, 1)])],
            ),
        ],
        ..Default::default()
    })
    .unwrap();
    let start = state(&sys, &[("server", &["1.0"]), ("agent", &["1.0", "1.5"])]);
    let err = sys.check_move(&start, 0, 1).unwrap_err();
    assert!(err.contains("while server rolls from 1.0 to 2.0"), "{err}");
}

// ---------- property tests ----------

/// An independent check of one state: every communicating pair of versions
/// in use shares a version on every common axis (and has one), every skew
/// rule holds, every flag's members support it.
fn valid(
    spec: &SystemSpec,
    inuse: &BTreeMap<String, BTreeSet<String>>,
    flags: &BTreeSet<String>,
) -> bool {
    let find = |c: &str, v: &str| {
        spec.components
            .iter()
            .find(|x| x.name == c)
            .unwrap()
            .releases
            .iter()
            .find(|r| r.version == v)
            .unwrap()
            .clone()
    };
    for c in &spec.components {
        for t in &c.talks_to {
            for va in &inuse[&c.name] {
                for vb in &inuse[t] {
                    let (a, b) = (find(&c.name, va), find(t, vb));
                    let common: Vec<&String> = a
                        .protocols
                        .keys()
                        .filter(|k| b.protocols.contains_key(*k))
                        .collect();
                    if common.is_empty() {
                        return false;
                    }
                    for k in common {
                        let (x, y) = (a.protocols[k], b.protocols[k]);
                        if x.max < y.min || y.max < x.min {
                            return false;
                        }
                    }
                }
            }
        }
    }
    for r in &spec.skew {
        // position along the anchor's releases (versions here are 1.N)
        let anchor: Vec<u64> = spec
            .components
            .iter()
            .find(|c| c.name == r.anchor)
            .unwrap()
            .releases
            .iter()
            .map(|x| x.version[2..].parse().unwrap())
            .collect();
        let pos = |v: &str| {
            anchor
                .iter()
                .filter(|x| **x <= v[2..].parse::<u64>().unwrap())
                .count() as i64
        };
        for va in &inuse[&r.component] {
            for vb in &inuse[&r.anchor] {
                let d = pos(va) - pos(vb);
                if d > r.max_newer as i64 || -d > r.max_older as i64 {
                    return false;
                }
            }
        }
    }
    for f in flags {
        let cap = spec.capabilities.iter().find(|c| &c.name == f).unwrap();
        for m in &cap.members {
            if inuse[m]
                .iter()
                .any(|v| !find(m, v).capabilities.contains(f))
            {
                return false;
            }
        }
    }
    true
}

/// Breadth-first over every upgrade and flag: the true shortest length.
fn brute_force(sys: &System, start: &State, t: &Target) -> Option<usize> {
    let goal = |s: &State| {
        t.releases.iter().all(|&(c, r)| s.versions[c] == 1 << r)
            && t.flags.iter().all(|&k| s.flags & (1 << k) != 0)
    };
    let mut seen = HashSet::new();
    let mut q = VecDeque::from([(start.clone(), 0)]);
    seen.insert(start.clone());
    while let Some((s, d)) = q.pop_front() {
        if goal(&s) {
            return Some(d);
        }
        let mut next = Vec::new();
        for (c, comp) in sys.spec.components.iter().enumerate() {
            for r in 0..comp.releases.len() {
                next.extend(sys.check_move(&s, c, r).ok());
            }
        }
        for k in 0..sys.spec.capabilities.len() {
            if s.flags & (1 << k) == 0 {
                next.extend(sys.apply(&s, Move::Flag(k)).ok());
            }
        }
        for n in next {
            if seen.insert(n.clone()) {
                q.push_back((n, d + 1));
            }
        }
    }
    None
}

fn arb_system() -> impl Strategy<Value = (SystemSpec, Vec<u64>, Vec<(usize, usize)>, bool)> {
    (2usize..=3, proptest::collection::vec(any::<u64>(), 40)).prop_map(|(n, r)| {
        let mut rng = r.into_iter().cycle();
        let mut next = move |m: u64| rng.next().unwrap() % m;
        let axes = ["a", "b"];
        let mut comps = Vec::new();
        for c in 0..n {
            let nrel = 2 + next(3) as usize;
            let mut releases = Vec::new();
            for i in 0..nrel {
                let mut protocols = BTreeMap::new();
                // protocol versions grow with releases: later ones drop old versions
                for ax in axes.iter().take(1 + next(2) as usize) {
                    let base = 1 + i as u32 / 2;
                    let min = base - (next(2) as u32).min(base - 1);
                    protocols.insert(
                        ax.to_string(),
                        Range {
                            min,
                            max: base + next(2) as u32,
                        },
                    );
                }
                let mut caps = BTreeSet::new();
                if next(2) == 0 {
                    caps.insert("f".to_string());
                }
                releases.push(ReleaseSpec {
                    version: format!("1.{i}"),
                    protocols,
                    required_stop: i > 0 && i + 1 < nrel && next(4) == 0,
                    capabilities: caps,
                });
            }
            let talks_to = if c > 0 {
                vec![format!("c{}", next(c as u64))]
            } else {
                vec![]
            };
            comps.push(ComponentSpec {
                name: format!("c{c}"),
                releases,
                stateful: next(4) == 0,
                talks_to,
            });
        }
        let skew = if next(3) == 0 {
            vec![SkewRule {
                component: "c1".into(),
                anchor: "c0".into(),
                max_newer: next(2) as u32,
                max_older: next(3) as u32,
            }]
        } else {
            vec![]
        };
        let capabilities = if next(3) == 0 {
            vec![CapabilitySpec {
                name: "f".into(),
                members: vec!["c0".into(), "c1".into()],
            }]
        } else {
            vec![]
        };
        let start: Vec<u64> = comps.iter().map(|_| 1u64 << next(2)).collect();
        let mut targets: Vec<(usize, usize)> = Vec::new();
        for (c, comp) in comps.iter().enumerate() {
            if next(3) != 0 {
                let last = comp.releases.len() - 1;
                targets.push((
                    c,
                    if next(2) == 0 {
                        last
                    } else {
                        next(comp.releases.len() as u64) as usize
                    },
                ));
            }
        }
        let flag = !capabilities.is_empty() && next(2) == 0;
        (
            SystemSpec {
                components: comps,
                skew,
                capabilities,
            },
            start,
            targets,
            flag,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn planner_is_valid_and_shortest((spec, start, targets, flag) in arb_system()) {
        let sys = System::new(spec.clone()).unwrap();
        let start = State { versions: start, flags: 0 };
        let t = Target { releases: targets, flags: if flag { vec![0] } else { vec![] } };
        let planned = sys.plan(&start, &t, 1_000_000);
        let start_ok = sys.violations(&start).is_empty();
        let best = if start_ok { brute_force(&sys, &start, &t) } else { None };
        match (&planned, best) {
            (Ok(moves), Some(n)) => {
                prop_assert_eq!(moves.len(), n, "not the shortest");
                // replay with the independent check, mixed states included
                let names: Vec<String> = spec.components.iter().map(|c| c.name.clone()).collect();
                let mut inuse: BTreeMap<String, BTreeSet<String>> = names.iter().enumerate().map(|(c, n)| {
                    (n.clone(), (0..64).filter(|i| start.versions[c] & (1 << i) != 0).map(|i| spec.components[c].releases[i].version.clone()).collect())
                }).collect();
                let mut flags = BTreeSet::new();
                prop_assert!(valid(&spec, &inuse, &flags));
                for mv in moves {
                    match *mv {
                        Move::Upgrade(c, r) => {
                            let v = spec.components[c].releases[r].version.clone();
                            inuse.get_mut(&names[c]).unwrap().insert(v.clone());
                            prop_assert!(valid(&spec, &inuse, &flags), "mixed state invalid at {:?}", mv);
                            inuse.insert(names[c].clone(), BTreeSet::from([v]));
                        }
                        Move::Flag(_) => {
                            flags.insert("f".to_string());
                        }
                    }
                    prop_assert!(valid(&spec, &inuse, &flags), "state invalid after {:?}", mv);
                }
            }
            (Err(_), None) => {}
            (Ok(m), None) => prop_assert!(false, "planned {:?} but brute force finds no plan", m),
            (Err(e), Some(n)) => prop_assert!(false, "no plan ({}) but brute force finds one of {} stages", e.reason, n),
        }
    }
}

/// The property test must exercise real plans, not only trivial or
/// impossible cases: count what the generator produces.
#[test]
fn the_random_systems_cover_multi_stage_plans_and_impossible_ones() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut multi, mut none, mut total) = (0, 0, 0);
    for _ in 0..400 {
        let (spec, start, targets, flag) = arb_system().new_tree(&mut runner).unwrap().current();
        let sys = System::new(spec).unwrap();
        let t = Target {
            releases: targets,
            flags: if flag { vec![0] } else { vec![] },
        };
        total += 1;
        match sys.plan(
            &State {
                versions: start,
                flags: 0,
            },
            &t,
            1_000_000,
        ) {
            Ok(m) if m.len() >= 2 => multi += 1,
            Ok(_) => {}
            Err(_) => none += 1,
        }
    }
    assert!(
        multi * 5 >= total,
        "only {multi} of {total} cases need 2+ stages"
    );
    assert!(
        none * 20 >= total,
        "only {none} of {total} cases are impossible"
    );
}
