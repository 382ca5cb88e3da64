//! deploy against a fake fleet: a converged cluster is only read, drift is
//! repaired with the least change (and verified), a stale design is refused.

use super::*;
use crate::components::{etcd, glb, haproxy, patroni, site};
use crate::deploy::work::{HostWork, Work};
use crate::testkit::{Sim, THREE_CLOUDS};

fn yes() -> Options {
    Options {
        only: Vec::new(),
        yes: true,
        ..Default::default()
    }
}

async fn deploy(sim: &Sim) -> anyhow::Result<()> {
    let design = sim.design();
    let connect = sim.connector();
    run_with(&design, &yes(), ui::Output::Json, &connect).await
}

/// Events that change a host (everything but reads, health checks and the lock).
fn changes(sim: &Sim) -> Vec<String> {
    sim.events()
        .into_iter()
        .filter(|e| {
            let what = e.split_once(": ").map_or("", |(_, w)| w);
            // pgha's own journal is not a change of the hosts.
            !(what.starts_with("read ") || what == "etcd health" || what.contains("lock") || what == "journal")
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_converged_cluster_is_only_read() {
    let sim = Sim::new(THREE_CLOUDS);
    deploy(&sim).await.unwrap();
    assert_eq!(changes(&sim), Vec::<String>::new());
    let e = sim.events();
    assert!(
        e[..9].iter().all(|x| x.ends_with(": read os")),
        "releases first: {e:#?}"
    );
    assert_eq!(e[9], "dc1-pg1: lock", "facts are read under the lock: {e:#?}");
    // Verified by those facts: every host's, the GLB's statistics among
    // them, and nothing read again.
    let after: Vec<&String> = e[9..]
        .iter()
        .filter(|x| !x.ends_with(": read facts") && !x.contains("lock"))
        .collect();
    assert!(after.is_empty(), "read after the facts: {after:#?}");
    assert!(e.iter().any(|x| x == "glb1: read facts"), "{e:#?}");
}

/// A deploy that changes nothing but whose facts cast a doubt (a host's
/// HAProxy silent) checks live: here it waits for that host, and fails
/// naming it.
#[tokio::test(start_paused = true)]
async fn a_converged_cluster_whose_facts_show_a_silent_haproxy_is_checked_live() {
    let sim = Sim::new(THREE_CLOUDS);
    sim.world().hosts.get_mut("dc2-pg3").unwrap().stats_silent = true;
    let e = format!("{:#}", deploy(&sim).await.unwrap_err());
    assert!(e.contains("dc2 is not healthy") && e.contains("dc2-pg3"), "{e}");
    sim.world().hosts.get_mut("dc2-pg3").unwrap().stats_silent = false;
    deploy(&sim).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_world_readable_patroni_config_gets_its_mode_back_without_a_restart() {
    let sim = Sim::new(THREE_CLOUDS);
    sim.world()
        .hosts
        .get_mut("dc2-pg2")
        .unwrap()
        .meta
        .insert(patroni::CONFIG.path.into(), "root:root:644".into());
    deploy(&sim).await.unwrap();
    assert_eq!(changes(&sim), ["dc2-pg2: chown+chmod /etc/patroni/config.yml"]);
    assert_eq!(
        sim.world().hosts["dc2-pg2"].meta[patroni::CONFIG.path],
        "postgres:postgres:600"
    );
    // On pgha's journal: the deploy and the step that changed something.
    let journal = sim.world().journal.clone();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert!(journal[0].contains(r#""command":"deploy""#) && journal[0].contains(r#""outcome":"ok""#));
    sim.world().log.clear();
    deploy(&sim).await.unwrap();
    assert_eq!(changes(&sim), Vec::<String>::new(), "the next deploy changes nothing");
    assert_eq!(
        sim.world().journal.len(),
        1,
        "a deploy that changes nothing is not journaled"
    );
}

#[tokio::test(start_paused = true)]
async fn an_edited_haproxy_config_is_rewritten_reloaded_then_verified() {
    let sim = Sim::new(THREE_CLOUDS);
    {
        let mut w = sim.world();
        let h = w.hosts.get_mut("dc3-pg1").unwrap();
        let cfg = h.files[haproxy::CONFIG.path].replace("maxconn 1000", "maxconn 7");
        h.files.insert(haproxy::CONFIG.path.into(), cfg.clone());
        h.active_haproxy = cfg;
    }
    deploy(&sim).await.unwrap();
    assert_eq!(
        changes(&sim),
        ["dc3-pg1: install /etc/haproxy/haproxy.cfg", "dc3-pg1: reload haproxy"]
    );
    let e = sim.events();
    let reload = e.iter().position(|x| x == "dc3-pg1: reload haproxy").unwrap();
    assert!(
        e[reload..].iter().any(|x| x == "dc3-pg1: read stats"),
        "verified after the change: {e:#?}"
    );
    assert!(sim.world().hosts["dc3-pg1"].active_haproxy.contains("maxconn 1000"));
}

#[tokio::test(start_paused = true)]
async fn a_design_that_missed_a_flip_is_refused_before_any_change() {
    let sim = Sim::new(THREE_CLOUDS);
    {
        // Another operator made dc2 primary with another copy of the design.
        let mut w = sim.world();
        w.clouds.get_mut("dc1").unwrap().standby_of = Some("dc2".into());
        w.clouds.get_mut("dc2").unwrap().standby_of = None;
        w.clouds.get_mut("dc3").unwrap().standby_of = Some("dc2".into());
    }
    let e = format!("{:#}", deploy(&sim).await.unwrap_err());
    assert!(e.contains("deploying would make two masters"), "{e}");
    assert_eq!(changes(&sim), Vec::<String>::new());
    assert_eq!(sim.world().writable_masters(), ["dc2-pg1"]);
    assert!(sim.world().lock.is_none(), "the lock is released");
}

#[tokio::test(start_paused = true)]
async fn a_host_it_cannot_deploy_stops_the_run_and_frees_the_lock() {
    let sim = Sim::new(THREE_CLOUDS);
    sim.world().hosts.get_mut("glb1").unwrap().os = "fedora 41".into();
    let e = format!("{:#}", deploy(&sim).await.unwrap_err());
    assert!(e.contains("glb1") && e.contains("supports Debian"), "{e}");
    assert_eq!(changes(&sim), Vec::<String>::new());
    assert!(sim.world().lock.is_none(), "the lock is released: {:#?}", sim.events());
}

/// A database host on a release pgha knows no PostgreSQL for, and hosts whose
/// releases ship different versions, are refused before the lock is taken.
#[tokio::test(start_paused = true)]
async fn hosts_without_one_postgres_version_are_refused_before_anything() {
    let sim = Sim::new(THREE_CLOUDS);
    sim.world().hosts.get_mut("dc2-pg1").unwrap().os = "fedora 41".into();
    let e = deploy(&sim).await.unwrap_err();
    assert!(e.downcast_ref::<Usage>().is_some(), "exit 2: {e:#}");
    let e = format!("{e:#}");
    assert!(
        e.contains("dc2-pg1 runs `fedora 41`") && e.contains("platform.postgres_version"),
        "{e}"
    );

    sim.world().hosts.get_mut("dc2-pg1").unwrap().os = "debian 12".into();
    let e = format!("{:#}", deploy(&sim).await.unwrap_err());
    assert!(
        e.contains("PostgreSQL 15 on dc2-pg1 (debian 12)") && e.contains("PostgreSQL 17 on dc1-pg1 (debian 13)"),
        "{e}"
    );
    assert!(
        sim.events().iter().all(|x| x.ends_with(": read os")),
        "{:#?}",
        sim.events()
    );
}

/// A version the host's apt sources cannot install, or another major than
/// the one Patroni runs, is refused on the facts: nothing changes, the lock
/// is let go, exit 2, and the hint names what would work.
#[tokio::test(start_paused = true)]
async fn a_postgres_the_host_cannot_run_is_refused_on_the_facts() {
    let sim = Sim::new(THREE_CLOUDS);
    sim.world().hosts.get_mut("dc2-pg2").unwrap().apt_ships = Some(vec![15]);
    let e = deploy(&sim).await.unwrap_err();
    assert!(e.downcast_ref::<Usage>().is_some(), "exit 2: {e:#}");
    let e = format!("{e:#}");
    assert!(e.contains("dc2-pg2 (debian 13): PostgreSQL 17"), "{e}");
    assert!(
        e.contains("ship: postgresql-15") && e.contains("postgres_version: 15"),
        "{e}"
    );
    assert!(e.contains("apt.postgresql.org"), "{e}");
    assert_eq!(changes(&sim), Vec::<String>::new());
    assert!(sim.world().lock.is_none(), "the lock is released");

    sim.world().hosts.get_mut("dc2-pg2").unwrap().apt_ships = None;
    sim.world().hosts.get_mut("dc1-pg3").unwrap().patroni_major = Some(15);
    let e = format!("{:#}", deploy(&sim).await.unwrap_err());
    assert!(
        e.contains("dc1-pg3: Patroni runs PostgreSQL 15") && e.contains("upgrade"),
        "{e}"
    );
    assert_eq!(changes(&sim), Vec::<String>::new());
    assert!(sim.world().lock.is_none(), "the lock is released");
}

/// On Debian 12 hosts a design naming no version gets PostgreSQL 15: its
/// package, binaries, data directory and distribution unit.
#[tokio::test(start_paused = true)]
async fn debian_12_hosts_get_their_release_postgres() {
    let sim = Sim::on(THREE_CLOUDS, crate::release::DEBIAN12);
    deploy(&sim).await.unwrap();
    assert_eq!(
        changes(&sim),
        Vec::<String>::new(),
        "the facts script asked for postgresql-15"
    );
    let w = sim.world();
    let config = &w.hosts["dc1-pg1"].files[patroni::CONFIG.path];
    assert!(
        config.contains("data_dir: \"/var/lib/postgresql/15/pgha\"") && config.contains("/usr/lib/postgresql/15/bin")
    );
}

#[tokio::test(start_paused = true)]
async fn an_unfinished_flip_blocks_deploy() {
    let sim = Sim::new(THREE_CLOUDS);
    let design = sim.design();
    state::record_flip(
        &design,
        Some(state::FlipIntent {
            verb: "make-primary".into(),
            cloud: "dc2".into(),
            since: 0,
            done_step: 2,
        }),
    )
    .unwrap();
    let e = format!("{:#}", deploy(&sim).await.unwrap_err());
    assert!(e.contains("pgha cloud make-primary dc2"), "{e}");
    assert!(
        sim.events().is_empty(),
        "no host was even contacted: {:#?}",
        sim.events()
    );
}

/// Issue 13: a host dropped from the design that leads its cloud is not
/// removed: refused before any change, with the way out.
#[tokio::test(start_paused = true)]
async fn a_dropped_leader_is_refused_before_any_change() {
    let sim = Sim::new(THREE_CLOUDS);
    sim.world.lock().unwrap().clouds.get_mut("dc1").unwrap().leader = Some("dc1-pg3".into());
    let without = THREE_CLOUDS.replace(", {name: dc1-pg3, address: 10.0.1.3}", "");
    let design = crate::design::load_str(&without, &sim.path).unwrap().design;
    let err = run_with(&design, &yes(), ui::Output::Json, &sim.connector())
        .await
        .unwrap_err();
    assert_eq!(crate::error::exit_code(&err), 2, "{err:#}");
    let text = format!("{err:#}");
    assert!(text.contains("dc1-pg3 is no longer in"), "{text}");
    assert!(text.contains("deploy does not remove a cloud's leader"), "{text}");
    assert!(text.contains("pgha switchover"), "{text}");
    assert_eq!(changes(&sim), Vec::<String>::new());
}

/// Issue 13: with the site lease on, a cloud's first host runs its site
/// member; dropping it, or reordering the hosts, would name a new one.
/// Refused before any change (seen failing without the refusal: the run
/// went on to its removal step).
#[tokio::test(start_paused = true)]
async fn a_new_site_member_is_refused_before_any_change() {
    let text = crate::testkit::with_site_lease();
    let sim = Sim::new(&text);
    sim.world.lock().unwrap().clouds.get_mut("dc1").unwrap().leader = Some("dc1-pg3".into());
    let dropped = text.replace("{name: dc1-pg1, address: 10.0.1.1}, ", "");
    let reordered = text.replace(
        "{name: dc1-pg1, address: 10.0.1.1}, {name: dc1-pg2, address: 10.0.1.2}",
        "{name: dc1-pg2, address: 10.0.1.2}, {name: dc1-pg1, address: 10.0.1.1}",
    );
    for variant in [dropped, reordered] {
        assert_ne!(variant, text);
        let design = crate::design::load_str(&variant, &sim.path).unwrap().design;
        let err = run_with(&design, &yes(), ui::Output::Json, &sim.connector())
            .await
            .unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2, "{err:#}");
        let text = format!("{err:#}");
        assert!(
            text.contains("dc1-pg2 (now dc1's first host): not a member of the site lease's etcd cluster"),
            "{text}"
        );
        assert_eq!(changes(&sim), Vec::<String>::new());
    }
}

/// An etcd member restarted under a running cluster: the cloud's Patroni
/// is paused first and resumed after (a master can restart at once when
/// its etcd member shuts down mid-request; seen on the lab), and a cloud
/// the operator paused stays paused.
#[tokio::test(start_paused = true)]
async fn etcd_restarts_run_with_patroni_paused() {
    for operator_paused in [false, true] {
        let sim = Sim::new(THREE_CLOUDS);
        {
            let mut w = sim.world();
            w.clouds.get_mut("dc1").unwrap().paused = operator_paused;
            let h = w.hosts.get_mut("dc1-pg2").unwrap();
            let env = h.files[etcd::CONFIG.path].replace("ETCD_HEARTBEAT_INTERVAL", "ETCD_HEARTBEAT_INTERVAL_OLD");
            h.files.insert(etcd::CONFIG.path.into(), env);
        }
        deploy(&sim).await.unwrap();
        let c = changes(&sim);
        let restart = c.iter().position(|x| x == "dc1-pg2: restart etcd").expect("a restart");
        let pause = c.iter().position(|x| x.ends_with(": pause patroni"));
        let resume = c.iter().position(|x| x.ends_with(": resume patroni"));
        if operator_paused {
            assert_eq!((pause, resume), (None, None), "{c:#?}");
        } else {
            assert!(pause.is_some_and(|p| p < restart), "{c:#?}");
            assert!(resume.is_some_and(|r| r > restart), "{c:#?}");
        }
        assert_eq!(sim.world().clouds["dc1"].paused, operator_paused);
    }
}

#[test]
fn only_consecutive_steps_without_changes_run_together() {
    let d = crate::design::load_str(THREE_CLOUDS, std::path::Path::new("pgha.yaml"))
        .unwrap()
        .design;
    let plan = Plan::deployment(&d);
    let work: Vec<StepWork> = plan
        .steps
        .iter()
        .map(|s| StepWork {
            step: s.clone(),
            hosts: vec![HostWork {
                // The removal step lists no host until facts find one.
                host: s.hosts.first().cloned().unwrap_or_default(),
                // Step 2 changes something: it runs alone, between groups.
                items: if s.number == 2 {
                    vec![Work::Reload("etcd")]
                } else {
                    vec![]
                },
            }],
            serial: false,
        })
        .collect();
    let groups: Vec<Vec<usize>> = read_groups(&work)
        .iter()
        .map(|g| g.iter().map(|w| w.step.number).collect())
        .collect();
    let n = work.len();
    assert_eq!(groups, [vec![1], vec![2], (3..=n).collect::<Vec<_>>()]);
}

/// Issue 23: etcd's users are set where a cluster lacks them (an etcd
/// without authentication, or one set for other hosts or another password),
/// in each cloud's etcd and the site's, from one member each; the next run
/// finds the markers and changes nothing.
#[tokio::test(start_paused = true)]
async fn etcd_users_are_set_once_per_cluster() {
    let sim = Sim::new(&crate::testkit::with_site_lease());
    for h in sim.world().hosts.values_mut() {
        h.cloud_access = None;
        h.site_access = h.site_access.as_ref().map(|_| "stale".to_string());
    }
    deploy(&sim).await.unwrap();
    let set: Vec<String> = changes(&sim).into_iter().filter(|e| e.contains("secure")).collect();
    assert_eq!(
        set,
        [
            "dc1-pg1: secure etcd",
            "dc2-pg1: secure etcd",
            "dc3-pg1: secure etcd",
            "dc1-pg1: secure site etcd"
        ],
        "{:#?}",
        sim.events()
    );
    sim.world().log.clear();
    deploy(&sim).await.unwrap();
    assert_eq!(changes(&sim), Vec::<String>::new());
}

/// Issue 23: a cloud whose etcd has no users while its Patroni runs with
/// the certificate it started with before (a cluster an earlier pgha
/// deployed) is refused before any change: the gateway would refuse that
/// Patroni once authentication is on. With users set, it goes on.
#[tokio::test(start_paused = true)]
async fn etcd_users_are_refused_under_a_patroni_started_without_them() {
    let sim = Sim::new(&crate::testkit::with_site_lease());
    for (name, h) in sim.world().hosts.iter_mut() {
        h.cloud_access = None;
        h.patroni_gateway = name != "dc2-pg2";
    }
    let e = format!("{:#}", deploy(&sim).await.unwrap_err());
    assert!(
        e.contains("dc2's etcd has no users yet, and Patroni runs on dc2-pg2") && e.contains("Nothing was changed"),
        "{e}"
    );
    assert_eq!(changes(&sim), Vec::<String>::new());
    sim.world().hosts.get_mut("dc2-pg2").unwrap().patroni_gateway = true;
    deploy(&sim).await.unwrap();
    assert_eq!(
        changes(&sim),
        ["dc1-pg1: secure etcd", "dc2-pg1: secure etcd", "dc3-pg1: secure etcd"]
    );
}

/// Issue 11: three clouds turn the site lease on; a converged cluster with
/// its site members, agents and lease is only read, the lease verified.
#[tokio::test(start_paused = true)]
async fn a_converged_cluster_with_the_site_lease_is_only_read() {
    let sim = Sim::new(&crate::testkit::with_site_lease());
    deploy(&sim).await.unwrap();
    assert_eq!(changes(&sim), Vec::<String>::new());
    let e = sim.events();
    assert!(
        !e.iter().any(|x| x.ends_with(": read the site lease")),
        "the site lease is verified by the facts: {e:#?}"
    );
    assert!(!e.iter().any(|x| x.ends_with(": read the armed mark")), "{e:#?}");
}

/// Issue 23: deploy calls the site done only once every database host's
/// agent has reached it: until then silence from the site fences no master
/// there.
#[tokio::test(start_paused = true)]
async fn deploy_fails_while_a_hosts_site_fences_are_unarmed() {
    let sim = Sim::new(&crate::testkit::with_site_lease());
    sim.world().hosts.get_mut("dc2-pg2").unwrap().site_blind = true;
    let e = format!("{:#}", deploy(&sim).await.unwrap_err());
    assert!(e.contains("its fences are not armed"), "{e}");
    assert!(e.contains("site/verify"), "{e}");
    sim.world().hosts.get_mut("dc2-pg2").unwrap().site_blind = false;
    deploy(&sim).await.unwrap();
}

/// Issue 23: a cluster deployed before the site gate existed. Each cloud's
/// gates run before any of its HAProxy instances names them in a check: a
/// check of a gate that is not there yet would close the route to the master.
#[tokio::test(start_paused = true)]
async fn the_site_gates_of_a_cloud_run_before_its_haproxy_checks_them() {
    let sim = Sim::new(&crate::testkit::with_site_lease());
    let clouds: Vec<(String, Vec<String>)> = sim
        .design()
        .clouds
        .iter()
        .map(|c| (c.name.clone(), c.hosts.iter().map(|h| h.name.clone()).collect()))
        .collect();
    {
        let mut w = sim.world();
        for (_, hosts) in &clouds {
            for name in hosts {
                let h = w.hosts.get_mut(name).unwrap();
                h.files.remove(site::GATE.path);
                h.files.remove(site::GATE_UNIT.path);
                // The config before the gate: Patroni's /primary alone.
                let cfg: String = h.files[haproxy::CONFIG.path]
                    .lines()
                    .filter(|l| !l.contains("http-check connect port") && !l.contains("uri /lease"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                h.files.insert(haproxy::CONFIG.path.into(), cfg.clone());
                h.active_haproxy = cfg;
            }
        }
    }
    deploy(&sim).await.unwrap();
    let c = changes(&sim);
    for (cloud, hosts) in &clouds {
        let at = |what: &str| -> Vec<usize> {
            hosts
                .iter()
                .map(|h| {
                    c.iter()
                        .position(|x| *x == format!("{h}: {what}"))
                        .unwrap_or_else(|| panic!("{h}: {what} missing: {c:#?}"))
                })
                .collect()
        };
        let gates = at("restart pgha-site-gate");
        let reloads = at("reload haproxy");
        assert!(
            gates.iter().max() < reloads.iter().min(),
            "{cloud}: every gate before any HAProxy reload: {c:#?}"
        );
    }
    sim.world().log.clear();
    deploy(&sim).await.unwrap();
    assert_eq!(changes(&sim), Vec::<String>::new(), "the next deploy changes nothing");
}

/// Issue 24: deploy prints the document every changing command prints,
/// `{command, dry_run, plan, results, ok}` (plus `changed`), its plan on a
/// dry run too.
#[tokio::test(start_paused = true)]
async fn a_dry_run_reports_its_plan_in_the_one_document() {
    let sim = Sim::new(THREE_CLOUDS);
    let design = sim.design();
    sim.world()
        .hosts
        .get_mut("dc2-pg2")
        .unwrap()
        .files
        .remove(haproxy::CONFIG.path);
    let opts = Options { dry_run: true, ..yes() };
    let (report, outcome) = apply(&design, &opts, ui::Output::Json, &sim.connector()).await;
    outcome.unwrap();
    let report = report.expect("the document was printed");
    let v = serde_json::to_value(&report).unwrap();
    assert_eq!(v["command"], "deploy");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["ok"], true);
    assert_eq!(v["results"], serde_json::json!([]));
    let plan = v["plan"].as_array().unwrap();
    assert_eq!(plan.len(), Plan::deployment(&design).steps.len());
    let changing: Vec<&serde_json::Value> = plan.iter().filter(|s| s["changes"] != serde_json::json!([])).collect();
    assert_eq!(changing.len(), 1, "{plan:#?}");
    assert_eq!(v["changed"], 1);
    assert!(
        changing[0]["changes"][0].as_str().unwrap().starts_with("dc2-pg2: "),
        "{changing:#?}"
    );
    assert!(changing[0]["number"].is_u64() && changing[0]["action"].is_string());
    assert_eq!(changes(&sim), Vec::<String>::new(), "a dry run changes nothing");
}

/// [`THREE_CLOUDS`] with a virtual IP in dc1 only.
fn with_vip() -> String {
    THREE_CLOUDS.replacen(
        "    status: primary\n",
        "    status: primary\n    vip: {address: 10.0.1.100}\n",
        1,
    )
}

/// Issue 27: a cloud's virtual IP. Converged, it is only read (its files on
/// dc1's hosts only); an edited vip-manager config is rewritten and that
/// host's vip-manager restarted, nothing else.
#[tokio::test(start_paused = true)]
async fn a_virtual_ip_converges_with_the_least_change() {
    use crate::components::vip;
    let sim = Sim::new(&with_vip());
    deploy(&sim).await.unwrap();
    assert_eq!(changes(&sim), Vec::<String>::new());
    {
        let mut w = sim.world();
        let h = w.hosts.get_mut("dc1-pg2").unwrap();
        let cfg = h.files[vip::MANAGER_CONFIG.path].replace("interval: 1000", "interval: 5000");
        h.files.insert(vip::MANAGER_CONFIG.path.into(), cfg);
        assert!(
            !w.hosts["dc2-pg1"].files.contains_key(vip::MANAGER_CONFIG.path),
            "only dc1 has a virtual IP"
        );
        w.log.clear();
    }
    deploy(&sim).await.unwrap();
    assert_eq!(
        changes(&sim),
        [
            "dc1-pg2: install /etc/pgha/vip-manager.yml",
            "dc1-pg2: restart pgha-vip-manager"
        ]
    );
    // etcd's v2 access, set by one host: the first that reads the marker
    // (a v2 root already; a host that does not may be no v2 user yet).
    for (unread, runner) in [
        (&["dc1-pg1", "dc1-pg2", "dc1-pg3"][..], "dc1-pg1"),
        (&["dc1-pg1"], "dc1-pg2"),
    ] {
        {
            let mut w = sim.world();
            for h in ["dc1-pg2", "dc1-pg3"] {
                w.hosts.get_mut(h).unwrap().vip_access = Some("an older digest".into());
            }
            for h in unread {
                w.hosts.get_mut(*h).unwrap().vip_access = None;
            }
            w.log.clear();
        }
        deploy(&sim).await.unwrap();
        assert_eq!(changes(&sim), [format!("{runner}: secure etcd v2")]);
        deploy(&sim).await.unwrap();
        assert_eq!(changes(&sim), [format!("{runner}: secure etcd v2")], "once");
    }
}

/// A virtual IP on an interface the hosts do not have is refused on the
/// facts, before any change (vip-manager would exit and restart for ever).
#[tokio::test(start_paused = true)]
async fn a_virtual_ip_on_a_missing_interface_is_refused_before_any_change() {
    let sim = Sim::new(&with_vip().replace("{address: 10.0.1.100}", "{address: 10.0.1.100, interface: ens9}"));
    let err = deploy(&sim).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("dc1-pg1 has no network interface `ens9` (it has eth0, lo)"),
        "{msg}"
    );
    assert!(err.downcast_ref::<Usage>().is_some(), "exit 2: {msg}");
    assert_eq!(changes(&sim), Vec::<String>::new());
}

/// Issue 28: a cluster an older pgha deployed runs clients of Patroni's
/// REST API that present no certificate (every file without the marker,
/// the GLB's checks included). A deploy replaces them while Patroni still
/// lets clients without one read (`optional`); the next requires
/// certificates; a deploy never loosens that again.
#[tokio::test(start_paused = true)]
async fn patroni_requires_client_certificates_once_no_older_client_runs() {
    use crate::components::rest::MARKER;
    let sim = Sim::new(&crate::testkit::with_site_lease());
    let verify = |sim: &Sim| {
        let w = sim.world();
        let modes: std::collections::BTreeSet<String> = w
            .hosts
            .values()
            .filter_map(|h| h.files.get(patroni::CONFIG.path))
            .map(|c| {
                c.lines()
                    .find(|l| l.starts_with("  verify_client: "))
                    .unwrap()
                    .to_string()
            })
            .collect();
        modes.into_iter().collect::<Vec<_>>()
    };
    assert_eq!(verify(&sim), ["  verify_client: required"]);
    for h in sim.world().hosts.values_mut() {
        for content in h.files.values_mut() {
            *content = content
                .replace(MARKER, "an older pgha")
                .replace("verify_client: required", "verify_client: none");
        }
    }
    deploy(&sim).await.unwrap();
    assert_eq!(verify(&sim), ["  verify_client: optional"]);
    {
        let w = sim.world();
        assert!(w.hosts["glb1"].files[glb::CONFIG.path].contains(MARKER));
        assert!(w.hosts["dc2-pg2"].files[site::AGENT.path].contains(MARKER));
    }
    deploy(&sim).await.unwrap();
    assert_eq!(verify(&sim), ["  verify_client: required"]);
    // One host's client back to an older pgha's: Patroni keeps requiring.
    let old = sim.world().hosts["glb1"].files[glb::CONFIG.path].replace(MARKER, "x");
    sim.world()
        .hosts
        .get_mut("glb1")
        .unwrap()
        .files
        .insert(glb::CONFIG.path.to_string(), old);
    deploy(&sim).await.unwrap();
    assert_eq!(verify(&sim), ["  verify_client: required"]);
}
