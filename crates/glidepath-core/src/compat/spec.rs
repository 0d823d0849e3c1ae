//! The declarations a plan's `[system]` section compiles to: components
//! with their releases (protocol ranges per axis, required stops,
//! capabilities), skew rules and capability flags ([`SystemSpec`]), the
//! [`SpecError`] for a broken declaration, and the pairwise words:
//! [`cmp_versions`], [`releases_compatible`] and [`incompatibility`].

use std::collections::{BTreeMap, BTreeSet};

/// Protocol versions spoken on one axis: `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: u32,
    pub max: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseSpec {
    pub version: String,
    /// axis → range of protocol versions spoken.
    pub protocols: BTreeMap<String, Range>,
    /// Must be passed through on the way to any later release.
    pub required_stop: bool,
    pub capabilities: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ComponentSpec {
    pub name: String,
    /// Oldest first.
    pub releases: Vec<ReleaseSpec>,
    /// Moves one release at a time (e.g. a database with migrations).
    pub stateful: bool,
    /// Components this one talks to (the relation is symmetric for checks).
    pub talks_to: Vec<String>,
}

/// Every instance of `component` stays within `max_newer`/`max_older`
/// releases of every instance of `anchor`, counted along the anchor's
/// release list (like Kubernetes' kubelet skew, in apiserver minors): an
/// instance's position is the number of anchor releases whose version is
/// not newer than its own.
#[derive(Debug, Clone, PartialEq)]
pub struct SkewRule {
    pub component: String,
    pub anchor: String,
    /// How many releases newer than the anchor an instance may be.
    pub max_newer: u32,
    /// How many releases older than the anchor an instance may be.
    pub max_older: u32,
}

/// A flag that may be switched on only once every member runs releases
/// supporting it; while it is on, members may only move to releases that
/// support it.
#[derive(Debug, Clone, PartialEq)]
pub struct CapabilitySpec {
    pub name: String,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SystemSpec {
    pub components: Vec<ComponentSpec>,
    pub skew: Vec<SkewRule>,
    pub capabilities: Vec<CapabilitySpec>,
}

/// A problem in the declarations themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError(pub String);

/// Compare versions segment by segment (`1.10` > `1.9`; numbers
/// numerically, other segments as text; a missing segment is smaller).
pub fn cmp_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let seg = |v: &str| -> Vec<String> {
        v.trim_start_matches('v')
            .split(['.', '-', '+'])
            .map(str::to_string)
            .collect()
    };
    let (x, y) = (seg(a), seg(b));
    for k in 0..x.len().max(y.len()) {
        let o = match (x.get(k), y.get(k)) {
            (Some(p), Some(q)) => match (p.parse::<u64>(), q.parse::<u64>()) {
                (Ok(m), Ok(n)) => m.cmp(&n),
                _ => p.cmp(q),
            },
            (Some(_), None) => std::cmp::Ordering::Greater,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (None, None) => std::cmp::Ordering::Equal,
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    std::cmp::Ordering::Equal
}

/// Do two releases share a protocol version on every axis both speak (and
/// at least one axis)?
pub fn releases_compatible(a: &ReleaseSpec, b: &ReleaseSpec) -> bool {
    let mut shared = 0;
    for (axis, ra) in &a.protocols {
        if let Some(rb) = b.protocols.get(axis) {
            shared += 1;
            if ra.min.max(rb.min) > ra.max.min(rb.max) {
                return false;
            }
        }
    }
    shared > 0
}

fn fmt_range(r: &Range) -> String {
    if r.min == r.max {
        r.min.to_string()
    } else {
        format!("{}..{}", r.min, r.max)
    }
}

/// Why two releases cannot talk, in words.
pub fn incompatibility(a_name: &str, a: &ReleaseSpec, b_name: &str, b: &ReleaseSpec) -> String {
    for (axis, ra) in &a.protocols {
        if let Some(rb) = b.protocols.get(axis) {
            if ra.min.max(rb.min) > ra.max.min(rb.max) {
                return format!(
                    "{a_name} {} and {b_name} {} share no `{axis}` protocol version ({a_name} speaks {}, {b_name} speaks {})",
                    a.version,
                    b.version,
                    fmt_range(ra),
                    fmt_range(rb)
                );
            }
        }
    }
    format!(
        "{a_name} {} and {b_name} {} have no protocol axis in common",
        a.version, b.version
    )
}
