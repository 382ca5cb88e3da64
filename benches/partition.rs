//! `cargo bench --bench partition`: the primary cloud cut off from the other
//! sites (issue 11), five times with auto failover off (`cloud make-primary`
//! after the fence) and five times on, on one lab with a witness and a
//! client writing through the GLB every 100 ms. Prints, per run, the time
//! from the cut to the fence and to the first write on the new primary, and
//! the acknowledged writes lost; then the worst of each. Then the primary
//! cloud powered off whole three times (`PGHA_POWEROFF_RUNS`), its repository
//! host with it, and made primary elsewhere by hand. `PGHA_PARTITION_RUNS`
//! changes the count of cuts (at most 20).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::partition::{cut_primary, lose_primary, secs, set_auto_failover, Cut, Loss, Sites};
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
    let power_offs: usize = std::env::var("PGHA_POWEROFF_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
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
                let cut = cut_primary(SITES, &lab, &pw, auto, None);
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
    set_auto_failover(&lab, false);
    let losses: Vec<Loss> = (0..power_offs)
        .map(|i| {
            let loss = lose_primary(SITES, &lab, &pw);
            println!("power-off {}: {}", i + 1, loss.describe());
            loss
        })
        .collect();
    let worst = |f: fn(&Loss) -> Duration| losses.iter().map(f).max().unwrap_or_default();
    println!(
        "power-off, {power_offs} runs: new primary writable at most {}, first write through the GLB at most {}, the \
         old cloud following at most {} after its power-on; acknowledged writes lost: {} in all ({} acknowledged)",
        secs(worst(|l| l.promoted)),
        secs(worst(|l| l.first_write)),
        secs(worst(|l| l.followed)),
        losses.iter().map(|l| l.lost.len()).sum::<usize>(),
        losses.iter().map(|l| l.acked).sum::<usize>()
    );
}
