//! The compiled form of a [`SystemSpec`]: [`System`] (indices, bitmask
//! release sets, precomputed pairwise compatibility, compiled skew rules,
//! capability support, required stops, the candidate releases worth moving
//! to), a [`State`] of versions in use, and the bitmask helpers. Building
//! it ([`System::new`]) validates the declarations.

use super::spec::{cmp_versions, releases_compatible, ReleaseSpec, SpecError, SystemSpec};
use std::collections::{BTreeSet, HashMap};

/// A compiled skew rule: (component, anchor, max_newer, max_older, position
/// of each component release, position of each anchor release).
type SkewIdx = (usize, usize, u32, u32, Vec<i64>, Vec<i64>);

/// The compiled system: indices, bitmasks and precomputed compatibility.
#[derive(Debug, Clone)]
pub struct System {
    pub spec: SystemSpec,
    /// (a, b, ok[i * nb + j]) for every communicating pair a < b.
    pub(super) edges: Vec<(usize, usize, Vec<bool>)>,
    /// (component, anchor, max_newer, max_older, position of each component
    /// release, position of each anchor release)
    pub(super) skew: Vec<SkewIdx>,
    /// capability → (members, support[c] bitmask of releases having it)
    pub(super) caps: Vec<(Vec<usize>, Vec<u64>)>,
    pub(super) stops: Vec<u64>,
    /// Releases worth moving to: for a component outside skew rules, among
    /// consecutive releases that speak the same protocols with the same
    /// capabilities, only the last one (the others are interchangeable with
    /// it for every check, so this keeps plans shortest); plus required stops.
    pub(super) cands: Vec<u64>,
}

/// Versions in use: a bitmask of release indices per component, and the
/// capability flags that are on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct State {
    pub versions: Vec<u64>,
    pub flags: u64,
}

pub(super) fn bits(m: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |i| m & (1u64 << i) != 0)
}

pub(super) fn hi(m: u64) -> usize {
    63 - m.leading_zeros() as usize
}

pub(super) fn lo(m: u64) -> usize {
    m.trailing_zeros() as usize
}

impl System {
    pub fn new(spec: SystemSpec) -> Result<System, SpecError> {
        let idx: HashMap<&str, usize> = spec
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        let find = |n: &str, what: &str| {
            idx.get(n)
                .copied()
                .ok_or_else(|| SpecError(format!("{what} names unknown component `{n}`")))
        };
        for c in &spec.components {
            if c.releases.is_empty() || c.releases.len() > 64 {
                return Err(SpecError(format!(
                    "component `{}` needs 1 to 64 releases",
                    c.name
                )));
            }
        }
        let mut pairs = BTreeSet::new();
        for (i, c) in spec.components.iter().enumerate() {
            for t in &c.talks_to {
                let j = find(t, &format!("`{}`.talks_to", c.name))?;
                if i != j {
                    pairs.insert((i.min(j), i.max(j)));
                }
            }
        }
        let edges = pairs
            .into_iter()
            .map(|(a, b)| {
                let (ra, rb) = (&spec.components[a].releases, &spec.components[b].releases);
                let ok = ra
                    .iter()
                    .flat_map(|x| rb.iter().map(move |y| releases_compatible(x, y)))
                    .collect();
                (a, b, ok)
            })
            .collect();
        let mut skew = Vec::new();
        for r in &spec.skew {
            let (c, a) = (
                find(&r.component, "a skew rule")?,
                find(&r.anchor, "a skew rule")?,
            );
            let anchor = &spec.components[a].releases;
            let pos = |v: &str| {
                anchor
                    .iter()
                    .filter(|x| cmp_versions(&x.version, v) != std::cmp::Ordering::Greater)
                    .count() as i64
            };
            let cpos = spec.components[c]
                .releases
                .iter()
                .map(|x| pos(&x.version))
                .collect();
            let apos = anchor.iter().map(|x| pos(&x.version)).collect();
            skew.push((c, a, r.max_newer, r.max_older, cpos, apos));
        }
        let mut caps = Vec::new();
        for c in &spec.capabilities {
            let members = c
                .members
                .iter()
                .map(|m| find(m, &format!("capability `{}`", c.name)))
                .collect::<Result<Vec<_>, _>>()?;
            let support = spec
                .components
                .iter()
                .map(|comp| {
                    comp.releases
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.capabilities.contains(&c.name))
                        .fold(0u64, |m, (i, _)| m | 1 << i)
                })
                .collect();
            caps.push((members, support));
        }
        if caps.len() > 64 {
            return Err(SpecError("at most 64 capability flags".into()));
        }
        let stops = spec
            .components
            .iter()
            .map(|c| {
                c.releases
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.required_stop)
                    .fold(0u64, |m, (i, _)| m | 1 << i)
            })
            .collect();
        let in_skew: BTreeSet<usize> = skew.iter().flat_map(|s| [s.0, s.1]).collect();
        let cands = spec
            .components
            .iter()
            .enumerate()
            .map(|(c, comp)| {
                if in_skew.contains(&c) || comp.stateful {
                    return if comp.releases.len() == 64 {
                        u64::MAX
                    } else {
                        (1u64 << comp.releases.len()) - 1
                    };
                }
                let rs = &comp.releases;
                (0..rs.len())
                    .filter(|&i| {
                        i + 1 == rs.len()
                            || rs[i].required_stop
                            || rs[i + 1].required_stop
                            || rs[i].protocols != rs[i + 1].protocols
                            || rs[i].capabilities != rs[i + 1].capabilities
                    })
                    .fold(0u64, |m, i| m | 1 << i)
            })
            .collect();
        Ok(System {
            spec,
            edges,
            skew,
            caps,
            stops,
            cands,
        })
    }

    pub fn component(&self, name: &str) -> Option<usize> {
        self.spec.components.iter().position(|c| c.name == name)
    }

    pub fn release(&self, c: usize, version: &str) -> Option<usize> {
        self.spec.components[c]
            .releases
            .iter()
            .position(|r| r.version == version)
    }

    pub fn capability(&self, name: &str) -> Option<usize> {
        self.spec.capabilities.iter().position(|c| c.name == name)
    }

    pub(super) fn name(&self, c: usize) -> &str {
        &self.spec.components[c].name
    }

    pub(super) fn rel(&self, c: usize, i: usize) -> &ReleaseSpec {
        &self.spec.components[c].releases[i]
    }
}
