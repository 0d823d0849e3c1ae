//! The checks on a state: which constraints it breaks
//! ([`System::violations`]), and whether one [`Move`] (a component to a
//! release, or a flag on) is safe from it, judged in the *mixed* state
//! where old and new run side by side ([`System::check_move`],
//! [`System::apply`]), with the reason when it is not.

use super::spec::incompatibility;
use super::system::{bits, hi, lo, State, System};

/// A move in the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Move {
    Upgrade(usize, usize),
    Flag(usize),
}

impl System {
    /// The first broken constraint involving component `c` in `s`, if any.
    pub(super) fn violation_for(&self, s: &State, c: Option<usize>) -> Option<String> {
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

    pub(super) fn check_flag(&self, s: &State, k: usize) -> Result<State, String> {
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

    pub fn apply(&self, s: &State, mv: Move) -> Result<State, String> {
        match mv {
            Move::Upgrade(c, r) => self.check_move(s, c, r),
            Move::Flag(k) => self.check_flag(s, k),
        }
    }
}
