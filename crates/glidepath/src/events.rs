//! The event bus: every event the executor journals is published, after it is
//! journaled and folded into the state, to the run's subscribers. The console
//! narration is one subscriber; a live page or a notifier is another. A
//! process that does not drive the run follows it from the journal instead,
//! with `Store::events_since(run, seq)`: the sequence numbers are the same.

use crate::report::Reporter;
use glidepath_core::{Event, RunState};
use std::sync::Arc;
use tokio::sync::broadcast;

/// One journaled event, as published.
#[derive(Debug, Clone)]
pub struct Published {
    pub run_id: String,
    /// Its sequence number in the journal (1, 2, …), as `events_since` gives.
    pub seq: i64,
    pub event: Event,
}

/// A synchronous subscriber: called in journal order, on the executor's
/// task, with the state the event produced. It must return quickly.
pub trait Subscriber: Send + Sync {
    fn event(&self, published: &Published, state: &RunState);
}

/// The narration follows the run as a subscriber.
pub struct Narration(pub Arc<dyn Reporter>);

impl Subscriber for Narration {
    fn event(&self, p: &Published, state: &RunState) {
        self.0.event(state, &p.event);
    }
}

/// The subscribers of one run, and a channel for asynchronous ones (which may
/// lag: a slow receiver loses the oldest events and learns how many, and can
/// catch up from the journal with `events_since`).
pub struct EventBus {
    subscribers: Vec<Arc<dyn Subscriber>>,
    channel: broadcast::Sender<Published>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            subscribers: Vec::new(),
            channel: broadcast::channel(1024).0,
        }
    }
}

impl EventBus {
    pub fn with(subscribers: Vec<Arc<dyn Subscriber>>) -> Self {
        EventBus {
            subscribers,
            ..Default::default()
        }
    }

    pub fn add(&mut self, s: Arc<dyn Subscriber>) {
        self.subscribers.push(s);
    }

    /// An asynchronous receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.channel.subscribe()
    }

    /// Publish a journaled event (called by the executor only).
    pub fn publish(&self, p: Published, state: &RunState) {
        for s in &self.subscribers {
            s.event(&p, state);
        }
        // no receiver is fine
        let _ = self.channel.send(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder(Mutex<Vec<i64>>);
    impl Subscriber for Recorder {
        fn event(&self, p: &Published, _: &RunState) {
            self.0.lock().unwrap().push(p.seq);
        }
    }

    #[tokio::test]
    async fn every_subscriber_sees_every_event_in_order() {
        let rec = Arc::new(Recorder(Mutex::new(vec![])));
        let bus = EventBus::with(vec![rec.clone()]);
        let mut rx = bus.subscribe();
        let spec: glidepath_core::RolloutSpec = serde_json::from_value(serde_json::json!({
            "version": "2", "groups": [["n1"]], "max_unavailable": 1, "pause_after": [],
            "window": null, "drain_timeout_ms": 1, "drain_poll_ms": 1,
            "on_drain_timeout": "fail", "health_deadline_ms": 1, "health_interval_ms": 1
        }))
        .unwrap();
        let state = RunState::new(&spec);
        for seq in 1..=3 {
            bus.publish(
                Published {
                    run_id: "r".into(),
                    seq,
                    event: Event::Promoted {
                        at: seq as u64,
                        reason: "x".into(),
                    },
                },
                &state,
            );
        }
        assert_eq!(*rec.0.lock().unwrap(), vec![1, 2, 3]);
        for seq in 1..=3 {
            assert_eq!(rx.recv().await.unwrap().seq, seq);
        }
    }
}
