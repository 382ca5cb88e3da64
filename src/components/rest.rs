//! Patroni's REST API and its clients (issue 28): it serves `/metrics`,
//! `/patroni` and `/cluster` too, so it wants a client certificate of the
//! cluster CA from everyone (`verify_client: required`). Every client
//! presents the host's: HAProxy's checks, the GLB's, the site agent, the
//! virtual IP's loop, the fence, Patroni's own requests to other members,
//! and pgha's scripts.
//!
//! A cluster an older pgha deployed runs clients that present none. Its
//! first deploy by this pgha replaces them while Patroni still lets them in
//! (`optional`: reads without a certificate); the next deploy requires
//! certificates. Each client file carries [`MARKER`], which the facts read.

use crate::design::Design;

/// What a host's facts say of its REST clients ([`probe_script`]'s lines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Files whose client an older pgha wrote, presenting no certificate.
    pub old_clients: Vec<String>,
    /// Patroni's config here requires client certificates.
    pub required: bool,
}

/// In every file whose client presents the host's certificate to Patroni.
pub(crate) const MARKER: &str = "pgha: presents this host's certificate to Patroni's REST API";

/// Patroni's setting for clients without a certificate.
pub(crate) fn verify_client(require: bool) -> &'static str {
    if require {
        "required"
    } else {
        "optional"
    }
}

/// The files of a database host whose code or config asks a Patroni REST API.
pub(crate) fn db_client_files() -> [&'static str; 5] {
    [
        super::haproxy::CONFIG.path,
        super::patroni::CONFIG.path,
        super::patroni::FENCE.path,
        super::site::AGENT.path,
        super::vip::LEADER.path,
    ]
}

/// Those of [`db_client_files`] among `files` (what the design installs):
/// one an older design left behind (the agent of a site lease turned off)
/// runs nothing, and holds nothing back.
pub(crate) fn client_files_among(files: &[super::FileSpec]) -> Vec<&'static str> {
    db_client_files()
        .into_iter()
        .filter(|p| files.iter().any(|f| f.path == *p))
        .collect()
}

/// Prints `rest_client_old PATH` for each of `paths` that pgha wrote (it
/// names pgha: not a package's own `haproxy.cfg`) without [`MARKER`], and
/// with `patroni_config`, `rest_verify_required` when Patroni's config
/// requires client certificates already.
pub(crate) fn probe_script(paths: &[&str], patroni_config: bool) -> String {
    let mut s = format!(
        "for f in {}; do grep -qs pgha \"$f\" && ! grep -qsF {} \"$f\" && echo \"rest_client_old $f\"; done\n",
        crate::shell::words(paths),
        crate::shell::quote(MARKER)
    );
    if patroni_config {
        s.push_str(&required_script());
    }
    s
}

/// The line of Patroni's config (as pgha renders it) that requires client
/// certificates.
pub(crate) const REQUIRED_LINE: &str = "  verify_client: required";

/// Prints `rest_verify_required` when Patroni's config here requires
/// client certificates.
pub(crate) fn required_script() -> String {
    format!(
        "grep -qsx {} {} && echo rest_verify_required || true\n",
        crate::shell::quote(REQUIRED_LINE),
        crate::shell::quote(super::patroni::CONFIG.path)
    )
}

/// Whether Patroni's config `content` requires client certificates (what
/// [`required_script`] reads on a host).
#[cfg(test)]
pub(crate) fn requires(content: &str) -> bool {
    content.lines().any(|l| l == REQUIRED_LINE)
}

/// Whether this deploy makes Patroni require client certificates: yes when
/// a database host's Patroni does already (a deploy never loosens it), or
/// when every client host (every database host, and with the site lease
/// the GLB's, which checks Patroni) runs no client an older pgha deployed.
/// Otherwise, the hosts that hold it back: a host this deploy does not
/// reach counts, since what runs there is unknown.
pub(crate) fn require<'a>(design: &Design, facts: impl Fn(&str) -> Option<&'a Facts>) -> Result<(), Vec<String>> {
    let glb: &[crate::design::Host] = if design.site.is_some() { design.glb_hosts() } else { &[] };
    let hosts = || design.clouds.iter().flat_map(|c| &c.hosts).chain(glb);
    if hosts().any(|h| facts(&h.name).is_some_and(|f| f.required)) {
        return Ok(());
    }
    let behind: Vec<String> = hosts()
        .filter(|h| facts(&h.name).is_none_or(|f| !f.old_clients.is_empty()))
        .map(|h| h.name.clone())
        .collect();
    if behind.is_empty() {
        Ok(())
    } else {
        Err(behind)
    }
}

/// The note a deploy that cannot require certificates yet prints.
pub(crate) fn not_yet_note(behind: &[String]) -> String {
    format!(
        "note: Patroni's REST API still lets in clients without a certificate (reads only): {} may run clients an \
         older pgha deployed, or this deploy does not reach them. This deploy replaces them; run `pgha deploy` \
         (every cloud and the GLB) again to require certificates",
        behind.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn design(site: bool) -> Design {
        let src = if site {
            crate::testkit::with_site_lease()
        } else {
            crate::testkit::THREE_CLOUDS.to_string()
        };
        crate::design::load_str(&src, std::path::Path::new("d.yaml"))
            .unwrap()
            .design
    }

    fn facts(names: &[&str]) -> BTreeMap<String, Facts> {
        names.iter().map(|n| (n.to_string(), Facts::default())).collect()
    }

    fn require_of(d: &Design, f: &BTreeMap<String, Facts>) -> Result<(), Vec<String>> {
        require(d, |h| f.get(h))
    }

    #[test]
    fn certificates_are_required_once_no_client_of_an_older_pgha_runs() {
        let d = design(true);
        // A new cluster: nothing runs yet.
        let all: Vec<&str> = d
            .clouds
            .iter()
            .flat_map(|c| &c.hosts)
            .chain(d.glb_hosts())
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(require_of(&d, &facts(&all)), Ok(()));
        // An older pgha's client anywhere, the GLB's included, holds it back.
        let mut f = facts(&all);
        f.get_mut("glb1").unwrap().old_clients = vec!["/etc/haproxy/haproxy.cfg".into()];
        assert_eq!(require_of(&d, &f), Err(vec!["glb1".to_string()]));
        // Without the site lease the GLB never asks Patroni.
        assert_eq!(require_of(&design(false), &f), Ok(()));
        // A host this deploy does not reach is unknown.
        f.remove("dc2-pg3");
        f.get_mut("glb1").unwrap().old_clients.clear();
        assert_eq!(require_of(&d, &f), Err(vec!["dc2-pg3".to_string()]));
        // Once a Patroni requires them, a deploy keeps it so.
        let mut f = facts(&["dc1-pg1"]);
        f.get_mut("dc1-pg1").unwrap().required = true;
        assert_eq!(require_of(&d, &f), Ok(()));
    }

    #[test]
    fn the_probe_names_files_without_the_marker() {
        assert_eq!(
            probe_script(&["/a", "/b c"], true),
            "for f in /a '/b c'; do grep -qs pgha \"$f\" && ! grep -qsF 'pgha: presents this host'\\''s certificate to Patroni'\\''s REST API' \"$f\" && echo \"rest_client_old $f\"; done\n\
             grep -qsx '  verify_client: required' /etc/patroni/config.yml && echo rest_verify_required || true\n"
        );
        assert!(!probe_script(&["/a"], false).contains("verify_client"));
        assert_eq!((verify_client(true), verify_client(false)), ("required", "optional"));
    }

    /// Every client file pgha renders carries the marker the facts look
    /// for: a client that presents a certificate never holds the cluster back.
    #[test]
    fn every_client_file_carries_the_marker() {
        let d = design(true);
        let renderer = crate::render::Renderer::for_design(&d).unwrap();
        let secrets = crate::secrets::Secrets::generate().unwrap();
        let cloud = &d.clouds[0];
        let files = renderer.db_host(&d, cloud, &cloud.hosts[0], None, &secrets).unwrap();
        for path in db_client_files() {
            if path == super::super::vip::LEADER.path {
                continue;
            }
            let f = files
                .iter()
                .find(|f| f.spec.path == path)
                .unwrap_or_else(|| panic!("{path}"));
            assert!(f.content.contains(MARKER), "{path}");
        }
        assert!(include_str!("../../host/vip_leader.py").contains(MARKER));
        let glb = renderer.glb_host(&d, &d.glb_hosts()[0], &secrets).unwrap();
        let cfg = glb.iter().find(|f| f.spec == super::super::glb::CONFIG).unwrap();
        assert!(cfg.content.contains(MARKER));
    }
}
