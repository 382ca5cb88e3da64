//! `pgha failover` against a fake fleet: dc1 lost its master (dc1-pg1,
//! stopped); dc1-pg3, behind, is the candidate; dc1-pg2 (stopped) went
//! further than it.

use super::*;
use crate::testkit::{Sim, THREE_CLOUDS};

fn opts(accept: bool) -> Options {
    Options {
        to: "dc1-pg3".into(),
        accept_data_loss: accept,
        yes: true,
        dry_run: false,
    }
}

/// dc1 has no master; `set` shapes dc1-pg2 (stopped, past the candidate).
fn leaderless(set: impl FnOnce(&mut crate::testkit::SimHost)) -> Sim {
    let sim = Sim::new(THREE_CLOUDS);
    {
        let mut w = sim.world();
        w.clouds.get_mut("dc1").unwrap().leader = None;
        w.hosts.get_mut("dc1-pg1").unwrap().up = false;
        w.hosts.get_mut("dc1-pg3").unwrap().lsn = 0x5000000;
        let h = w.hosts.get_mut("dc1-pg2").unwrap();
        h.up = false;
        h.lsn = 0x5001000;
        set(h);
    }
    sim
}

async fn failover(sim: &Sim, opts: &Options) -> anyhow::Result<()> {
    let design = sim.design();
    let cloud = design.cloud("dc1").unwrap().clone();
    let fleet = sim.fleet(&design);
    run_on(&fleet, &cloud, opts, ui::Output::Json).await
}

fn at(sim: &Sim, event: &str) -> Option<usize> {
    sim.events().iter().position(|e| e == event)
}

#[tokio::test(start_paused = true)]
async fn a_wal_read_that_fails_is_never_nothing_to_lose() {
    // pg_waldump cannot read dc1-pg2's WAL (a segment gone): what it holds
    // past the candidate cannot be ruled out.
    let sim = leaderless(|h| h.wal_unreadable = true);
    let e = failover(&sim, &opts(false)).await.unwrap_err();
    assert!(e.downcast_ref::<Usage>().is_some(), "exit 2: {e:#}");
    let text = format!("{e:#}");
    assert!(
        text.contains("dc1-pg2: its WAL could not be read") && text.contains("pg_waldump could not read the WAL"),
        "{text}"
    );
    assert_eq!(at(&sim, "dc1-pg3: failover to it"), None, "{:#?}", sim.events());
    // Accepted, the host is held like one with counted commits.
    failover(&sim, &opts(true)).await.unwrap();
    assert!(sim.world().hosts["dc1-pg2"].held);
}

#[tokio::test(start_paused = true)]
async fn holds_come_before_the_promotion() {
    let sim = leaderless(|h| h.commits = vec!["2026-12-01 10:00:01+00".into()]);
    let e = format!("{:#}", failover(&sim, &opts(false)).await.unwrap_err());
    assert!(e.contains("dc1-pg2 holds 1 commit"), "{e}");
    failover(&sim, &opts(true)).await.unwrap();
    let hold = at(&sim, "dc1-pg2: hold").expect("held");
    let promoted = at(&sim, "dc1-pg3: failover to it").expect("failed over");
    assert!(hold < promoted, "{:#?}", sim.events());
    assert_eq!(sim.world().clouds["dc1"].leader.as_deref(), Some("dc1-pg3"));
}

#[tokio::test(start_paused = true)]
async fn a_hold_that_cannot_be_written_stops_before_any_promotion() {
    // dc1-pg1 holds a commit too and is held first; dc1-pg2's hold fails.
    let sim = leaderless(|h| {
        h.commits = vec!["2026-12-01 10:00:01+00".into()];
        h.refuses_hold = true;
    });
    {
        let mut w = sim.world();
        let h = w.hosts.get_mut("dc1-pg1").unwrap();
        h.lsn = 0x5002000;
        h.commits = vec!["2026-12-01 10:00:02+00".into()];
    }
    let e = format!("{:#}", failover(&sim, &opts(true)).await.unwrap_err());
    assert!(
        e.contains("dc1-pg2: the hold could not be written") && e.contains("nothing was promoted"),
        "{e}"
    );
    // dc1-pg1's Patroni was stopped before its hold: it stays stopped.
    assert!(
        e.contains("dc1-pg1: hold lifted (its Patroni was stopped before"),
        "{e}"
    );
    assert!(e.contains("dc1-pg2: no hold left"), "{e}");
    assert_eq!(at(&sim, "dc1-pg3: failover to it"), None, "{:#?}", sim.events());
    let w = sim.world();
    assert!(!w.hosts["dc1-pg1"].held && w.clouds["dc1"].leader.is_none());
    assert!(!w.hosts["dc1-pg1"].up, "an undo never starts what was stopped");
}

/// Issue 24: kill -9 at every host call of a failover that holds a host,
/// before the host gets the command and after it applied it; then the same
/// command again. Each time: never two masters, and in the end dc1-pg3
/// leads with dc1-pg2 held (a rerun after the promotion is refused: the
/// cloud has its master).
#[tokio::test(start_paused = true)]
async fn a_failover_killed_at_any_call_finishes_when_run_again() {
    use crate::testkit::CrashWhen;
    let commits = |h: &mut crate::testkit::SimHost| h.commits = vec!["2026-12-01 10:00:01+00".into()];
    let calls = {
        let sim = leaderless(commits);
        failover(&sim, &opts(true)).await.unwrap();
        let n = sim.world().calls;
        n
    };
    assert!(calls > 5, "a failover makes {calls} calls");
    for at in 0..calls {
        for when in [CrashWhen::Before, CrashWhen::After] {
            let sim = leaderless(commits);
            sim.world().crash = Some((at, when));
            let first = failover(&sim, &opts(true)).await;
            {
                let mut w = sim.world();
                w.crash = None;
                // The killed run's lease expires.
                w.lock = None;
            }
            if first.is_err() {
                if let Err(e) = failover(&sim, &opts(true)).await {
                    let e = format!("{e:#}");
                    assert!(
                        e.contains("has a master, dc1-pg3"),
                        "the rerun after a kill at call {at} ({when:?}): {e}"
                    );
                }
            }
            let w = sim.world();
            assert_eq!(w.clouds["dc1"].leader.as_deref(), Some("dc1-pg3"), "call {at} {when:?}");
            assert!(w.hosts["dc1-pg2"].held, "call {at} {when:?}: dc1-pg2 stays held");
            assert!(w.most_masters <= 1, "call {at} {when:?}");
        }
    }
}
