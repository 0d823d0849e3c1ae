//! Protocol compatibility across components, and the shortest safe upgrade
//! order. Pure: the system (components, releases with protocol ranges per
//! axis, who talks to whom, skew rules, required stops, stateful components,
//! capability flags) and the versions in use go in; stages come out, each
//! with the reason it must come before the next.
//!
//! A *stage* moves every instance of one component to one release (or
//! switches a capability flag on). While a stage rolls node by node, the
//! old and new releases run side by side, so a stage is allowed only if that
//! *mixed* state is compatible: every pair of communicating instances shares
//! a protocol version on every axis both speak, and every skew rule holds.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

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

/// One step of an upgrade plan.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Stage {
    Upgrade {
        component: String,
        from: Vec<String>,
        to: String,
        /// Why it must come before the next stage (empty for the last).
        why: String,
    },
    EnableFlag {
        flag: String,
        why: String,
    },
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Unreachable {
    pub reason: String,
}

/// A problem in the declarations themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError(pub String);

/// A compiled skew rule: (component, anchor, max_newer, max_older, position
/// of each component release, position of each anchor release).
type SkewIdx = (usize, usize, u32, u32, Vec<i64>, Vec<i64>);

/// A search node: (state, (parent, move) that reached it, stages so far).
type Node = (State, Option<(usize, Move)>, usize);

/// The compiled system: indices, bitmasks and precomputed compatibility.
#[derive(Debug, Clone)]
pub struct System {
    pub spec: SystemSpec,
    /// (a, b, ok[i * nb + j]) for every communicating pair a < b.
    edges: Vec<(usize, usize, Vec<bool>)>,
    /// (component, anchor, max_newer, max_older, position of each component
    /// release, position of each anchor release)
    skew: Vec<SkewIdx>,
    /// capability → (members, support[c] bitmask of releases having it)
    caps: Vec<(Vec<usize>, Vec<u64>)>,
    stops: Vec<u64>,
    /// Releases worth moving to: for a component outside skew rules, among
    /// consecutive releases that speak the same protocols with the same
    /// capabilities, only the last one (the others are interchangeable with
    /// it for every check, so this keeps plans shortest); plus required stops.
    cands: Vec<u64>,
}

/// Versions in use: a bitmask of release indices per component, and the
/// capability flags that are on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct State {
    pub versions: Vec<u64>,
    pub flags: u64,
}

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

fn bits(m: u64) -> impl Iterator<Item = usize> {
    (0..64).filter(move |i| m & (1u64 << i) != 0)
}

fn hi(m: u64) -> usize {
    63 - m.leading_zeros() as usize
}

fn lo(m: u64) -> usize {
    m.trailing_zeros() as usize
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

    fn name(&self, c: usize) -> &str {
        &self.spec.components[c].name
    }

    fn rel(&self, c: usize, i: usize) -> &ReleaseSpec {
        &self.spec.components[c].releases[i]
    }

    /// The first broken constraint involving component `c` in `s`, if any.
    fn violation_for(&self, s: &State, c: Option<usize>) -> Option<String> {
        for (a, b, ok) in &self.edges {
            if c.is_some_and(|c| c != *a && c != *b) {
                continue;
            }
            let nb = self.spec.components[*b].releases.len();
            for i in bits(s.versions[*a]) {
                for j in bits(s.versions[*b]) {
                    if !ok[i * nb + j] {
                        return Some(incompatibility(
                            self.name(*a),
                            self.rel(*a, i),
                            self.name(*b),
                            self.rel(*b, j),
                        ));
                    }
                }
            }
        }
        for (comp, anchor, newer, older, cpos, apos) in &self.skew {
            let (comp, anchor) = (*comp, *anchor);
            if c.is_some_and(|c| c != comp && c != anchor) {
                continue;
            }
            for i in bits(s.versions[comp]) {
                for j in bits(s.versions[anchor]) {
                    let d = cpos[i] - apos[j];
                    if d > *newer as i64 || -d > *older as i64 {
                        let (what, limit) = if d > 0 {
                            ("newer", newer)
                        } else {
                            ("older", older)
                        };
                        return Some(format!(
                            "skew: {} {} would be {} release(s) {what} than {} {} (at most {limit} allowed)",
                            self.name(comp),
                            self.rel(comp, i).version,
                            d.abs(),
                            self.name(anchor),
                            self.rel(anchor, j).version
                        ));
                    }
                }
            }
        }
        for (k, (members, support)) in self.caps.iter().enumerate() {
            if s.flags & (1 << k) == 0 {
                continue;
            }
            for &m in members {
                if c.is_some_and(|c| c != m) {
                    continue;
                }
                if let Some(i) = bits(s.versions[m]).find(|i| support[m] & (1 << i) == 0) {
                    return Some(format!(
                        "flag `{}` is on and {} {} does not support it",
                        self.spec.capabilities[k].name,
                        self.name(m),
                        self.rel(m, i).version
                    ));
                }
            }
        }
        None
    }

    /// Pairs and rules already broken in a state (for `inventory`).
    pub fn violations(&self, s: &State) -> Vec<String> {
        let mut out = Vec::new();
        for (a, b, ok) in &self.edges {
            let nb = self.spec.components[*b].releases.len();
            for i in bits(s.versions[*a]) {
                for j in bits(s.versions[*b]) {
                    if !ok[i * nb + j] {
                        out.push(incompatibility(
                            self.name(*a),
                            self.rel(*a, i),
                            self.name(*b),
                            self.rel(*b, j),
                        ));
                    }
                }
            }
        }
        for c in 0..self.spec.components.len() {
            let one = State {
                versions: s.versions.clone(),
                flags: s.flags,
            };
            if let Some(v) = self
                .violation_for(&one, Some(c))
                .filter(|v| v.starts_with("skew") || v.starts_with("flag"))
            {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
        out
    }

    /// Can component `c` move to release `t` from `s`? The mixed state
    /// (old and new side by side) must hold. `Err` says why not.
    pub fn check_move(&self, s: &State, c: usize, t: usize) -> Result<State, String> {
        let m = s.versions[c];
        let comp = &self.spec.components[c];
        if t < hi(m) || (t == hi(m) && m.count_ones() == 1) {
            return Err(format!(
                "{} is already at or past {}",
                comp.name,
                self.rel(c, t).version
            ));
        }
        if comp.stateful && !(t == hi(m) || (t == hi(m) + 1 && m.count_ones() == 1)) {
            return Err(format!(
                "{} is stateful and moves one release at a time (from {} the next is {})",
                comp.name,
                self.rel(c, hi(m)).version,
                comp.releases
                    .get(hi(m) + 1)
                    .map_or("none", |r| r.version.as_str())
            ));
        }
        let between = self.stops[c] & !((1u64 << (lo(m) + 1)) - 1) & ((1u64 << t) - 1);
        if between != 0 {
            let stop = lo(between);
            return Err(format!(
                "{} {} is a required stop on the way from {} to {}",
                comp.name,
                self.rel(c, stop).version,
                self.rel(c, lo(m)).version,
                self.rel(c, t).version
            ));
        }
        let mut mixed = s.clone();
        mixed.versions[c] = m | (1 << t);
        if let Some(v) = self.violation_for(&mixed, Some(c)) {
            return Err(format!(
                "while {} rolls from {} to {}: {v}",
                comp.name,
                self.versions_of(s, c).join("/"),
                self.rel(c, t).version
            ));
        }
        let mut after = s.clone();
        after.versions[c] = 1 << t;
        Ok(after)
    }

    fn check_flag(&self, s: &State, k: usize) -> Result<State, String> {
        let (members, support) = &self.caps[k];
        for &m in members {
            if let Some(i) = bits(s.versions[m]).find(|i| support[m] & (1 << i) == 0) {
                return Err(format!(
                    "flag `{}` needs every member on a release supporting it; {} runs {}",
                    self.spec.capabilities[k].name,
                    self.name(m),
                    self.rel(m, i).version
                ));
            }
        }
        Ok(State {
            versions: s.versions.clone(),
            flags: s.flags | (1 << k),
        })
    }

    pub fn versions_of(&self, s: &State, c: usize) -> Vec<String> {
        bits(s.versions[c])
            .map(|i| self.rel(c, i).version.clone())
            .collect()
    }
}

/// The goal of `glidepath plan`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Target {
    /// component index → release index
    pub releases: Vec<(usize, usize)>,
    /// capability indices to switch on
    pub flags: Vec<usize>,
}

/// A move in the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Move {
    Upgrade(usize, usize),
    Flag(usize),
}

impl System {
    fn goal(&self, s: &State, t: &Target) -> bool {
        t.releases.iter().all(|&(c, r)| s.versions[c] == 1 << r)
            && t.flags.iter().all(|&k| s.flags & (1 << k) != 0)
    }

    /// Could `c` move from the releases in `from` to `j` in *some*
    /// configuration of its neighbours (each free to be at any release)?
    /// A relaxation of `check_move`: every real move passes it.
    fn relaxed_ok(&self, c: usize, from: u64, j: usize) -> bool {
        let comp = &self.spec.components[c];
        let (h, l) = (hi(from), lo(from));
        if j < h || (j == h && from.count_ones() == 1) {
            return false;
        }
        if comp.stateful && !(j == h || (j == h + 1 && from.count_ones() == 1)) {
            return false;
        }
        if self.stops[c] & !((1u64 << (l + 1)) - 1) & ((1u64 << j) - 1) != 0 {
            return false;
        }
        let mine = from | (1 << j);
        // each neighbour may be anywhere, but one release of it must satisfy
        // every constraint it has with `c` at once
        let mut neighbours: BTreeSet<usize> = BTreeSet::new();
        for (a, b, _) in &self.edges {
            if *a == c {
                neighbours.insert(*b);
            } else if *b == c {
                neighbours.insert(*a);
            }
        }
        for (comp_i, anchor, ..) in &self.skew {
            if *comp_i == c {
                neighbours.insert(*anchor);
            } else if *anchor == c {
                neighbours.insert(*comp_i);
            }
        }
        for d in neighbours {
            let fits_all = |k: usize| {
                for (a, b, ok) in &self.edges {
                    let nb = self.spec.components[*b].releases.len();
                    if *a == c && *b == d {
                        if !bits(mine).all(|i| ok[i * nb + k]) {
                            return false;
                        }
                    } else if *a == d && *b == c && !bits(mine).all(|i| ok[k * nb + i]) {
                        return false;
                    }
                }
                for (comp_i, anchor, newer, older, cpos, apos) in &self.skew {
                    let fits = |x: i64| x <= *newer as i64 && -x <= *older as i64;
                    if *comp_i == c && *anchor == d {
                        if !bits(mine).all(|i| fits(cpos[i] - apos[k])) {
                            return false;
                        }
                    } else if *comp_i == d
                        && *anchor == c
                        && !bits(mine).all(|i| fits(cpos[k] - apos[i]))
                    {
                        return false;
                    }
                }
                true
            };
            if !(0..self.spec.components[d].releases.len()).any(fits_all) {
                return false;
            }
        }
        true
    }

    /// Per target component: the fewest relaxed moves from each release to
    /// its target (`u32::MAX`: none).
    fn distances(&self, t: &Target) -> Vec<(usize, Vec<u32>)> {
        t.releases
            .iter()
            .map(|&(c, r)| {
                let mut dist = vec![u32::MAX; self.spec.components[c].releases.len()];
                dist[r] = 0;
                for i in (0..r).rev() {
                    let best = (i + 1..=r)
                        .filter(|&j| dist[j] != u32::MAX && self.relaxed_ok(c, 1 << i, j))
                        .map(|j| dist[j])
                        .min();
                    if let Some(b) = best {
                        dist[i] = b + 1;
                    }
                }
                (c, dist)
            })
            .collect()
    }

    /// A lower bound on the stages left, consistent for A*: for each target
    /// component, the fewest moves it needs even if every neighbour were
    /// wherever it helps most; plus one per flag still off.
    fn h(&self, s: &State, t: &Target, dist: &[(usize, Vec<u32>)]) -> usize {
        let mut n = 0usize;
        for (c, d) in dist {
            let m = s.versions[*c];
            let worst = bits(m).map(|i| d[i]).max().unwrap_or(0);
            if worst == u32::MAX {
                return usize::MAX / 4;
            }
            // a mixed mask that includes the target still needs one move
            n += (worst as usize).max(usize::from(m.count_ones() > 1));
        }
        n + t.flags.iter().filter(|&&k| s.flags & (1 << k) == 0).count()
    }

    fn moves(&self, s: &State, t: &Target) -> Vec<Move> {
        let mut out = Vec::new();
        for (c, comp) in self.spec.components.iter().enumerate() {
            let m = s.versions[c];
            let limit = t
                .releases
                .iter()
                .find(|x| x.0 == c)
                .map_or(comp.releases.len() - 1, |x| x.1);
            let first = if m.count_ones() > 1 { hi(m) } else { hi(m) + 1 };
            // furthest first: with A*'s deeper-first tie-break this finds
            // the usual plans without wandering the plateau of equal bounds
            for r in (first..=limit.min(comp.releases.len() - 1)).rev() {
                if self.cands[c] & (1 << r) != 0 || r == limit {
                    out.push(Move::Upgrade(c, r));
                }
            }
        }
        for k in 0..self.caps.len() {
            if s.flags & (1 << k) == 0 && t.flags.contains(&k) {
                out.push(Move::Flag(k));
            }
        }
        out
    }

    pub fn apply(&self, s: &State, mv: Move) -> Result<State, String> {
        match mv {
            Move::Upgrade(c, r) => self.check_move(s, c, r),
            Move::Flag(k) => self.check_flag(s, k),
        }
    }

    /// The shortest sequence of stages from `start` to `target` (A* with an
    /// admissible bound), or why there is none. `limit` caps expanded states.
    pub fn plan(
        &self,
        start: &State,
        target: &Target,
        limit: usize,
    ) -> Result<Vec<Move>, Unreachable> {
        if let Some(v) = self.violation_for(start, None) {
            return Err(Unreachable {
                reason: format!("the current state is already incompatible: {v}"),
            });
        }
        if let Err(reason) = self.quick_infeasible(start, target) {
            return Err(Unreachable { reason });
        }
        // (Reverse f, g, seq) — ties go deeper first
        let mut open = BinaryHeap::new();
        let mut states: Vec<Node> = vec![(start.clone(), None, 0)];
        let mut best: HashMap<State, usize> = HashMap::new();
        best.insert(start.clone(), 0);
        let dist = self.distances(target);
        for (c, d) in &dist {
            if bits(start.versions[*c]).any(|i| d[i] == u32::MAX) {
                let (r, from) = (
                    target
                        .releases
                        .iter()
                        .find(|x| x.0 == *c)
                        .expect("a target")
                        .1,
                    lo(start.versions[*c]),
                );
                let why = self.check_move(start, *c, r).err().unwrap_or_default();
                return Err(Unreachable {
                    reason: format!(
                        "{} cannot get from {} to {} by any sequence of its releases, whatever the other components run{}. A bridge release is missing",
                        self.name(*c),
                        self.rel(*c, from).version,
                        self.rel(*c, r).version,
                        if why.is_empty() { String::new() } else { format!(" (directly: {why})") }
                    ),
                });
            }
        }
        open.push((
            std::cmp::Reverse(self.h(start, target, &dist)),
            0usize,
            std::cmp::Reverse(0usize),
        ));
        let mut expanded = 0;
        let mut first_block: Option<String> = None;
        let mut closest = (self.h(start, target, &dist), 0usize);
        while let Some((_, g, std::cmp::Reverse(id))) = open.pop() {
            let s = states[id].0.clone();
            if best.get(&s).is_some_and(|&b| b < g) {
                continue;
            }
            if self.goal(&s, target) {
                let mut path = Vec::new();
                let mut cur = id;
                while let Some((parent, mv)) = states[cur].1 {
                    path.push(mv);
                    cur = parent;
                }
                path.reverse();
                return Ok(path);
            }
            let hs = self.h(&s, target, &dist);
            if hs < closest.0 {
                closest = (hs, id);
            }
            expanded += 1;
            if expanded > limit {
                return Err(Unreachable { reason: format!("no plan found within {limit} explored states (the search was cut off, not proven impossible)") });
            }
            for mv in self.moves(&s, target) {
                match self.apply(&s, mv) {
                    Ok(next) => {
                        let ng = g + 1;
                        if best.get(&next).is_some_and(|&b| b <= ng) {
                            continue;
                        }
                        best.insert(next.clone(), ng);
                        let f = ng + self.h(&next, target, &dist);
                        states.push((next, Some((id, mv)), ng));
                        open.push((
                            std::cmp::Reverse(f),
                            ng,
                            std::cmp::Reverse(states.len() - 1),
                        ));
                    }
                    Err(why) => {
                        if id == 0
                            && first_block.is_none()
                            && matches!(mv, Move::Upgrade(c, r) if target.releases.contains(&(c, r)))
                        {
                            first_block = Some(why);
                        }
                    }
                }
            }
        }
        // explain from the closest safe state reached
        let best = &states[closest.1].0;
        let mut blocks = Vec::new();
        for &(c, r) in &target.releases {
            if best.versions[c] != 1 << r {
                if let Err(why) = self.check_move(best, c, r) {
                    blocks.push(format!(
                        "{} → {}: {why}",
                        self.name(c),
                        self.rel(c, r).version
                    ));
                }
            }
        }
        for &k in &target.flags {
            if best.flags & (1 << k) == 0 {
                if let Err(why) = self.check_flag(best, k) {
                    blocks.push(why);
                }
            }
        }
        let at: Vec<String> = (0..self.spec.components.len())
            .map(|c| format!("{} {}", self.name(c), self.versions_of(best, c).join("+")))
            .collect();
        let detail = if closest.1 == 0 {
            first_block
                .map(|b| format!("; the direct move fails because {b}"))
                .unwrap_or_default()
        } else {
            format!(
                "; the closest safe state is {}, and from there {}",
                at.join(", "),
                blocks.join("; ")
            )
        };
        Err(Unreachable {
            reason: format!("no sequence of stages keeps every pair compatible{detail}. A bridge release speaking both sides' protocols (or looser skew) is missing"),
        })
    }

    /// Cheap checks that prove a target impossible, with an explanation.
    fn quick_infeasible(&self, start: &State, target: &Target) -> Result<(), String> {
        for &(c, r) in &target.releases {
            if r < hi(start.versions[c]) {
                return Err(format!(
                    "{} already runs {}, newer than the target {} (plans only move forward)",
                    self.name(c),
                    self.rel(c, hi(start.versions[c])).version,
                    self.rel(c, r).version
                ));
            }
        }
        // every pair of targets must be able to talk in the end
        for (a, b, ok) in &self.edges {
            let ta = target.releases.iter().find(|x| x.0 == *a).map(|x| x.1);
            let tb = target.releases.iter().find(|x| x.0 == *b).map(|x| x.1);
            let nb = self.spec.components[*b].releases.len();
            match (ta, tb) {
                (Some(i), Some(j)) if !ok[i * nb + j] => {
                    return Err(format!(
                        "the targets cannot talk: {}",
                        incompatibility(
                            self.name(*a),
                            self.rel(*a, i),
                            self.name(*b),
                            self.rel(*b, j)
                        )
                    ));
                }
                (Some(i), None) | (None, Some(i)) => {
                    let (tc, other) = if ta.is_some() { (*a, *b) } else { (*b, *a) };
                    let from = hi(start.versions[other]);
                    let n_other = self.spec.components[other].releases.len();
                    let any = (from..n_other).any(|j| {
                        if ta.is_some() {
                            ok[i * nb + j]
                        } else {
                            ok[j * nb + i]
                        }
                    });
                    if !any {
                        let cur = self.rel(other, from);
                        return Err(format!(
                            "no release of {} (from {} on) can talk to {} {}: {}. A bridge release is missing: {} needs a release speaking {}'s protocols, or {} one speaking {}'s",
                            self.name(other),
                            cur.version,
                            self.name(tc),
                            self.rel(tc, i).version,
                            incompatibility(self.name(tc), self.rel(tc, i), self.name(other), cur),
                            self.name(other),
                            self.name(tc),
                            self.name(tc),
                            self.name(other)
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Turn moves into stages, each saying why it must come before the next.
    pub fn explain(&self, start: &State, moves: &[Move]) -> Vec<Stage> {
        let mut states = vec![start.clone()];
        for mv in moves {
            let next = self
                .apply(states.last().expect("a state"), *mv)
                .expect("a planned move applies");
            states.push(next);
        }
        let mut out = Vec::new();
        for (k, mv) in moves.iter().enumerate() {
            let why = match moves.get(k + 1) {
                None => String::new(),
                Some(next) => match self.apply(&states[k], *next) {
                    Err(reason) => format!("before the next stage: without it, {reason}"),
                    Ok(_) => {
                        "independent of the next stage (kept in this order: one change at a time)"
                            .into()
                    }
                },
            };
            out.push(match *mv {
                Move::Upgrade(c, r) => Stage::Upgrade {
                    component: self.name(c).to_string(),
                    from: self.versions_of(&states[k], c),
                    to: self.rel(c, r).version.clone(),
                    why,
                },
                Move::Flag(f) => Stage::EnableFlag {
                    flag: self.spec.capabilities[f].name.clone(),
                    why,
                },
            });
        }
        out
    }
}
