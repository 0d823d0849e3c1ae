//! `tcp = "host:port"`: a connection is accepted before the deadline.

use super::{show, ProbeOutcome, TcpProbe};
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

pub(super) async fn run(p: &TcpProbe, limit: Duration, deadline: Instant) -> ProbeOutcome {
    let what = format!("tcp {}", p.address);
    match timeout_at(deadline, tokio::net::TcpStream::connect(p.address.as_str())).await {
        Ok(Ok(s)) => {
            let peer = s.peer_addr().map(|a| a.to_string()).ok();
            ProbeOutcome::pass(format!("{what} accepts"), peer)
        }
        Ok(Err(e)) => ProbeOutcome::infra(format!("{what}: cannot connect: {e}")),
        Err(_) => ProbeOutcome::infra(format!("{what}: no connection within {}", show(limit))),
    }
}
