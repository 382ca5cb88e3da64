//! Issue 24: the engine's order, for every changing command against the
//! fake fleet of the default lab (backups and the site lease; the fake
//! reads no facts of a repository's host, so deploy and certs rotate run
//! with the site lease alone): refused at
//! the question (no terminal, no `--yes`), and refused when the design
//! changed between the plan and the answer. Either way no host changed,
//! nothing was journaled, and the cluster lock was released.

use crate::design::Design;
use crate::testkit::{default_lab, with_site_lease, Sim, World};
use crate::ui::Output;

#[derive(Debug, Clone, Copy)]
enum Cmd {
    Deploy,
    MakePrimary,
    MakeSecondary,
    Switchover,
    Failover,
    RecoverNode,
    Restore,
    Backup,
    Pause,
    Resume,
    CertsRotate,
}

const ALL: [Cmd; 11] = [
    Cmd::Deploy,
    Cmd::MakePrimary,
    Cmd::MakeSecondary,
    Cmd::Switchover,
    Cmd::Failover,
    Cmd::RecoverNode,
    Cmd::Restore,
    Cmd::Backup,
    Cmd::Pause,
    Cmd::Resume,
    Cmd::CertsRotate,
];

/// A fake fleet where `cmd` has something to do.
async fn ready(cmd: Cmd) -> Sim {
    let sim = match cmd {
        Cmd::Deploy | Cmd::CertsRotate => Sim::new(&with_site_lease()),
        _ => Sim::new(&default_lab()),
    };
    {
        let mut w = sim.world();
        match cmd {
            // A file to write.
            Cmd::Deploy => {
                w.hosts
                    .get_mut("dc2-pg2")
                    .expect("a host")
                    .files
                    .remove(crate::components::haproxy::CONFIG.path);
            }
            // dc1 lost its master; dc1-pg3 is as far as anyone.
            Cmd::Failover => {
                w.clouds.get_mut("dc1").expect("dc1").leader = None;
                w.hosts.get_mut("dc1-pg1").expect("a host").up = false;
            }
            Cmd::RecoverNode => w.hosts.get_mut("dc1-pg2").expect("a host").up = false,
            Cmd::Resume => {
                for c in w.clouds.values_mut() {
                    c.paused = true;
                }
            }
            _ => {}
        }
    }
    if matches!(cmd, Cmd::CertsRotate) {
        // The PKI the rotation replaces.
        let opts = crate::deploy::Options {
            yes: true,
            ..Default::default()
        };
        crate::deploy::run_with(&sim.design(), &opts, Output::Json, &sim.connector())
            .await
            .expect("the first deploy");
    }
    sim
}

/// Runs `cmd` as planned from `design`, answering `yes`.
async fn run(cmd: Cmd, sim: &Sim, design: &Design, yes: bool) -> anyhow::Result<()> {
    let fleet = sim.fleet(design);
    let out = Output::Json;
    let cloud = |name: &str| design.cloud(name).expect("a cloud").clone();
    match cmd {
        Cmd::Deploy => {
            let opts = crate::deploy::Options {
                yes,
                ..Default::default()
            };
            crate::deploy::apply(design, &opts, out, &sim.connector()).await.1
        }
        Cmd::MakePrimary | Cmd::MakeSecondary => {
            use super::cloud::{run_on, Flip, Options};
            let (name, flip) = match cmd {
                Cmd::MakePrimary => ("dc2", Flip::MakePrimary),
                _ => ("dc1", Flip::MakeSecondary),
            };
            let opts = Options {
                yes,
                force: false,
                dry_run: false,
            };
            run_on(&fleet, name, flip, &opts, out).await
        }
        Cmd::Switchover => {
            let opts = super::switchover::Options {
                to: None,
                yes,
                dry_run: false,
            };
            super::switchover::run_on(&fleet, &cloud("dc1"), &opts, out).await
        }
        Cmd::Failover => {
            let opts = super::failover::Options {
                to: "dc1-pg3".into(),
                accept_data_loss: false,
                yes,
                dry_run: false,
            };
            super::failover::run_on(&fleet, &cloud("dc1"), &opts, out).await
        }
        Cmd::RecoverNode => {
            let opts = super::recover::Options {
                yes,
                force: false,
                reclone: false,
                dry_run: false,
            };
            let c = cloud("dc1");
            let host = c.hosts[1].clone();
            super::recover::run_on(&fleet, &c, &host, &opts, out).await
        }
        Cmd::Restore => {
            let opts = super::restore::Options {
                target: crate::components::backup::Target::Latest,
                yes,
                dry_run: false,
            };
            super::restore::run_on(&fleet, "dc1", &opts, out).await
        }
        Cmd::Backup => {
            let opts = super::backup::Options {
                kind: crate::components::backup::Kind::Full,
                cloud: None,
                yes,
                dry_run: false,
            };
            super::backup::take_on(&fleet, &opts, out).await
        }
        Cmd::Pause | Cmd::Resume => {
            let opts = super::pause::Options {
                cloud: None,
                yes,
                dry_run: false,
            };
            let clouds = design.clouds_in_order();
            super::pause::run_on(&fleet, &clouds, matches!(cmd, Cmd::Pause), &opts, out).await
        }
        Cmd::CertsRotate => {
            let opts = super::certs::Options { yes, dry_run: false };
            let current = crate::pki::load(design, time::OffsetDateTime::now_utc())?.and_then(|p| p.phase);
            super::certs::rotate_on(design, &fleet, current, &opts, out, &sim.connector()).await
        }
    }
}

/// What a refused command must leave as it was: every host's services,
/// data and files, every cloud's roles, the site lease, the journal.
fn fingerprint(w: &World) -> String {
    format!(
        "{:?}\n{:?}\n{:?} {:?}\n{:?}",
        w.hosts, w.clouds, w.site_holder, w.handover, w.journal
    )
}

fn pki_of(design: &Design) -> String {
    std::fs::read_to_string(design.pki_dir.join("ca.crt")).unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn every_command_refused_at_its_question_changes_nothing() {
    for cmd in ALL {
        let sim = ready(cmd).await;
        let design = sim.design();
        let (before, ca) = (fingerprint(&sim.world()), pki_of(&design));
        let e = run(cmd, &sim, &design, false).await.unwrap_err();
        assert!(
            e.downcast_ref::<crate::error::Usage>().is_some() && format!("{e:#}").contains("without confirmation"),
            "{cmd:?}: {e:#}"
        );
        let w = sim.world();
        assert_eq!(fingerprint(&w), before, "{cmd:?} changed the cluster");
        assert_eq!(pki_of(&design), ca, "{cmd:?} changed the PKI");
        assert!(w.lock.is_none(), "{cmd:?} left the cluster lock");
        assert!(
            w.log.iter().any(|c| c.what == "lock"),
            "{cmd:?} asked before it held the cluster lock: {:#?}",
            w.log
        );
    }
}

#[tokio::test(start_paused = true)]
async fn every_command_refuses_a_design_changed_since_its_plan() {
    for cmd in ALL {
        let sim = ready(cmd).await;
        let design = sim.design();
        let (before, ca) = (fingerprint(&sim.world()), pki_of(&design));
        sim.edit_design();
        let e = run(cmd, &sim, &design, true).await.unwrap_err();
        assert!(
            format!("{e:#}").contains("changed while this command was planning"),
            "{cmd:?}: {e:#}"
        );
        let w = sim.world();
        assert_eq!(fingerprint(&w), before, "{cmd:?} changed the cluster");
        assert_eq!(pki_of(&design), ca, "{cmd:?} changed the PKI");
        assert!(w.lock.is_none(), "{cmd:?} left the cluster lock");
    }
}
