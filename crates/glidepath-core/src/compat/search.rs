//! The upgrade planner: [`System::plan`], an exact A* over stages from a
//! [`State`] to a [`Target`]. The bound is each component's fewest moves
//! in a relaxation where its neighbours may be anywhere (consistent, so
//! plans are shortest); the candidate moves skip releases that are
//! interchangeable for every check. When there is no plan, [`Unreachable`]
//! says why: a cheap proof first (`quick_infeasible`), else what blocks the
//! closest safe state reached.

use super::check::Move;
use super::spec::incompatibility;
use super::system::{bits, hi, lo, State, System};
use std::collections::{BTreeSet, BinaryHeap, HashMap};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Unreachable {
    pub reason: String,
}

/// A search node: (state, (parent, move) that reached it, stages so far).
type Node = (State, Option<(usize, Move)>, usize);

/// The goal of `glidepath plan`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Target {
    /// component index → release index
    pub releases: Vec<(usize, usize)>,
    /// capability indices to switch on
    pub flags: Vec<usize>,
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
}
