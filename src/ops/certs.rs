//! `pgha certs rotate`: a new cluster CA and new certificates everywhere,
//! with no moment where two members cannot talk. Each phase is one rolling
//! deploy (etcd members restart one at a time; Patroni, PostgreSQL and
//! HAProxy reload), and every host trusts the old and the new CA until the
//! last phase. The phase is kept in the PKI directory: an interrupted
//! rotation finishes when the command runs again.

use anyhow::Context;

use crate::design::Design;
use crate::ops::report::{numbered, Recorder};
use crate::pki::{self, Phase};
use crate::ui;

pub(crate) struct Options {
    pub yes: bool,
    pub dry_run: bool,
}

/// The rotation's steps from where it stands, numbered for the plan.
pub(crate) fn plan(design: &Design, phase: Option<Phase>) -> Vec<String> {
    if design.tls.ca.is_some() {
        return vec![
            "reissue every database host's certificate under the design's own CA (tls.ca_cert), rolling: \
             etcd members restart one at a time, Patroni, PostgreSQL and HAProxy reload"
                .into(),
        ];
    }
    let all = [
        (
            None,
            "make a new cluster CA; every host trusts the old and the new one (etcd members restart one at a time; \
             Patroni, PostgreSQL and HAProxy reload)",
        ),
        (
            Some(Phase::TrustBoth),
            "reissue every database host's certificate with the new CA, rolling as above; both CAs still trusted",
        ),
        (
            Some(Phase::Reissue),
            "trust the new CA only, rolling as above; the old CA is gone from every host",
        ),
    ];
    all.iter()
        .skip_while(|(p, _)| *p != phase)
        .map(|(_, s)| s.to_string())
        .collect()
}

pub(crate) async fn rotate(design: &Design, opts: &Options, output: ui::Output) -> anyhow::Result<()> {
    rotate_with(design, opts, output, &crate::deploy::ssh).await
}

/// The rotation, reaching hosts through `connect`.
pub(crate) async fn rotate_with(
    design: &Design,
    opts: &Options,
    output: ui::Output,
    connect: crate::deploy::Connector<'_>,
) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc;
    let Some(current) = pki::load(design, now())? else {
        anyhow::bail!(crate::error::Usage(format!(
            "no cluster PKI in {} yet: run `pgha deploy` first",
            design.pki_dir.display()
        )));
    };
    let steps = plan(design, current.phase);
    let resuming = if current.phase.is_some() {
        " (resuming the rotation that was under way)"
    } else {
        ""
    };
    if output == ui::Output::Text {
        ui::print(&numbered(
            &format!("Certificate rotation for {}{resuming}", design.platform.name),
            &steps,
        ))?;
    }
    let mut rec = Recorder::default();
    if opts.dry_run {
        return rec.print(output, COMMAND, true, &steps);
    }
    ui::confirm(&format!("Run these {} steps?", steps.len()), opts.yes)?;
    let deploy = crate::deploy::Options {
        only: Vec::new(),
        yes: true,
        ..Default::default()
    };
    // Each phase is a whole deploy: its table and summary are drawn as
    // text; the rotation's one document reports the phases.
    let text = output == ui::Output::Text;
    let phase = |n: usize| {
        let deploy = &deploy;
        async move {
            if design.tls.ca.is_some() {
                pki::reissue_all(design)?;
            } else {
                pki::advance_rotation(design, now())?;
            }
            let (_, outcome) = crate::deploy::apply(design, deploy, text, connect).await?;
            outcome.with_context(|| {
                format!(
                    "step {n} of the rotation failed; fix the cause and run `pgha certs rotate` again: it goes on \
                     from there"
                )
            })
        }
    };
    let mut result = Ok(());
    for (i, step) in steps.iter().enumerate() {
        rec.start(i + 1, step);
        result = rec.finish(phase(i + 1).await);
        if result.is_err() {
            break;
        }
    }
    rec.print(output, COMMAND, false, &steps)?;
    result
}

const COMMAND: &str = "certs rotate";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_goes_on_from_the_recorded_phase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.yaml");
        std::fs::write(
            &path,
            "platform: {name: c}\nclouds:\n  - name: dc1\n    status: primary\n    hosts: [{name: a1, address: 10.0.0.1}]\n",
        )
        .unwrap();
        let d = crate::design::load(&path).unwrap().design;
        assert_eq!(plan(&d, None).len(), 3);
        assert!(plan(&d, Some(Phase::TrustBoth))[0].starts_with("reissue"));
        assert!(plan(&d, Some(Phase::Reissue))[0].starts_with("trust the new CA only"));
    }

    /// Issue 24: the rotation runs its three phases as deploys against the
    /// fake fleet and ends with the cluster on the new CA alone.
    #[tokio::test(start_paused = true)]
    async fn a_rotation_runs_three_deploys_and_ends_on_the_new_ca() {
        let sim = crate::testkit::Sim::new(crate::testkit::THREE_CLOUDS);
        let design = sim.design();
        let connect = sim.connector();
        let yes = crate::deploy::Options {
            yes: true,
            ..Default::default()
        };
        crate::deploy::run_with(&design, &yes, ui::Output::Json, &connect)
            .await
            .unwrap();
        let old_ca = std::fs::read_to_string(design.pki_dir.join("ca.crt")).unwrap();
        let opts = Options {
            yes: true,
            dry_run: false,
        };
        rotate_with(&design, &opts, ui::Output::Json, &connect).await.unwrap();
        let new_ca = std::fs::read_to_string(design.pki_dir.join("ca.crt")).unwrap();
        assert_ne!(old_ca, new_ca);
        let now = time::OffsetDateTime::now_utc();
        assert_eq!(
            pki::load(&design, now).unwrap().unwrap().phase,
            None,
            "the rotation finished"
        );
        // Every database host trusts the new CA only.
        let w = sim.world();
        for (name, h) in &w.hosts {
            if let Some(trust) = h.files.get(crate::components::tls::TRUST.path) {
                assert_eq!(trust.trim(), new_ca.trim(), "{name} trusts only the new CA");
            }
        }
    }
}
