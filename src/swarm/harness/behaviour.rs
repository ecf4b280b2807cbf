//! How a simulated node plays: by default exactly as its core decides. A [`Behaviour`] sits
//! between a node's core and the harness and may rewrite or swallow what goes either way, so a
//! strategic or cheating client (one that never uploads, lies about its pieces, or runs under
//! many identities) can be built from the honest core plus a hook, and measured in the same
//! swarm as honest ones.

use std::time::Instant;

use crate::swarm::session::{Action, Input};

pub trait Behaviour {
    /// Sees every action of the node's core before the harness carries it out, and returns
    /// what to carry out instead (`None` drops it).
    fn on_action(&mut self, now: Instant, action: Action) -> Option<Action> {
        let _ = now;
        Some(action)
    }

    /// Sees every input before the node's core does (`None` hides it from the core).
    fn on_input(&mut self, now: Instant, input: Input) -> Option<Input> {
        let _ = now;
        Some(input)
    }
}

/// The honest node: the core's decisions, unchanged.
#[derive(Debug, Default, Clone, Copy)]
pub struct Honest;

impl Behaviour for Honest {}
