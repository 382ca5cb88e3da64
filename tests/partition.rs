//! Issue 11 end to end: a partition between data centers never leaves two
//! writable masters. One lab of three sites (dc1, dc2 and a witness), with a
//! client writing through the GLB every 100 ms and a monitor asking every
//! database host, from inside its own container (so also inside a
//! partitioned cloud), whether it takes writes:
//!
//! 1. a partition of the secondary cloud, then of the witness alone: the
//!    primary keeps serving with no write gap over 2 s;
//! 2. a partition of the primary cloud, auto failover off: it fences itself
//!    within the documented bound, `cloud make-primary` takes the lease once
//!    it expired, and after the heal the old primary follows with no pgha
//!    command, its rows equal to the new primary's;
//! 3. the same with auto failover on: the other cloud takes over by itself.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{sql, stderr, stdout, wait_for, writer, TestLab};

const NAME: &str = "pgha-part";
const P: &str = "10.78.0";
const DC1: [&str; 3] = ["dc1-pg1", "dc1-pg2", "dc1-pg3"];
const DC2: [&str; 3] = ["dc2-pg1", "dc2-pg2", "dc2-pg3"];
/// The lab design's `site.ttl`.
const TTL: u64 = 20;

fn glb() -> String {
    format!("{P}.5")
}

fn address(host: &str) -> String {
    let (cloud, n) = host.split_once("-pg").unwrap();
    format!("{P}.{}{n}", &cloud[2..])
}

/// Asks PostgreSQL on `host` itself (over its local socket, from inside its
/// container: a partition does not hide it) whether it takes writes.
fn read_write(host: &str) -> Option<bool> {
    let out = Command::new("timeout")
        .args(["3", "docker", "exec", "-u", "postgres", &format!("{NAME}-{host}")])
        .args(["psql", "-XAtc", "SELECT NOT pg_is_in_recovery()"])
        .output()
        .ok()?;
    match stdout(&out).trim() {
        "t" => Some(true),
        "f" => Some(false),
        _ => None,
    }
}

/// Every host's answer at one moment (asked in parallel).
fn writable_now() -> Vec<String> {
    let asks: Vec<_> = DC1
        .iter()
        .chain(&DC2)
        .map(|h| std::thread::spawn(move || (h.to_string(), read_write(h))))
        .collect();
    asks.into_iter()
        .filter_map(|a| a.join().ok())
        .filter(|(_, rw)| *rw == Some(true))
        .map(|(h, _)| h)
        .collect()
}

/// Samples `writable_now` until stopped: (when, writable hosts). Bounded:
/// at most 2000 samples.
struct Monitor {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<(Instant, Vec<String>)>>,
}

impl Monitor {
    fn start() -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut samples = Vec::new();
            for _ in 0..2000 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                samples.push((Instant::now(), writable_now()));
                std::thread::sleep(Duration::from_millis(200));
            }
            samples
        });
        Monitor { stop, handle }
    }

    /// Stops; panics if two hosts were ever writable at once.
    fn finish(self) -> Vec<(Instant, Vec<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.handle.join().unwrap();
        for (_, rw) in &samples {
            assert!(rw.len() <= 1, "two writable masters at once: {rw:?}");
        }
        samples
    }
}

/// The first moment, after `from`, at which `test` held for a sample.
fn first(samples: &[(Instant, Vec<String>)], from: Instant, test: impl Fn(&[String]) -> bool) -> Option<Instant> {
    samples
        .iter()
        .find(|(at, rw)| *at >= from && test(rw))
        .map(|(at, _)| *at)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// `ticks` on every host, as one string, equal to the master's.
fn same_rows_everywhere(pw: &str) -> String {
    let query = "SELECT count(*) || ':' || coalesce(md5(string_agg(id::text, ',' ORDER BY id)), '') FROM ticks";
    let master = sql(&glb(), 5000, pw, query).unwrap()[0][0].clone().unwrap();
    for host in DC1.iter().chain(&DC2) {
        wait_for(
            &format!("{host}'s rows equal the master's"),
            Duration::from_secs(60),
            || sql(&address(host), 5432, pw, query).is_ok_and(|r| r[0][0].as_deref() == Some(master.as_str())),
        );
    }
    master
}

fn status_json(lab: &TestLab) -> serde_json::Value {
    let out = lab.pgha(&["status", "--output", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status json: {e}: {}", stderr(&out)))
}

/// How many acknowledged ids are missing on the cluster now.
fn lost(pw: &str, acked: &[i32]) -> usize {
    let ids = acked.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let have: usize = sql(
        &glb(),
        5000,
        pw,
        &format!("SELECT count(*) FROM ticks WHERE id IN ({ids})"),
    )
    .unwrap()[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    acked.len() - have
}

#[test]
fn partitions_never_leave_two_writable_masters() {
    if !common::e2e() {
        return;
    }
    let lab = TestLab::up(NAME, &format!("{P}.0/24"), &[]);
    let out = lab.pgha(&["deploy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "deploy: {}", stderr(&out));
    let pw = lab.superuser_password();
    let s = status_json(&lab);
    assert_eq!(s["site"]["holder"], "dc1", "{s}");
    assert_eq!(s["site"]["members"].as_array().unwrap().len(), 3, "{s}");
    assert!(s["findings"].as_array().unwrap().is_empty(), "{s}");
    // The GLB and every HAProxy list every cloud: the lease picks the master.
    let glb_cfg = lab.ssh_ok(&glb(), "cat /etc/haproxy/haproxy.cfg");
    assert!(
        glb_cfg.contains("server dc2-pg1") && glb_cfg.contains("server dc1-pg1"),
        "{glb_cfg}"
    );

    secondary_and_witness_cut_off(&lab, &pw);
    primary_cut_off(&lab, &pw, false);
    // dc2 is primary now; with auto failover the lease goes back to dc1 by itself.
    let design = std::fs::read_to_string(lab.design()).unwrap();
    std::fs::write(
        lab.design(),
        design.replace("auto_failover: false", "auto_failover: true"),
    )
    .unwrap();
    let out = lab.pgha(&["deploy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "deploy: {}", stderr(&out));
    primary_cut_off(&lab, &pw, true);
}

/// The primary keeps serving while the secondary cloud, then the witness
/// alone, is cut off for longer than the lease lives.
fn secondary_and_witness_cut_off(lab: &TestLab, pw: &str) {
    let monitor = Monitor::start();
    let (stop, handle) = writer(&glb(), pw);
    for site in ["dc2", "witness"] {
        let out = lab.lab(&["partition", site]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        std::thread::sleep(Duration::from_secs(TTL + 10));
        let out = lab.lab(&["unpartition", site]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    stop.store(true, Ordering::Relaxed);
    let w = handle.join().unwrap();
    let samples = monitor.finish();
    eprintln!(
        "figure: dc2, then the witness, cut off {} s each: longest write gap through the GLB {}, {} writes",
        TTL + 10,
        secs(w.gap),
        w.acked.len()
    );
    assert!(w.gap <= Duration::from_secs(2), "a write gap of {:?}", w.gap);
    for (_, rw) in &samples {
        assert!(rw.iter().all(|h| h.starts_with("dc1")), "writable outside dc1: {rw:?}");
    }
    // The secondary cloud caught up by itself.
    same_rows_everywhere(pw);
}

/// The primary cloud (`old`) is cut off from everything, this machine
/// included. It fences itself; the other cloud becomes primary (by
/// `cloud make-primary`, or by itself with auto failover); after the heal
/// the old one follows with no pgha command.
fn primary_cut_off(lab: &TestLab, pw: &str, auto: bool) {
    let (old, new, old_hosts, new_hosts) = if auto {
        ("dc2", "dc1", DC2, DC1)
    } else {
        ("dc1", "dc2", DC1, DC2)
    };
    let mode = if auto { "auto failover" } else { "manual" };
    let monitor = Monitor::start();
    let (stop, handle) = writer(&glb(), pw);
    std::thread::sleep(Duration::from_secs(2));
    let cut = Instant::now();
    let out = lab.lab(&["partition", old, "--operator"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The bound documented for the fence: a third of the ttl without a
    // renewal, the requests then in flight (three of ttl/15), the stop.
    let bound = Duration::from_secs_f64(TTL as f64 / 3.0 + 3.0 * TTL as f64 / 15.0 + 3.0);
    wait_for(
        &format!("{old} to fence its master"),
        bound + Duration::from_secs(5),
        || old_hosts.iter().all(|h| read_write(h) != Some(true)),
    );
    if !auto {
        let out = lab.pgha(&["cloud", "make-primary", new, "--yes"]);
        assert_eq!(out.status.code(), Some(0), "make-primary: {}", stderr(&out));
    }
    wait_for(&format!("{new} to take writes"), Duration::from_secs(TTL * 3), || {
        new_hosts.iter().any(|h| read_write(h) == Some(true))
    });
    wait_for("writes through the GLB", Duration::from_secs(30), || {
        sql(&glb(), 5000, pw, "SELECT 1 WHERE NOT pg_is_in_recovery()").is_ok_and(|r| r.len() == 1)
    });
    std::thread::sleep(Duration::from_secs(2));
    let out = lab.lab(&["unpartition", old]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The old primary cloud follows with no pgha command.
    wait_for(&format!("{old} to follow {new}"), Duration::from_secs(120), || {
        let s = status_json(lab);
        s["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["cloud"] != old || (h["read_write"] == false && h["state"] == "streaming"))
    });
    stop.store(true, Ordering::Relaxed);
    let w = handle.join().unwrap();
    let samples = monitor.finish();
    let fenced = first(&samples, cut, |rw| rw.iter().all(|h| !h.starts_with(old))).unwrap();
    let promoted = first(&samples, cut, |rw| rw.iter().any(|h| h.starts_with(new))).unwrap();
    let last_before = w.at.iter().rev().find(|t| **t < cut).copied().unwrap_or(cut);
    let first_after = w.at.iter().find(|t| **t > promoted).copied();
    let rows = same_rows_everywhere(pw);
    let lost = lost(pw, &w.acked);
    eprintln!(
        "figure: {mode}: {old} partitioned: fenced after {} (bound {}), {new} writable after {}, first write through \
         the GLB after {}; acknowledged writes lost: {lost} of {}; rows on all 6 hosts equal ({rows})",
        secs(fenced - cut),
        secs(bound),
        secs(promoted - cut),
        first_after.map_or("-".into(), |t| secs(t - last_before)),
        w.acked.len()
    );
    assert!(fenced - cut <= bound, "{old} fenced after {:?}", fenced - cut);
    // The GLB is outside the old cloud: during the cut nothing reached it.
    // Manually, the new cloud caught up before it was promoted; by itself it
    // takes over within `maximum_lag` of the last position the old primary
    // published: what was in flight then (a write or two) may be lost.
    if auto {
        assert!(lost <= 5, "{lost} acknowledged writes lost");
    } else {
        assert_eq!(lost, 0, "acknowledged writes lost");
    }
    if auto {
        // The design learns of it: `make-primary` records the takeover.
        let s = status_json(lab);
        assert_eq!(s["site"]["holder"], new, "{s}");
        let out = lab.pgha(&["cloud", "make-primary", new, "--yes"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "make-primary after the takeover: {}",
            stderr(&out)
        );
    }
    // What the flip owed the cut-off cloud (exact standby settings) is the
    // next deploy's; then all is well.
    let out = lab.pgha(&["deploy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "deploy: {}", stderr(&out));
    let out = lab.pgha(&["status"]);
    assert_eq!(out.status.code(), Some(0), "status: {}{}", stdout(&out), stderr(&out));
}
