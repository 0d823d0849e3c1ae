//! Following a run from another process: the journal's sequence numbers are
//! the event stream (`Store::events_since`), the same the executor publishes
//! to its subscribers.

use crate::harness::*;
use glidepath::demo::DemoPlan;
use glidepath_core::Event;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_follows_a_run_event_by_event() {
    let env = Env::start(3).await;
    let plan = env.plan(&env.v2, &DemoPlan::quick("2s", 5));
    let mut child = env.spawn(&["run", plan.to_str().unwrap()]);
    let j = env.journal();
    wait_until("the run to exist", Duration::from_secs(60), || {
        j.runs(1).is_ok_and(|r| !r.is_empty())
    })
    .await;
    let run = env.latest_run();
    // follow: poll for what is new since the last sequence number seen
    let (mut last, mut seen, mut polls_with_news) = (0i64, Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let new = j.events_since(&run, last).unwrap();
        if !new.is_empty() {
            polls_with_news += 1;
        }
        for (seq, ev) in new {
            assert_eq!(seq, last + 1, "no gap, no repeat");
            last = seq;
            seen.push(ev);
        }
        if matches!(seen.last(), Some(Event::Finished { .. })) {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(
        polls_with_news > 1,
        "the events arrived while the run went on"
    );
    assert_eq!(seen, env.events(&run), "followed = journaled, in order");
    assert!(j.events_since(&run, last).unwrap().is_empty());
}
