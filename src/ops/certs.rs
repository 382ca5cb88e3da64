//! `pgha certs rotate`: a new cluster CA and new certificates everywhere,
//! with no moment where two members cannot talk. Each phase is one rolling
//! deploy (etcd members restart one at a time; Patroni, PostgreSQL and
//! HAProxy reload), and every host trusts the old and the new CA until the
//! last phase. The phase is kept in the PKI directory: an interrupted
//! rotation finishes when the command runs again.

use anyhow::Context;

use crate::design::Design;
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
    eprintln!("Certificate rotation for {}{resuming}:", design.platform.name);
    for (i, s) in steps.iter().enumerate() {
        eprintln!("  {}. {s}", i + 1);
    }
    if opts.dry_run {
        return Ok(());
    }
    ui::confirm(&format!("Run these {} steps?", steps.len()), opts.yes)?;
    let deploy = crate::deploy::Options {
        only: Vec::new(),
        yes: true,
        ..Default::default()
    };
    if design.tls.ca.is_some() {
        pki::reissue_all(design)?;
        return crate::deploy::run(design, &deploy, output)
            .await
            .context("step 1 (reissue every certificate)");
    }
    for (i, step) in steps.iter().enumerate() {
        pki::advance_rotation(design, now())?;
        eprintln!("step {}: {step}", i + 1);
        crate::deploy::run(design, &deploy, output).await.with_context(|| {
            format!(
                "step {} of the rotation failed; fix the cause and run `pgha certs rotate` again: it goes on from there",
                i + 1
            )
        })?;
    }
    Ok(())
}

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
}
