//! The platform (PostgreSQL itself) and the etcd and governor components.

use super::*;

pub(super) fn build_platform(cx: &mut Checker, root: &Node, raw: RawPlatform) -> Option<Platform> {
    let name = match raw.name {
        Some(n) if valid_name(&n) => Some(n),
        Some(n) => {
            cx.error(root, "platform.name", format!("invalid cluster name `{n}`"), NAME_HINT);
            None
        }
        None => {
            cx.error(
                root,
                "platform.name",
                "the platform has no name",
                "add `platform: {name: mycluster}`: it names the Patroni cluster",
            );
            None
        }
    };
    // Unnamed, it is the hosts' release's own, known once they are read.
    let version = raw.postgres_version.unwrap_or(crate::release::REFERENCE.postgres);
    if !(10..=99).contains(&version) {
        cx.error(
            root,
            "platform.postgres_version",
            format!("PostgreSQL {version} is not a supported major version"),
            "use a major version such as 17 (Debian 13 ships 17, Debian 12 ships 15), or leave it out to use the hosts' release's",
        );
    }
    let availability = match raw.availability.as_deref() {
        None | Some("redundant") => Availability::Redundant,
        Some("single") => Availability::Single,
        Some(other) => {
            cx.error(
                root,
                "platform.availability",
                format!("unknown availability `{other}`"),
                "use `redundant` (several computes per cloud) or `single` (one)",
            );
            Availability::Redundant
        }
    };
    let replication = match raw.replication.as_deref() {
        None | Some("asynchronous") => Replication::Asynchronous,
        Some("synchronous") => Replication::Synchronous,
        Some(other) => {
            cx.error(
                root,
                "platform.replication",
                format!("unknown replication mode `{other}`"),
                "use `asynchronous` (default) or `synchronous`",
            );
            Replication::Asynchronous
        }
    };
    let data_dir_pinned = raw.data_dir.is_some();
    let data_dir = raw.data_dir.unwrap_or_else(|| default_data_dir(version));
    if !shape::abs_path(&data_dir) {
        cx.error(
            root,
            "platform.data_dir",
            format!("data directory `{data_dir}` is not a plain absolute path"),
            "use an absolute path of letters, digits and `/._-+`, such as /var/lib/postgresql/15/pgha",
        );
    }
    let parameters = parameters(cx, root, raw.parameters.unwrap_or_default());
    // No network is opened unless the design names it: clients come through
    // HAProxy and the GLB, whose hosts are allowed by address.
    let client_networks = raw.client_networks.unwrap_or_default();
    for (i, net) in client_networks.iter().enumerate() {
        if !shape::cidr(net) {
            cx.error(
                root,
                &format!("platform.client_networks[{i}]"),
                format!("`{net}` is not a network in CIDR form"),
                "write it like 10.0.0.0/8 or 192.168.1.10/32",
            );
        }
    }
    Some(Platform {
        name: name?,
        postgres_version: version,
        version_source: if raw.postgres_version.is_some() {
            VersionSource::Design
        } else {
            VersionSource::Reference
        },
        postgres_port: raw.postgres_port.unwrap_or(5432),
        bin_dir: bin_dir(version),
        data_dir,
        data_dir_pinned,
        availability,
        replication,
        client_networks,
        parameters,
    })
}

/// The design's PostgreSQL settings, each a parameter name and one line,
/// with pgha's defaults where the design sets none.
fn parameters(cx: &mut Checker, root: &Node, mut parameters: BTreeMap<String, String>) -> BTreeMap<String, String> {
    for (key, value) in &parameters {
        let field = format!("platform.parameters.{key}");
        if !shape::pg_parameter(key) {
            cx.error(
                root,
                &field,
                format!("`{key}` is not a PostgreSQL parameter name"),
                "use a name such as work_mem or pg_stat_statements.max",
            );
        } else if value.len() > 1024 {
            cx.error(root, &field, "the value is longer than 1024 characters", "shorten it");
        } else if value.chars().any(char::is_control) {
            cx.error(
                root,
                &field,
                "the value holds a control character (a line break?)",
                "a PostgreSQL setting is one line: write it without line breaks or tabs",
            );
        }
    }
    for (key, value) in DEFAULT_PARAMETERS {
        // PostgreSQL's names are case-insensitive: the design's own wins.
        if !parameters.keys().any(|k| k.eq_ignore_ascii_case(key)) {
            parameters.insert(key.to_string(), value.to_string());
        }
    }
    parameters
}

/// PostgreSQL settings pgha gives unless the design sets them.
///
/// `authentication_timeout` (60 s by default): before PostgreSQL 18 a
/// stopping postmaster never signals a "dead-end" child (one forked for a
/// connection that came while it was starting or stopping), stops
/// listening, and waits for it. A client cut off before its first packet
/// kept a fenced master's postmaster, and every local connection to it,
/// waiting the whole timeout (seen in tests/seed_scenario.rs), and Patroni
/// cannot start it again as a replica until it exits.
pub(crate) const DEFAULT_PARAMETERS: [(&str, &str); 1] = [("authentication_timeout", "10s")];

pub(in crate::design) fn default_data_dir(version: u32) -> String {
    format!("/var/lib/postgresql/{version}/pgha")
}

pub(in crate::design) fn bin_dir(version: u32) -> String {
    format!("/usr/lib/postgresql/{version}/bin")
}

pub(super) fn build_etcd(cx: &mut Checker, root: &Node, raw: RawEtcd) -> Etcd {
    let etcd = Etcd {
        client_port: raw.client_port.unwrap_or(2379),
        peer_port: raw.peer_port.unwrap_or(2380),
        heartbeat_interval_ms: raw.heartbeat_interval_ms.unwrap_or(100),
        election_timeout_ms: raw.election_timeout_ms.unwrap_or(1000),
    };
    for (field, value, max) in [
        ("heartbeat_interval_ms", etcd.heartbeat_interval_ms, 10_000),
        ("election_timeout_ms", etcd.election_timeout_ms, 50_000),
    ] {
        if value == 0 || value > max {
            cx.error(
                root,
                &format!("components.etcd.{field}"),
                format!("{field} {value} is out of range (1 to {max})"),
                "etcd refuses an election timeout over 50 s; the defaults are 100 and 1000",
            );
        }
    }
    if u64::from(etcd.election_timeout_ms) < 5 * u64::from(etcd.heartbeat_interval_ms) {
        cx.error(
            root,
            "components.etcd.election_timeout_ms",
            format!(
                "election timeout {} ms is less than 5 x the heartbeat interval ({} ms)",
                etcd.election_timeout_ms, etcd.heartbeat_interval_ms
            ),
            "etcd refuses to start unless election_timeout_ms >= 5 x heartbeat_interval_ms",
        );
    }
    etcd
}

pub(super) fn build_governor(cx: &mut Checker, root: &Node, raw: RawGovernor) -> Governor {
    let g = Governor {
        ttl: raw.ttl.unwrap_or(30),
        loop_wait: raw.loop_wait.unwrap_or(10),
        retry_timeout: raw.retry_timeout.unwrap_or(10),
        maximum_lag_on_failover: raw.maximum_lag_on_failover.unwrap_or(1_048_576),
        rest_port: raw.rest_port.unwrap_or(8008),
        leader_restart: match raw.leader_restart.as_deref() {
            None | Some("restart") => LeaderRestart::Restart,
            Some("switchover") => LeaderRestart::Switchover,
            Some(other) => {
                cx.error(
                    root,
                    "components.governor.leader_restart",
                    format!("unknown way to restart the leader `{other}`"),
                    "use `restart` (default: the master restarts in place) or `switchover` (to a restarted replica)",
                );
                LeaderRestart::Restart
            }
        },
        watchdog: match raw.watchdog.as_deref() {
            None | Some("automatic") => Watchdog::Automatic,
            Some("required") => Watchdog::Required,
            Some("off") => Watchdog::Off,
            Some(other) => {
                cx.error(
                    root,
                    "components.governor.watchdog",
                    format!("unknown watchdog mode `{other}`"),
                    "use `automatic` (default: where /dev/watchdog exists), `required` (a host without one is never \
                     leader) or `off`",
                );
                Watchdog::Automatic
            }
        },
    };
    for (field, value) in [
        ("ttl", g.ttl),
        ("loop_wait", g.loop_wait),
        ("retry_timeout", g.retry_timeout),
    ] {
        if value > MAX_TIMING {
            cx.error(
                root,
                &format!("components.governor.{field}"),
                format!("{field} {value} is out of range (at most {MAX_TIMING} seconds)"),
                "Patroni's timings are seconds: the defaults are ttl 30, loop_wait 10, retry_timeout 10",
            );
        }
    }
    // In u64: the sum of two u32 settings must not wrap.
    let needed = u64::from(g.loop_wait) + 2 * u64::from(g.retry_timeout);
    if needed > u64::from(g.ttl) {
        cx.error(
            root,
            "components.governor.ttl",
            format!(
                "loop_wait ({}) + 2 x retry_timeout ({}) = {needed} exceeds ttl ({})",
                g.loop_wait, g.retry_timeout, g.ttl
            ),
            "Patroni needs loop_wait + 2*retry_timeout <= ttl, or a healthy leader can lose its lock",
        );
    }
    // Patroni 4 raises smaller values to these minimums (with a warning), so
    // its live config would never match the design; Patroni 3 took them.
    for (field, value, min) in [
        ("ttl", g.ttl, 20),
        ("loop_wait", g.loop_wait, 1),
        ("retry_timeout", g.retry_timeout, 3),
    ] {
        if value < min {
            cx.error(
                root,
                &format!("components.governor.{field}"),
                format!("{field} {value} is below Patroni's minimum of {min} seconds"),
                "Patroni 4 (Debian 13) raises it to the minimum by itself; failover takes about ttl + loop_wait",
            );
        }
    }
    g
}

/// An hour: a longer Patroni timing is a typo, and keeps the sums far from overflow.
pub(super) const MAX_TIMING: u32 = 3600;
