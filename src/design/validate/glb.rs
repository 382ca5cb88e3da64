//! The global load balancer.

use super::*;

pub(super) fn build_glb(
    cx: &mut Checker,
    root: &Node,
    base: &Path,
    raw: RawGlb,
    ssh: &Ssh,
    haproxy: &Haproxy,
    pgbouncer: Option<&Pgbouncer>,
) -> Option<Glb> {
    let fqdn = raw.fqdn.unwrap_or_default();
    if fqdn.is_empty() {
        cx.error(
            root,
            "glb.fqdn",
            "the GLB has no fqdn",
            "add `fqdn: db.example.com`: the name clients connect to",
        );
    } else if shape::address(&fqdn).is_none() {
        cx.error(
            root,
            "glb.fqdn",
            format!("`{fqdn}` is not a DNS name or an address"),
            "use a fully qualified name such as db.example.com (or the address clients use)",
        );
    }
    let kind = match (raw.kind.as_deref(), raw.hosts, raw.command) {
        (None | Some("haproxy"), Some(hosts), None) => {
            let hosts = build_hosts(cx, root, base, hosts, ssh, "glb.hosts");
            if hosts.is_empty() {
                cx.error(
                    root,
                    "glb.hosts",
                    "the GLB lists no hosts",
                    "add at least one host for pgha to configure",
                );
            }
            GlbKind::Haproxy { hosts }
        }
        (Some("external"), None, Some(command)) if !command.trim().is_empty() => GlbKind::External { command },
        (Some("external"), _, _) => {
            cx.error(
                root,
                "glb.command",
                "an external GLB needs `command` (and no `hosts`)",
                "pgha runs the command with PGHA_PRIMARY_CLOUD and PGHA_TARGETS when the primary cloud changes",
            );
            return None;
        }
        (None | Some("haproxy"), _, _) => {
            cx.error(
                root,
                "glb.hosts",
                "a `haproxy` GLB needs `hosts` (and no `command`)",
                "list the GLB hosts, or set `kind: external` with a `command`",
            );
            return None;
        }
        (Some(other), _, _) => {
            cx.error(
                root,
                "glb.kind",
                format!("unknown GLB kind `{other}`"),
                "use `haproxy` or `external`",
            );
            return None;
        }
    };
    Some(Glb {
        fqdn,
        port: raw.port.unwrap_or(haproxy.port),
        read_only_port: raw.read_only_port.unwrap_or(haproxy.read_only_port),
        pooled_port: raw.pooled_port.or(pgbouncer.map(|p| p.port)).unwrap_or(6432),
        stats_port: raw.stats_port.unwrap_or(haproxy.stats_port),
        stats_address: stats_address(
            cx,
            root,
            raw.stats_address.or_else(|| Some(haproxy.stats_address.clone())),
            "glb.stats_address",
            "127.0.0.1",
        ),
        kind,
    })
}
