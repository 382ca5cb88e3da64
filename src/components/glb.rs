//! The global load balancer: forwards clients to the primary cloud's HAProxy
//! instances. Either HAProxy hosts pgha configures, or an external command.

use anyhow::{bail, Context};

use super::{Component, FileSpec};
use crate::design::Design;
use crate::secrets::Secrets;

pub(crate) const CONFIG: FileSpec = FileSpec {
    component: Component::Glb,
    template: "glb.cfg.j2",
    path: "/etc/haproxy/haproxy.cfg",
    owner: "root",
    group: "root",
    // The stats password is inside; HAProxy's master process reads it as root.
    mode: 0o600,
    service: "haproxy",
    check: Some("haproxy -c -q -f"),
};

/// The whole environment the external GLB command gets: nothing of pgha's
/// own (its `PGHA_*_PASSWORD` variables least of all).
pub(crate) fn external_env(d: &Design) -> Vec<(&'static str, String)> {
    let primary = d.primary_clouds().next();
    let targets: Vec<String> = primary
        .map(|c| {
            c.hosts
                .iter()
                .map(|h| format!("{}:{}", crate::design::shape::url_host(&h.address), d.haproxy.port))
                .collect()
        })
        .unwrap_or_default();
    vec![
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        ("PGHA_PRIMARY_CLOUD", primary.map_or(String::new(), |c| c.name.clone())),
        ("PGHA_TARGETS", targets.join(",")),
    ]
}

/// Runs an external GLB's command for the design's primary cloud with
/// [`external_env`], and records it. Its output is scrubbed of the secrets
/// before it is shown.
pub(crate) async fn run_external(d: &Design, command: &str, secrets: &Secrets) -> anyhow::Result<()> {
    let child = tokio::process::Command::new("sh")
        .args(["-c", command])
        .env_clear()
        .envs(external_env(d))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    // Bounded like a remote call: a DNS or load balancer API that hangs
    // fails the step (the command is killed) instead of holding the flip.
    let out = tokio::time::timeout(crate::wait::DEFAULT_DEADLINE, child)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the external GLB command did not finish within {} s: it was killed",
                crate::wait::DEFAULT_DEADLINE.as_secs()
            )
        })?
        .context("cannot run the external GLB command")?;
    if !out.status.success() {
        let stderr = secrets.scrub(&String::from_utf8_lossy(&out.stderr));
        bail!(
            "the external GLB command failed ({}): {}",
            out.status,
            crate::shell::last_lines(&stderr, 8)
        );
    }
    let primary = d.primary_clouds().next();
    crate::state::record_glb(d, primary.map(|c| c.name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_external_command_sees_only_its_three_variables_and_never_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ext.yaml");
        std::fs::write(
            &path,
            "platform: {name: c}\nclouds:\n  - name: dc1\n    status: primary\n    hosts: [{name: a, address: 10.0.0.1}]\n\
             glb: {fqdn: db.example.com, kind: external, command: 'env >&2; exit 3'}\n",
        )
        .unwrap();
        let d = crate::design::load(&path).unwrap().design;
        let secrets = Secrets::generate().unwrap();
        // Not a variable Secrets reads: other tests load secrets meanwhile.
        std::env::set_var("PGHA_TEST_GLB_INHERITED", "inherited-value");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let crate::design::GlbKind::External { command } = &d.glb.as_ref().unwrap().kind else {
            unreachable!()
        };
        let e = format!("{:#}", rt.block_on(run_external(&d, command, &secrets)).unwrap_err());
        std::env::remove_var("PGHA_TEST_GLB_INHERITED");
        assert!(e.contains("PGHA_TARGETS=10.0.0.1:5000"), "{e}");
        assert!(!e.contains("inherited-value"), "the environment was inherited: {e}");
        // A command that prints a secret it got some other way: scrubbed.
        let leak = format!("echo {} >&2; exit 1", secrets.replication_password);
        let e = format!("{:#}", rt.block_on(run_external(&d, &leak, &secrets)).unwrap_err());
        assert!(
            !e.contains(&secrets.replication_password) && e.contains("REDACTED"),
            "{e}"
        );
    }
}
