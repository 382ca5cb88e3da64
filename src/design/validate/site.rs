//! The site lease and its witness.

use super::*;

/// The site lease: on with a witness or with three clouds or more.
pub(super) fn build_site(
    cx: &mut Checker,
    root: &Node,
    base: &Path,
    witness: Option<RawHost>,
    raw: Option<RawSite>,
    ssh: &Ssh,
    clouds: usize,
) -> Option<Site> {
    let witness = witness.and_then(|w| {
        let before = cx.problems.len();
        let mut hosts = build_hosts(cx, root, base, vec![w], ssh, "witness");
        // One host, not a list: its fields are `witness.*`.
        for p in &mut cx.problems[before..] {
            if let Some(rest) = p.field.strip_prefix("witness[0]") {
                p.field = format!("witness{rest}");
            }
        }
        hosts.pop()
    });
    if raw.as_ref().and_then(|r| r.enabled) == Some(false) {
        if witness.is_some() {
            cx.error(
                root,
                "site.enabled",
                "a witness without the site lease would do nothing",
                "remove `witness:`, or `enabled: false` under site",
            );
        }
        return None;
    }
    if witness.is_none() && clouds < 3 {
        if raw.is_some() {
            cx.error(
                root,
                "site",
                "a site lease needs a witness host or three clouds or more",
                "add `witness:` with the name and address of a host in a third site: with two clouds alone, \
                 neither can tell a partition from the other cloud's loss",
            );
        }
        return None;
    }
    let members = clouds + usize::from(witness.is_some());
    if members.is_multiple_of(2) {
        cx.error(
            root,
            "witness",
            format!("the site members would be {members} (one per cloud plus the witness): an even count"),
            "with an odd number of clouds leave the witness out; with an even number add one: \
             a majority of an even count survives no more losses than one member fewer",
        );
    }
    let raw = raw.unwrap_or_default();
    let site = Site {
        witness,
        ttl: raw.ttl.unwrap_or(30),
        auto_failover: raw.auto_failover.unwrap_or(false),
        maximum_lag: raw.maximum_lag.unwrap_or(16 * 1024 * 1024),
        client_port: raw.client_port.unwrap_or(2479),
        peer_port: raw.peer_port.unwrap_or(2480),
        gate_port: raw.gate_port.unwrap_or(2481),
        synchronous: raw.synchronous.unwrap_or(false),
        synchronous_timeout: raw.synchronous_timeout.unwrap_or(10),
    };
    if !(5..=300).contains(&site.synchronous_timeout) {
        cx.error(
            root,
            "site.synchronous_timeout",
            format!(
                "synchronous_timeout {} is out of range (5 to 300 seconds)",
                site.synchronous_timeout
            ),
            "how long a commit waits for another cloud before the master goes on without it (default 10)",
        );
    }
    // A commit first seen waiting counts from the agent's previous look, up
    // to a loop (ttl/10) before it began to wait.
    if site.synchronous && site.synchronous_timeout <= (site.ttl / 10).max(1) {
        cx.warn(
            root,
            "site.synchronous_timeout",
            format!(
                "synchronous_timeout {} is not longer than the site agent's loop ({} s, a tenth of the ttl): \
                 a commit may count as waiting a loop longer than it did, and the master go on asynchronously \
                 after a short wait",
                site.synchronous_timeout,
                (site.ttl / 10).max(1)
            ),
            "raise synchronous_timeout above a tenth of the ttl, or lower the ttl",
        );
    }
    if raw.synchronous_timeout.is_some() && !site.synchronous {
        cx.warn(
            root,
            "site.synchronous_timeout",
            "synchronous_timeout does nothing without `synchronous: true`",
            "add `synchronous: true` under site, or remove synchronous_timeout",
        );
    }
    if !(15..=600).contains(&site.ttl) {
        cx.error(
            root,
            "site.ttl",
            format!("ttl {} is out of range (15 to 600 seconds)", site.ttl),
            "the lease's life: a master cut off from the other sites fences itself after a third of it, \
             and another cloud may take over after all of it (default 30)",
        );
    }
    Some(site)
}
