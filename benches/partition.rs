//! `cargo bench --bench partition`: the primary cloud cut off from the other
//! sites (issue 11), five times with auto failover off (`cloud make-primary`
//! after the fence) and five times on, on one lab with a witness and a
//! client writing through the GLB every 100 ms. Prints, per run, the time
//! from the cut to the fence and to the first write on the new primary, and
//! the acknowledged writes lost; then the worst of each. `PGHA_PARTITION_RUNS`
//! changes the count (at most 20).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::partition::{cut_primary, secs, set_auto_failover, Cut, Sites};
use common::TestLab;

const SITES: Sites = Sites {
    name: "pgha-bench-part",
    prefix: "10.69.0",
};

fn main() {
    let runs: usize = std::env::var("PGHA_PARTITION_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .clamp(1, 20);
    let mut args = common::bench_os();
    // Like its test: the default lab, backups on (a lost data center takes
    // its repository with it). Debian 12's pgBackRest verifies certificates
    // by DNS name only, so its lab has none.
    if args.contains(&"debian12") {
        args.push("--no-backup");
    }
    let lab = TestLab::up(SITES.name, &format!("{}.0/24", SITES.prefix), &args);
    let out = lab.pgha(&["deploy", "--yes"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let pw = lab.superuser_password();
    println!("lab with a witness, site ttl 20 s, {runs} runs per mode");
    for (mode, auto) in [("manual", false), ("auto failover", true)] {
        set_auto_failover(&lab, auto);
        let cuts: Vec<Cut> = (0..runs)
            .map(|i| {
                let cut = cut_primary(SITES, &lab, &pw, auto);
                println!("run {}: {}", i + 1, cut.describe(mode));
                cut
            })
            .collect();
        let worst = |f: fn(&Cut) -> Duration| cuts.iter().map(f).max().unwrap_or_default();
        println!(
            "{mode}, {runs} runs: fence at most {}, new primary writable at most {}, first write through the GLB at \
             most {}; acknowledged writes lost: {} in all ({} acknowledged)",
            secs(worst(|c| c.fenced)),
            secs(worst(|c| c.promoted)),
            secs(worst(|c| c.first_write.unwrap_or_default())),
            cuts.iter().map(|c| c.lost.len()).sum::<usize>(),
            cuts.iter().map(|c| c.acked).sum::<usize>()
        );
    }
}
