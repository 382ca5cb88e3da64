//! systemd command lines, one pure builder each.

use crate::shell::quote;

/// What to do with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Enable,
    /// Stopped and disabled, its failures forgotten.
    Disable,
    Start,
    Restart,
    Reload,
    ReloadOrRestart,
    Stop,
}

impl Verb {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verb::Enable => "enable",
            Verb::Disable => "disable",
            Verb::Start => "start",
            Verb::Restart => "restart",
            Verb::Reload => "reload",
            Verb::ReloadOrRestart => "reload-or-restart",
            Verb::Stop => "stop",
        }
    }
}

/// `systemctl VERB UNIT`. A start or restart that fails shows the unit's
/// journal; etcd is started without waiting, because a new member waits for
/// its peers (they are all started, then their health is awaited).
pub(crate) fn unit_script(verb: Verb, unit: &str) -> String {
    let u = quote(unit);
    match verb {
        Verb::Start | Verb::Restart => {
            let no_block = if unit == "etcd" || unit == super::site::ETCD_SERVICE {
                "--no-block "
            } else {
                ""
            };
            format!(
                "systemctl {} {no_block}{u} || {{ journalctl -u {u} -n 20 --no-pager >&2; exit 1; }}",
                verb.as_str()
            )
        }
        Verb::Enable => format!("systemctl enable {u} 2>&1"),
        Verb::Disable => {
            format!("systemctl disable --now {u} 2>&1 && {{ systemctl reset-failed {u} 2>/dev/null; true; }}")
        }
        // A new HAProxy process takes every server for UP until its checks
        // say otherwise (~2 s of clients sent to replicas): it starts from
        // the old process's view instead.
        Verb::Reload | Verb::ReloadOrRestart if unit == "haproxy" => {
            format!("{}systemctl {} {u}", super::haproxy::SAVE_STATE_SCRIPT, verb.as_str())
        }
        _ => format!("systemctl {} {u}", verb.as_str()),
    }
}

pub(crate) const DAEMON_RELOAD: &str = "systemctl daemon-reload";

/// Stops and disables `unit` and removes its file `path`.
pub(crate) fn remove_unit_script(unit: &str, path: &str) -> String {
    format!(
        "systemctl disable --now {} 2>&1; rm -f {}; systemctl daemon-reload",
        quote(unit),
        quote(path)
    )
}

/// Stops and disables the distribution's own PostgreSQL cluster (its data
/// stays) and marks it manual so that pg_ctlcluster leaves it alone.
pub(crate) fn disable_distro_cluster_script(unit: &str, postgres_version: u32) -> String {
    let u = quote(unit);
    let conf = quote(&format!("/etc/postgresql/{postgres_version}/main/start.conf"));
    format!(
        "systemctl disable --now {u} 2>&1; f={conf}; [ -f \"$f\" ] && echo manual > \"$f\"; systemctl is-active --quiet {u} && exit 1 || exit 0"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_unit_is_stopped_first() {
        assert_eq!(
            remove_unit_script("pgha-backup-incr.timer", "/etc/systemd/system/pgha-backup-incr.timer"),
            "systemctl disable --now pgha-backup-incr.timer 2>&1; rm -f /etc/systemd/system/pgha-backup-incr.timer; systemctl daemon-reload"
        );
    }

    #[test]
    fn scripts_are_exact() {
        assert_eq!(unit_script(Verb::Enable, "patroni"), "systemctl enable patroni 2>&1");
        assert_eq!(
            unit_script(Verb::Disable, "vip-manager"),
            "systemctl disable --now vip-manager 2>&1 && { systemctl reset-failed vip-manager 2>/dev/null; true; }"
        );
        assert_eq!(
            unit_script(Verb::Start, "patroni"),
            "systemctl start patroni || { journalctl -u patroni -n 20 --no-pager >&2; exit 1; }"
        );
        assert_eq!(
            unit_script(Verb::Restart, "etcd"),
            "systemctl restart --no-block etcd || { journalctl -u etcd -n 20 --no-pager >&2; exit 1; }"
        );
        assert_eq!(
            unit_script(Verb::Reload, "haproxy"),
            format!(
                "{}systemctl reload haproxy",
                crate::components::haproxy::SAVE_STATE_SCRIPT
            )
        );
        assert_eq!(
            unit_script(Verb::ReloadOrRestart, "haproxy"),
            format!(
                "{}systemctl reload-or-restart haproxy",
                crate::components::haproxy::SAVE_STATE_SCRIPT
            )
        );
        assert_eq!(unit_script(Verb::Reload, "patroni"), "systemctl reload patroni");
        assert_eq!(unit_script(Verb::Stop, "x y"), "systemctl stop 'x y'");
        assert_eq!(
            disable_distro_cluster_script("postgresql@17-main", 17),
            "systemctl disable --now postgresql@17-main 2>&1; f=/etc/postgresql/17/main/start.conf; [ -f \"$f\" ] && echo manual > \"$f\"; systemctl is-active --quiet postgresql@17-main && exit 1 || exit 0"
        );
    }
}
