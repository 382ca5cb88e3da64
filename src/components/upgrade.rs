//! A host's move to the next Debian release, as shell: whether its apt
//! sources reach the new release's packages (asked without changing the
//! host), the upgrade itself with every service start held, and the
//! services back on the new binaries.

use std::collections::BTreeMap;

use super::systemd::{self, Verb};
use super::{etcd, exporter, site};
use crate::release::Release;
use crate::shell::quote;

/// Every apt source file of a host: the one-line and the deb822 format.
const SOURCE_FILES: &str = "/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources";

/// The sed expression that moves a source line from `from`'s suites to
/// `to`'s (`bookworm`, `bookworm-updates`, `bookworm-security`).
fn suites(from: Release, to: Release) -> String {
    quote(&format!("s/\\b{}\\b/{}/g", from.codename, to.codename))
}

/// Present on a host from the start of its upgrade until its services are
/// back: a run interrupted in between finds the host to finish.
pub(crate) const PENDING: &str = "/var/lib/pgha/release-upgrade-pending";

/// Every member of the etcd cluster whose member listens on `client_port`
/// here, asked for its health: `https://ADDR:PORT is healthy: ...` or
/// `... is unhealthy: ...` per member (etcdctl exits 1 when one is not).
pub(crate) fn etcd_health_script(client_port: u16) -> String {
    format!("{} --cluster 2>&1; true", etcd::health_script(client_port))
}

/// The addresses [`etcd_health_script`] found healthy (a host name or an
/// IP address, as the design gives it; IPv6 without brackets).
pub(crate) fn healthy_endpoints(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.contains(" is healthy"))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|url| url.strip_prefix("https://"))
        .map(|hostport| {
            let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
            host.trim_start_matches('[').trim_end_matches(']').to_string()
        })
        .collect()
}

/// Marks the host's upgrade begun, before anything of it stops.
pub(crate) fn begin_script() -> String {
    format!("mkdir -p /var/lib/pgha && touch {PENDING}")
}

/// Ends a host's upgrade, its services back and checked.
pub(crate) fn finished_script() -> String {
    format!("rm -f {PENDING}")
}

/// The packages whose version says a host moved, each with the version
/// `to` ships (a prefix of the package's).
pub(crate) fn moved_packages(to: Release) -> [(&'static str, &'static str); 3] {
    [
        ("patroni", to.patroni),
        ("etcd-server", to.etcd),
        ("haproxy", to.haproxy),
    ]
}

/// Prints `release ID CODENAME`, then `installed PACKAGE VERSION` for the
/// packages that say a host moved, `pending` while an upgrade of the host
/// is not finished ([`PENDING`]), then (unless the host runs `to`
/// already) whether its apt sources, with `from`'s suites read as `to`'s,
/// reach `to`'s packages: `candidate PACKAGE VERSION|(none)`, or
/// `unreachable LAST-LINE` when apt cannot read them. Nothing of the host
/// changes: the lists and apt's cache of them go to a directory of their
/// own (under /var/tmp: tens of MB), removed after.
pub(crate) fn reach_script(from: Release, to: Release) -> String {
    let packages: Vec<&str> = moved_packages(to).iter().map(|(p, _)| *p).collect();
    let packages = packages.join(" ");
    format!(
        r#". /etc/os-release
echo "release $VERSION_ID $VERSION_CODENAME"
for p in {packages}; do echo "installed $p $(dpkg-query -W -f='${{Version}}' "$p" 2>/dev/null)"; done
[ -e {PENDING} ] && echo pending
[ "$VERSION_CODENAME" = {to} ] && exit 0
d=$(mktemp -d -p /var/tmp) || exit 1
trap 'rm -rf "$d"' EXIT
mkdir -p "$d/lists/partial" "$d/parts"
: > "$d/sources.list"
for f in {SOURCE_FILES}; do
  case "$f" in
    *.sources) [ -f "$f" ] && sed -E {sed} "$f" > "$d/parts/${{f##*/}}" ;;
    *) [ -f "$f" ] && sed -E {sed} "$f" >> "$d/sources.list" ;;
  esac
done
set -- -o "Dir::Etc::SourceList=$d/sources.list" -o "Dir::Etc::SourceParts=$d/parts" -o "Dir::State::Lists=$d/lists" -o "Dir::Cache::pkgcache=$d/pkgcache.bin" -o Dir::Cache::srcpkgcache=
if ! err=$(timeout 300 apt-get "$@" update -q 2>&1 >/dev/null); then
  echo "unreachable $(printf '%s\n' "$err" | tail -n 1)"
  exit 0
fi
# One policy for all, from the cache the update built: parsing the lists
# again per package took most of a minute per host on a loaded machine.
policy=$(LC_ALL=C apt-cache "$@" policy {packages} 2>/dev/null | awk '/^[^ ].*:$/ {{ p = substr($0, 1, length($0) - 1) }} /^ *Candidate: / {{ print p, $2 }}')
for p in {packages}; do
  v=$(printf '%s\n' "$policy" | awk -v p="$p" '$1 == p {{ print $2 }}')
  echo "candidate $p ${{v:-(none)}}"
done
"#,
        to = quote(to.codename),
        sed = suites(from, to),
    )
}

/// What [`reach_script`] found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reach {
    /// `VERSION_ID`: `12`.
    pub version: String,
    pub codename: String,
    /// Package -> installed version (empty: not installed).
    pub installed: BTreeMap<String, String>,
    /// Package -> the version the new release's sources offer.
    pub candidates: BTreeMap<String, Option<String>>,
    /// apt could not read the new release's sources: its last line.
    pub unreachable: Option<String>,
    /// An upgrade started here and its services were not checked since.
    pub pending: bool,
}

pub(crate) fn parse_reach(out: &str) -> Reach {
    let mut r = Reach::default();
    for line in out.lines() {
        let mut w = line.splitn(3, ' ');
        match (w.next(), w.next(), w.next()) {
            (Some("release"), Some(v), c) => {
                r.version = v.to_string();
                r.codename = c.unwrap_or_default().trim().to_string();
            }
            (Some("installed"), Some(p), v) => {
                r.installed
                    .insert(p.to_string(), v.unwrap_or_default().trim().to_string());
            }
            (Some("candidate"), Some(p), v) => {
                let v = v.map(str::trim).filter(|v| !v.is_empty() && *v != "(none)");
                r.candidates.insert(p.to_string(), v.map(str::to_string));
            }
            (Some("pending"), ..) => r.pending = true,
            (Some("unreachable"), ..) => {
                r.unreachable = Some(line["unreachable".len()..].trim().to_string());
            }
            _ => {}
        }
    }
    r
}

/// The Debian version's upstream part starts with `want` (`4.0` matches
/// `4.0.7-3~deb13u1`, not `4.01`): an epoch is skipped.
fn ships(version: &str, want: &str) -> bool {
    let upstream = version.split_once(':').map_or(version, |(_, v)| v);
    upstream
        .strip_prefix(want)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '-', '+', '~']))
}

impl Reach {
    /// The host runs `to` and its moved packages are `to`'s: nothing to do
    /// but check its services.
    pub(crate) fn moved(&self, to: Release) -> bool {
        !self.pending && self.packages_moved(to)
    }

    /// The host runs `to` and its moved packages are `to`'s (whether or not
    /// its services were checked since).
    pub(crate) fn packages_moved(&self, to: Release) -> bool {
        self.codename == to.codename
            && moved_packages(to)
                .iter()
                .all(|(p, want)| self.installed.get(*p).is_none_or(|v| v.is_empty() || ships(v, want)))
    }

    /// Why the host cannot move from `from` to `to`, or `None`.
    pub(crate) fn problem(&self, from: Release, to: Release) -> Option<String> {
        if self.codename == to.codename {
            return None;
        }
        if self.codename != from.codename {
            return Some(format!(
                "it runs Debian {} ({}), not {} ({}): pgha moves {} hosts to {}",
                self.version,
                if self.codename.is_empty() { "?" } else { &self.codename },
                from.os,
                from.codename,
                from.codename,
                to.codename
            ));
        }
        if let Some(why) = &self.unreachable {
            return Some(format!(
                "its apt sources, read for {}, cannot be reached: {why}",
                to.codename
            ));
        }
        for (p, want) in moved_packages(to) {
            if self.installed.get(p).is_none_or(String::is_empty) {
                continue;
            }
            match self.candidates.get(p).cloned().flatten() {
                Some(v) if ships(&v, want) => {}
                Some(v) => {
                    return Some(format!(
                        "its apt sources, read for {}, offer {p} {v}, not {want}",
                        to.codename
                    ))
                }
                None => return Some(format!("its apt sources, read for {}, offer no {p}", to.codename)),
            }
        }
        None
    }
}

/// The transient unit the package upgrade runs in: it goes on when pgha is
/// killed or its SSH session drops (dpkg is never cut off half-way), and a
/// later run waits for it before it starts its own.
pub(crate) const UNIT: &str = "pgha-release-upgrade";

/// Moves the host's apt sources from `from`'s suites to `to`'s, then runs
/// the full upgrade, non-interactively, keeping every configuration file
/// pgha manages (`--force-confold`) and starting no service (policy-rc.d):
/// running services keep their old binaries until they are restarted one
/// by one. Again after an interruption, it finishes what dpkg left; D-Bus,
/// which systemd-run needs, is started first: a killed run's package
/// upgrade may have stopped it and held its start (seen in CI: the GLB's
/// resumed upgrade failed with "Failed to connect to system scope bus").
/// A killed run's upgrade goes on in its transient unit: this waits for
/// its unit file to leave /run/systemd/transient (`--collect` unloads it
/// when it ends, failed or not), read from the file system and not by
/// systemctl, which a half-done upgrade can leave unable to start (seen in
/// CI: with libcrypto.so.3 gone mid-way through trixie's libssl3t64
/// transition `systemctl is-active` failed, was read as "not active", and
/// the new systemd-run met the unit still running).
/// Prints `release VERSION_ID` at the end.
pub(crate) fn upgrade_script(from: Release, to: Release) -> String {
    let inner = format!(
        r#"set -e
export DEBIAN_FRONTEND=noninteractive
for f in {SOURCE_FILES}; do
  if [ -f "$f" ]; then sed -i -E {sed} "$f"; fi
done
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
trap 'rm -f /usr/sbin/policy-rc.d; exit 1' HUP INT PIPE TERM
log=/var/log/pgha-release-upgrade.log
keep="-o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef -o DPkg::Lock::Timeout=600"
# Each command must succeed: `set -e` does not reach inside this group.
{{
  echo "== $(date -u +%FT%TZ) to {to}" &&
  dpkg --force-confold --force-confdef --configure -a &&
  apt-get update -q &&
  apt-get -y -q $keep -f install &&
  apt-get -y -q $keep full-upgrade
}} >> "$log" 2>&1 || {{ echo "the upgrade failed; the end of $log:" >&2; tail -n 15 "$log" >&2; exit 1; }}
rm -f /usr/sbin/policy-rc.d
# Debian restarts sshd on its upgrade; that was held back with the rest.
# Sessions open now stay.
systemctl try-restart ssh.service
. /etc/os-release
[ "$VERSION_CODENAME" = {to} ] || {{ echo "the host runs $VERSION_CODENAME after its upgrade, not {to}" >&2; exit 1; }}
echo "release $VERSION_ID"
"#,
        sed = suites(from, to),
        to = to.codename,
    );
    format!(
        "{}systemctl reset-failed {UNIT}.service >/dev/null 2>&1 || true\n\
         systemctl start dbus.socket dbus.service >/dev/null 2>&1 || true\n\
         for i in $(seq 60); do busctl --system status >/dev/null 2>&1 && break; sleep 1; done\n\
         exec systemd-run --quiet --wait --pipe --collect --unit={UNIT} /bin/sh -c {} </dev/null\n",
        wait_for_earlier_script(),
        quote(&inner)
    )
}

/// Waits (up to 20 minutes) while the package upgrade a killed run started
/// still runs in its transient unit, read from the file system: meanwhile
/// systemctl itself may not start (a library it needs is mid-replacement,
/// seen in CI as exit 127 when a resumed run stopped Patroni first).
pub(crate) fn wait_for_earlier_script() -> String {
    format!(
        "t=/run/systemd/transient/{UNIT}.service\n\
         for i in $(seq 600); do [ -e \"$t\" ] || break; sleep 2; done\n\
         if [ -e \"$t\" ]; then echo \"the package upgrade an earlier run started ({UNIT}) still runs after 20 min\" >&2; exit 1; fi\n"
    )
}

/// The host's services on the new binaries, after [`upgrade_script`]:
/// pgha's `files` get their owner and mode back (a package's maintainer
/// script may reset them: trixie's prometheus-postgres-exporter chowns the
/// file that holds its password to itself); systemd reads the new units;
/// a database host's etcd member restarts (also one that fell over during
/// the upgrade), pgha's own units where they are enabled, the exporter and
/// pgBackRest where they run, HAProxy on a database or GLB host (`proxy`)
/// by a reload (its master process re-executes the new binary and keeps
/// its clients); then each of pgha's etcd members here must answer within
/// 60 s. Another host's etcd or HAProxy (Debian's default units on a
/// witness, say) is not pgha's and is left alone. Patroni is not started
/// here: its caller does, when its cloud may have it back.
pub(crate) fn services_script(
    files: &[super::FileSpec],
    database: bool,
    proxy: bool,
    cloud_client_port: u16,
    site_client_port: u16,
) -> String {
    let mut s = "set -e\n".to_string();
    for f in files {
        s.push_str(&format!("if [ -e {} ]; then {}; fi\n", quote(f.path), f.mode_script()));
    }
    s.push_str(&format!("{}\n", systemd::DAEMON_RELOAD));
    let restart = |s: &mut String, test: &str, unit: &str| {
        s.push_str(&format!(
            "if {test}; then {}; fi\n",
            systemd::unit_script(Verb::Restart, unit)
        ));
    };
    restart(&mut s, if database { "true" } else { "false" }, "etcd");
    for u in [
        site::ETCD_SERVICE,
        site::AGENT_SERVICE,
        site::FENCE_SERVICE,
        site::GATE_SERVICE,
    ] {
        restart(&mut s, &format!("systemctl is-enabled --quiet {}", quote(u)), u);
    }
    for u in [
        exporter::SERVICE,
        exporter::NODE_SERVICE,
        super::backup::SERVICE,
        super::pgbouncer::SERVICE,
        super::vip::LEADER_SERVICE,
        super::vip::MANAGER_SERVICE,
    ] {
        restart(&mut s, &format!("systemctl is-active --quiet {}", quote(u)), u);
    }
    if proxy {
        s.push_str(&format!(
            "if systemctl is-active --quiet haproxy; then {}; fi\n",
            systemd::unit_script(Verb::Reload, "haproxy")
        ));
    }
    let cloud_member = if database { "true" } else { "false" };
    let site_member = format!("systemctl is-enabled --quiet {}", site::ETCD_SERVICE);
    for (member, unit, port) in [
        (cloud_member, "etcd", cloud_client_port),
        (site_member.as_str(), site::ETCD_SERVICE, site_client_port),
    ] {
        s.push_str(&format!(
            "if {member}; then end=$(($(date +%s) + 60)); until {} >/dev/null 2>&1; do \
             [ \"$(date +%s)\" -lt \"$end\" ] || {{ echo '{unit}: its member is not healthy 60 s after its restart' >&2; \
             exit 1; }}; sleep 1; done; fi\n",
            etcd::health_script(port)
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::{DEBIAN12, DEBIAN13};

    const BOOKWORM: &str = "release 12 bookworm\ninstalled patroni 3.0.2-1\ninstalled etcd-server 3.4.23-4+b8\n\
installed haproxy 2.6.12-1+deb12u3\n";

    #[test]
    fn a_host_that_reaches_the_new_release_may_move() {
        let r = parse_reach(&format!(
            "{BOOKWORM}candidate patroni 4.0.7-3~deb13u1\ncandidate etcd-server 3.5.16-4\ncandidate haproxy 3.0.11-1+deb13u4\n"
        ));
        assert_eq!((r.version.as_str(), r.codename.as_str()), ("12", "bookworm"));
        assert_eq!(r.problem(DEBIAN12, DEBIAN13), None);
        assert!(!r.moved(DEBIAN13));
    }

    #[test]
    fn a_host_whose_sources_do_not_reach_it_is_named_with_the_cause() {
        let unreachable = parse_reach(&format!(
            "{BOOKWORM}unreachable E: Failed to fetch http://mirror/ 404\n"
        ));
        let p = unreachable.problem(DEBIAN12, DEBIAN13).unwrap();
        assert!(p.contains("cannot be reached: E: Failed to fetch"), "{p}");
        let none = parse_reach(&format!(
            "{BOOKWORM}candidate patroni (none)\ncandidate etcd-server 3.5.16-4\ncandidate haproxy 3.0.11-1\n"
        ));
        assert_eq!(
            none.problem(DEBIAN12, DEBIAN13).unwrap(),
            "its apt sources, read for trixie, offer no patroni"
        );
        // Still bookworm's (a source pinned to its codename, say).
        let old = parse_reach(&format!(
            "{BOOKWORM}candidate patroni 3.0.2-1\ncandidate etcd-server 3.5.16-4\ncandidate haproxy 3.0.11-1\n"
        ));
        assert!(old
            .problem(DEBIAN12, DEBIAN13)
            .unwrap()
            .contains("offer patroni 3.0.2-1, not 4.0"));
        let other = parse_reach("release 11 bullseye\n");
        assert!(other
            .problem(DEBIAN12, DEBIAN13)
            .unwrap()
            .contains("runs Debian 11 (bullseye)"));
    }

    #[test]
    fn a_host_on_the_new_release_with_its_packages_has_moved() {
        let done = parse_reach(
            "release 13 trixie\ninstalled patroni 4.0.7-3~deb13u1\ninstalled etcd-server 3.5.16-4\ninstalled haproxy 3.0.11-1\n",
        );
        assert!(done.moved(DEBIAN13) && done.problem(DEBIAN12, DEBIAN13).is_none());
        // Interrupted: base-files moved, Patroni not yet.
        let half = parse_reach("release 13 trixie\ninstalled patroni 3.0.2-1\ninstalled haproxy 3.0.11-1\n");
        assert!(!half.moved(DEBIAN13));
        let pending = parse_reach("release 13 trixie\ninstalled patroni 4.0.7-3~deb13u1\npending\n");
        assert!(pending.pending && !pending.moved(DEBIAN13));
        // A GLB host has HAProxy only.
        let glb =
            parse_reach("release 13 trixie\ninstalled patroni \ninstalled etcd-server \ninstalled haproxy 3.0.11-1\n");
        assert!(glb.moved(DEBIAN13));
        assert!(ships("1:4.0.7", "4.0") && !ships("4.01", "4.0") && ships("3.0", "3.0"));
    }

    #[test]
    fn etcd_members_are_healthy_only_when_they_say_so() {
        let out = "https://10.0.0.1:2379 is healthy: successfully committed proposal: took = 2.1ms\n\
                   https://[fd00::2]:2379 is healthy: successfully committed proposal: took = 2.0ms\n\
                   https://db3.example:2379 is unhealthy: failed to commit proposal: context deadline exceeded\n\
                   Error: unhealthy cluster\n";
        assert_eq!(healthy_endpoints(out), ["10.0.0.1", "fd00::2"]);
        assert!(healthy_endpoints("Error: context deadline exceeded\n").is_empty());
        assert!(etcd_health_script(2379).contains("endpoint health --cluster"));
    }

    #[test]
    fn the_scripts_are_valid_shell_and_change_only_the_suites() {
        for script in [
            reach_script(DEBIAN12, DEBIAN13),
            upgrade_script(DEBIAN12, DEBIAN13),
            services_script(&[exporter::ENV], true, true, 2379, 2479),
            begin_script(),
        ] {
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{script}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let sed = suites(DEBIAN12, DEBIAN13);
        let out = std::process::Command::new("sed")
            .args(["-E", sed.trim_matches('\'')])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(b"deb http://m/debian bookworm main\ndeb http://s/ bookworm-security main\nSuites: bookworm bookworm-updates\n# bookwormish\n")?;
                c.wait_with_output()
            })
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "deb http://m/debian trixie main\ndeb http://s/ trixie-security main\nSuites: trixie trixie-updates\n# bookwormish\n"
        );
        let up = upgrade_script(DEBIAN12, DEBIAN13);
        assert!(up.contains("--force-confold") && up.contains("policy-rc.d") && up.contains("full-upgrade"));
        assert!(
            up.contains("systemd-run") && up.contains("try-restart ssh.service"),
            "{up}"
        );
        crate::shell::assert_parses_cleanly(&up);
        // An earlier run's unit is waited for by its file, not by systemctl.
        let head = up.split("exec systemd-run").next().unwrap();
        assert!(
            head.contains("[ -e \"$t\" ] || break") && !head.contains("is-active"),
            "{head}"
        );
        // A witness: Debian's own etcd and HAProxy units are not pgha's.
        let witness = services_script(&[], false, false, 2379, 2479);
        assert!(
            !witness.contains("if true; then") && !witness.contains("haproxy"),
            "{witness}"
        );
        let s = services_script(&[exporter::ENV], true, true, 2379, 2479);
        assert!(s.contains("systemctl reload haproxy") && !s.contains("patroni"), "{s}");
        assert!(
            s.contains("then chown root:prometheus /etc/default/prometheus-postgres-exporter && chmod 640"),
            "{s}"
        );
    }
}
