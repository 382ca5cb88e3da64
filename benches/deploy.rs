//! `cargo bench --bench deploy`: on a fresh default lab (2 clouds x 3 hosts,
//! GLB, witness, a repository host per cloud; baked image), the time from `pgha deploy` to the first write acknowledged
//! through the GLB, and the time of a no-op re-deploy. Prints figures only.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{sql, TestLab};

fn main() {
    let lab = TestLab::up("pgha-bench", "10.74.0.0/24", &common::bench_os());
    let start = Instant::now();
    let deploy = std::process::Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(["deploy", "--yes", "-f"])
        .arg(lab.design())
        .env("PGHA_PLAIN", "1")
        .output()
        .expect("pgha runs");
    let deployed = start.elapsed();
    assert!(deploy.status.success(), "{}", String::from_utf8_lossy(&deploy.stderr));
    let pw = lab.superuser_password();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ok = sql(
            "10.74.0.5",
            5000,
            &pw,
            "CREATE TABLE IF NOT EXISTS bench (id int); INSERT INTO bench VALUES (1)",
        )
        .is_ok();
        if ok || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let first_write = start.elapsed();
    println!(
        "fresh deploy ({}, default lab: 2x3, GLB, witness, 2 repository hosts; baked): pgha deploy {:.1} s, first write through the GLB at {:.1} s",
        common::bench_os()[1],
        deployed.as_secs_f64(),
        first_write.as_secs_f64()
    );
    let mut noop = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = lab.pgha(&["deploy", "--yes"]);
        assert!(out.status.success());
        noop.push(t.elapsed().as_secs_f64());
    }
    noop.sort_by(f64::total_cmp);
    println!(
        "no-op re-deploy: median {:.2} s, min {:.2} s (5 runs)",
        noop[2], noop[0]
    );
}
