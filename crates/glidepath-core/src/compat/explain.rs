//! Turning a plan's moves into the [`Stage`]s `glidepath plan` prints,
//! each saying why it must come before the next ([`System::explain`]).

use super::check::Move;
use super::system::{State, System};

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

impl System {
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
