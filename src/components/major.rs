//! A PostgreSQL major upgrade on the database hosts, as shell: what each
//! host has (read without changing it), `pg_upgrade --check` against the
//! running old server, `pg_upgrade` on the master, and the copy of what it
//! changed to each standby with rsync (PostgreSQL's documented method for
//! standbys, "Upgrade streaming replication and log-shipping standby
//! servers"). The order is `ops::major`'s.

use std::collections::BTreeMap;

use crate::design::Design;
use crate::shell::quote;

/// Each database host's record of the upgrade (`key value` lines): written
/// on every one before the first server stops, gone when it is done. A run
/// killed anywhere is finished by the next from what these say.
pub(crate) const MARKER: &str = "/var/lib/pgha/pg-upgrade";

/// While this file exists the fence keeps Patroni from starting on the
/// host: from the stop until the host's turn to start, whatever starts it
/// (a reboot, an operator), its data directory is half-way between two
/// majors or empty.
pub(crate) const HOLD: &str = "/var/lib/pgha/pg-upgrade-hold";

/// Held by the upgrade's host scripts that run long (pg_upgrade, rsync,
/// the check): a run after a killed one waits for what it left running.
const LOCK: &str = "/var/lib/pgha/pg-upgrade.lock";

/// Waits (up to an hour) for the host's upgrade lock, held until the
/// script ends.
fn locked() -> String {
    format!("mkdir -p /var/lib/pgha\nexec 9>{LOCK}\nflock -w 3600 9 || {{ echo 'another upgrade script still runs here' >&2; exit 1; }}\n")
}

/// Holds Patroni on the host (see [`HOLD`]), its text naming the command
/// that finishes the upgrade.
pub(crate) fn hold_script(to: u32) -> String {
    format!(
        "mkdir -p /var/lib/pgha && echo {} > {HOLD}",
        quote(&format!(
            "a PostgreSQL major upgrade is under way; `pgha upgrade postgres {to}` finishes it and starts Patroni here"
        ))
    )
}

/// Lets Patroni start on the host again.
pub(crate) fn unhold_script() -> String {
    format!("rm -f {HOLD}")
}

/// The master's SSH key for the copies, and the standbys' host keys.
const KEY_DIR: &str = "/var/lib/pgha/pg-upgrade-ssh";

/// The comment that marks the master's key in a standby's authorized_keys.
const KEY_COMMENT: &str = "pgha-pg-upgrade";

/// The port pg_upgrade's own servers listen on (a socket in its working
/// directory only).
const UPGRADE_PORT: u16 = 50432;

/// The old and the new server's binaries and data directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dirs {
    pub old_bin: String,
    pub new_bin: String,
    pub old_data: String,
    pub new_data: String,
    /// The running server's port.
    pub port: u16,
}

impl Dirs {
    pub(crate) fn new(old: &Design, new: &Design) -> Dirs {
        Dirs {
            old_bin: old.platform.bin_dir.clone(),
            new_bin: new.platform.bin_dir.clone(),
            old_data: old.platform.data_dir.clone(),
            new_data: new.platform.data_dir.clone(),
            port: old.platform.postgres_port,
        }
    }

    /// The directory both data directories are under, and each one's path
    /// from it (`/var/lib/postgresql`, `15/pgha`, `17/pgha`): rsync copies
    /// both in one run so that it keeps their hard links.
    pub(crate) fn common(&self) -> (String, String, String) {
        let old: Vec<&str> = self.old_data.split('/').collect();
        let new: Vec<&str> = self.new_data.split('/').collect();
        let n = old
            .iter()
            .zip(&new)
            .take_while(|(a, b)| a == b)
            .count()
            .min(old.len() - 1)
            .min(new.len() - 1);
        let parent = old[..n].join("/");
        let parent = if parent.is_empty() { "/".to_string() } else { parent };
        (parent, old[n..].join("/"), new[n..].join("/"))
    }

    fn bin(&self, new: bool, tool: &str) -> String {
        quote(&format!("{}/{tool}", if new { &self.new_bin } else { &self.old_bin }))
    }

    fn parent_of_new(&self) -> String {
        let p = self.new_data.rsplit_once('/').map_or("/", |(p, _)| p);
        quote(if p.is_empty() { "/" } else { p })
    }
}

/// Prints what the upgrade needs to know of a host, one `key value` line
/// each: the marker's lines (`marker KEY VALUE`), the major Patroni's
/// configuration names, whether the new server and rsync are installed,
/// whether the old server runs, the old data directory's state and last
/// checkpoint (pg_controldata) or that pg_upgrade disabled it, its
/// tablespaces, and the new data directory's version.
pub(crate) fn facts_script(d: &Dirs) -> String {
    let (old, new) = (quote(&d.old_data), quote(&d.new_data));
    format!(
        "cd /\n\
[ -f {MARKER} ] && sed 's/^/marker /' {MARKER}\n\
{configured}\n\
[ -x {pg_upgrade} ] && echo new_bin yes\n\
command -v rsync >/dev/null && echo rsync yes\n\
runuser -u postgres -- {pg_ctl} -D {old} status >/dev/null 2>&1 && echo old_running yes\n\
if [ -f {old}/global/pg_control ]; then LC_ALL=C {controldata} -D {old} 2>/dev/null | sed -n \
-e 's/^Database cluster state: *\\(.*\\)$/old_state \\1/p' \
-e 's/^Latest checkpoint location: *\\(.*\\)$/old_checkpoint \\1/p' \
-e 's/^Data page checksum version: *\\(.*\\)$/old_checksums \\1/p'; fi\n\
[ -f {old}/global/pg_control.old ] && echo old_disabled yes\n\
[ -d {old}/pg_tblspc ] && echo tablespaces $(ls -A {old}/pg_tblspc | wc -l)\n\
[ -f {new}/PG_VERSION ] && echo new_version $(cat {new}/PG_VERSION)\n\
true\n",
        configured = super::patroni::configured_major_script("configured "),
        pg_upgrade = d.bin(true, "pg_upgrade"),
        pg_ctl = d.bin(false, "pg_ctl"),
        controldata = d.bin(false, "pg_controldata"),
    )
}

/// What [`facts_script`] found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    pub marker: BTreeMap<String, String>,
    pub configured: Option<u32>,
    pub new_bin: bool,
    pub rsync: bool,
    pub old_running: bool,
    pub old_state: Option<String>,
    pub old_checkpoint: Option<String>,
    pub old_checksums: bool,
    pub old_disabled: bool,
    pub tablespaces: usize,
    pub new_version: Option<u32>,
}

impl Facts {
    pub(crate) fn mark(&self, key: &str) -> Option<&str> {
        self.marker.get(key).map(String::as_str)
    }
}

pub(crate) fn parse_facts(out: &str) -> Facts {
    let mut f = Facts::default();
    for line in out.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let value = value.trim();
        match key {
            "marker" => {
                let (k, v) = value.split_once(' ').unwrap_or((value, ""));
                f.marker.insert(k.to_string(), v.trim().to_string());
            }
            "configured" => f.configured = value.parse().ok(),
            "new_bin" => f.new_bin = true,
            "rsync" => f.rsync = true,
            "old_running" => f.old_running = true,
            "old_state" => f.old_state = Some(value.to_string()),
            "old_checkpoint" => f.old_checkpoint = Some(value.to_string()),
            "old_checksums" => f.old_checksums = value != "0",
            "old_disabled" => f.old_disabled = true,
            "tablespaces" => f.tablespaces = value.parse().unwrap_or(0),
            "new_version" => f.new_version = value.parse().ok(),
            _ => {}
        }
    }
    f
}

/// Sets `pairs` in the host's [`MARKER`] (each key once).
pub(crate) fn mark_script(pairs: &[(&str, &str)]) -> String {
    let mut s = format!("set -e\nmkdir -p /var/lib/pgha\ntouch {MARKER}\n");
    for (k, v) in pairs {
        s.push_str(&format!(
            "{{ grep -v {} {MARKER} || true; echo {}; }} > {MARKER}.new && mv {MARKER}.new {MARKER}\n",
            quote(&format!("^{k} ")),
            quote(&format!("{k} {v}"))
        ));
    }
    s
}

/// The server package of `version`, and rsync.
pub(crate) fn packages(version: u32) -> Vec<String> {
    vec![format!("postgresql-{version}"), "rsync".to_string()]
}

/// A scratch directory for pg_upgrade's working files (it writes them to
/// its current directory), removed on every way out with `also`.
fn workdir(also: &str) -> String {
    format!(
        "work=$(mktemp -d)\nchown postgres:postgres \"$work\"\ntrap 'rm -rf \"$work\" {}' EXIT\n",
        also.replace('\'', "")
    )
}

/// `initdb` of the new server into `dir`, as the old cluster was made:
/// UTF8, its locale, and data checksums when it has them (pg_upgrade
/// requires the same); local connections by peer, as Patroni's pg_hba.
fn initdb(d: &Dirs, dir: &str, locale: &str) -> String {
    format!(
        "install -d -o postgres -g postgres -m 0755 {parent}\n\
sums=$(LC_ALL=C {controldata} -D {old} | sed -n 's/^Data page checksum version: *//p')\n\
k=; [ \"${{sums:-0}}\" = 0 ] || k=--data-checksums\n\
runuser -u postgres -- {initdb} -D {dir} --encoding=UTF8 --locale={locale} $k --auth-local=peer \
--auth-host=scram-sha-256 >/dev/null\n",
        parent = d.parent_of_new(),
        controldata = d.bin(false, "pg_controldata"),
        old = quote(&d.old_data),
        initdb = d.bin(true, "initdb"),
        dir = quote(dir),
        locale = quote(locale),
    )
}

/// The locale of the running old server's databases (template0's).
pub(crate) const LOCALE_SQL: &str = "select datcollate from pg_database where datname = 'template0'";

/// A locale as initdb takes it (`C`, `C.UTF-8`, `en_US.utf8`).
pub(crate) fn valid_locale(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
}

/// On failure pg_upgrade names the files that say why, under the new
/// data directory: print them.
fn upgrade_failed(dir: &str) -> String {
    format!(
        "find {}/pg_upgrade_output.d -name '*.txt' -exec sh -c 'echo \"== $1\"; head -n 40 \"$1\"' _ {{}} \\; >&2 2>/dev/null",
        quote(dir)
    )
}

/// `pg_upgrade --check` against the running old server, with a new
/// cluster initialised aside for it and removed after: whether the
/// upgrade can run here (extensions and their libraries, data types,
/// settings), changing nothing of the cluster.
pub(crate) fn check_script(d: &Dirs, locale: &str) -> String {
    let scratch = format!("{}.pgha-check", d.new_data);
    let q = quote(&scratch);
    format!(
        "set -e\ncd /\n{lock}rm -rf {q}\n{work}{initdb}cd \"$work\"\n\
if ! out=$(runuser -u postgres -- {pg_upgrade} --check -b {old_bin} -B {new_bin} -d {old} -D {q} -p {port} \
-P {UPGRADE_PORT} -U postgres 2>&1); then echo \"$out\" | tail -n 20 >&2; {failed}; exit 1; fi\n",
        lock = locked(),
        work = workdir(&q),
        initdb = initdb(d, &scratch, locale),
        pg_upgrade = d.bin(true, "pg_upgrade"),
        old_bin = quote(&d.old_bin),
        new_bin = quote(&d.new_bin),
        old = quote(&d.old_data),
        port = d.port,
        failed = upgrade_failed(&scratch),
    )
}

/// Stops the server on `data` (fast: a clean shutdown checkpoint, which
/// a master's WAL senders hand to every connected standby before it
/// ends) when one runs.
pub(crate) fn stop_script(bin: &str, data: &str) -> String {
    let pg_ctl = quote(&format!("{bin}/pg_ctl"));
    let data = quote(data);
    format!(
        "if runuser -u postgres -- {pg_ctl} -D {data} status >/dev/null 2>&1; then \
runuser -u postgres -- {pg_ctl} -D {data} -m fast -w -t 300 stop >/dev/null; fi"
    )
}

/// On the master, its old server stopped cleanly: a new cluster by initdb
/// and `pg_upgrade` into it, by hard links when both data directories are
/// on one file system (nothing copied; the old cluster cannot start once
/// the new one has), else by copy. A run killed half-way is undone first:
/// the new cluster never started, so the old one's control file, which
/// pg_upgrade's link mode renames, is put back and all starts again.
/// Prints `mode --link|--copy` and `took SECONDS`.
pub(crate) fn upgrade_script(d: &Dirs, locale: &str) -> String {
    let (old, new) = (quote(&d.old_data), quote(&d.new_data));
    format!(
        "set -e\ncd /\n{lock}[ {old} != {new} ] || {{ echo 'the old and the new data directory are one' >&2; exit 1; }}\n\
if [ -f {old}/global/pg_control.old ] && [ ! -f {old}/global/pg_control ]; then \
mv {old}/global/pg_control.old {old}/global/pg_control; fi\n\
state=$(LC_ALL=C {controldata} -D {old} | sed -n 's/^Database cluster state: *//p')\n\
[ \"$state\" = 'shut down' ] || {{ echo \"the old cluster is not shut down cleanly: $state\" >&2; exit 1; }}\n\
rm -rf {new}\n{work}{initdb}\
mode=--link\n[ \"$(stat -c %d {old})\" = \"$(stat -c %d {parent})\" ] || mode=--copy\n\
start=$(date +%s)\ncd \"$work\"\n\
if ! out=$(runuser -u postgres -- {pg_upgrade} $mode -b {old_bin} -B {new_bin} -d {old} -D {new} -p {UPGRADE_PORT} \
-P {UPGRADE_PORT} -U postgres 2>&1); then echo \"$out\" | tail -n 20 >&2; {failed}; exit 1; fi\n\
echo mode $mode\necho took $(( $(date +%s) - start ))\necho size $(du -sb {old} | cut -f1)\n\
if [ -f update_extensions.sql ]; then install -m 0644 update_extensions.sql {EXTENSIONS}; echo extensions {EXTENSIONS}; fi\n",
        lock = locked(),
        controldata = d.bin(false, "pg_controldata"),
        work = workdir(""),
        initdb = initdb(d, &d.new_data, locale),
        parent = d.parent_of_new(),
        pg_upgrade = d.bin(true, "pg_upgrade"),
        old_bin = quote(&d.old_bin),
        new_bin = quote(&d.new_bin),
        failed = upgrade_failed(&d.new_data),
    )
}

/// Where the master keeps pg_upgrade's script of `ALTER EXTENSION ...
/// UPDATE`s (when it writes one): the DBA runs it once the upgrade is done.
pub(crate) const EXTENSIONS: &str = "/var/lib/pgha/pg-upgrade-update_extensions.sql";

/// On the master: its key for the copies (made once), printed.
pub(crate) fn key_script() -> String {
    format!(
        "set -e\ninstall -d -o postgres -g postgres -m 0700 {KEY_DIR}\n\
[ -f {KEY_DIR}/id_ed25519 ] || runuser -u postgres -- ssh-keygen -q -t ed25519 -N '' -C {KEY_COMMENT} -f {KEY_DIR}/id_ed25519\n\
cat {KEY_DIR}/id_ed25519.pub\n"
    )
}

/// A public key as `ssh-keygen` prints it, without its comment; `None`
/// for anything else.
pub(crate) fn public_key(line: &str) -> Option<String> {
    let mut parts = line.split_whitespace();
    let (kind, key) = (parts.next()?, parts.next()?);
    let kind_ok = kind.starts_with("ssh-") || kind.starts_with("ecdsa-");
    let key_ok = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
    (kind_ok && kind.chars().all(|c| c.is_ascii_alphanumeric() || "-@.".contains(c)) && key_ok)
        .then(|| format!("{kind} {key}"))
}

/// On a standby: its SSH host key (ed25519), printed.
pub(crate) fn host_key_script() -> String {
    "cat /etc/ssh/ssh_host_ed25519_key.pub".to_string()
}

/// On a standby, before the copy: the master's key may log in as
/// `postgres` from the master's address only, with no forwarding or
/// terminal; the standby's new data directory is removed before its first
/// copy (rsync compares sizes only: files of another origin would stay; a
/// copy begun by a killed run has only the master's, and may still run).
pub(crate) fn receive_script(d: &Dirs, key: &str, master_address: &str) -> String {
    let line = format!("from=\"{master_address}\",restrict {key} {KEY_COMMENT}");
    format!(
        "set -e\nhome=$(getent passwd postgres | cut -d: -f6)\n\
install -d -o postgres -g postgres -m 0700 \"$home/.ssh\"\nf=\"$home/.ssh/authorized_keys\"\n\
{{ grep -v ' {KEY_COMMENT}$' \"$f\" 2>/dev/null || true; echo {}; }} > \"$f.pgha\"\n\
chown postgres:postgres \"$f.pgha\" && chmod 0600 \"$f.pgha\" && mv \"$f.pgha\" \"$f\"\n\
grep -q '^copying ' {MARKER} 2>/dev/null || rm -rf {}\ninstall -d -o postgres -g postgres -m 0755 {}\n",
        quote(&line),
        quote(&d.new_data),
        d.parent_of_new(),
    )
}

/// On the master: both data directories copied to the standby at
/// `address` by rsync over SSH as `postgres`, its host key the one given
/// (strict checking), as PostgreSQL's documentation has it: hard links
/// kept, sizes compared (the old directories are the same files, shut down
/// at the same checkpoint), only the new cluster's catalog written. The old
/// cluster's WAL stays out: no file of the new one links to it, and its
/// segments (named by each standby's own recycling) would cross in full.
/// Prints rsync's statistics.
pub(crate) fn sync_script(d: &Dirs, address: &str, port: u16, host_key: &str) -> String {
    let (parent, old, new) = d.common();
    let v6 = address.contains(':');
    let known = match (v6, port) {
        (false, 22) => format!("{address} {host_key}"),
        _ => format!("[{address}]:{port} {host_key}"),
    };
    let target = if v6 {
        format!("[{address}]")
    } else {
        address.to_string()
    };
    let ssh = format!(
        "ssh -p {port} -i {KEY_DIR}/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes \
         -o UserKnownHostsFile={KEY_DIR}/known_hosts -o ConnectTimeout=10 -o ServerAliveInterval=10"
    );
    format!(
        "set -e\n{}echo {} > {KEY_DIR}/known_hosts\nchown postgres:postgres {KEY_DIR}/known_hosts\ncd {}\n\
runuser -u postgres -- rsync --archive --delete --hard-links --size-only --no-inc-recursive --relative --stats \
--exclude={} -e {} {} {} {}\n",
        locked(),
        quote(&known),
        quote(&parent),
        quote(&format!("/{old}/pg_wal/")),
        quote(&ssh),
        quote(&old),
        quote(&new),
        quote(&format!("postgres@{target}:{parent}/")),
    )
}

/// On a standby whose copy failed: the rsync receiving here ended, its
/// new data directory removed and the copy no longer recorded (Patroni
/// copies it in full after the start).
pub(crate) fn abandon_copy_script(d: &Dirs) -> String {
    format!(
        "timeout 30 sh -c 'pkill -u postgres -x rsync; while pgrep -u postgres -x rsync >/dev/null; do sleep 0.2; done' \
         || true\nrm -rf {}\n[ ! -f {MARKER} ] || sed -i '/^copying /d' {MARKER}\n",
        quote(&d.new_data)
    )
}

/// rsync's `Total bytes sent` and `Total file size` (the data it
/// compared), from its statistics.
pub(crate) fn parse_stats(out: &str) -> (Option<u64>, Option<u64>) {
    let number = |label: &str| {
        out.lines().find_map(|l| l.trim().strip_prefix(label)).and_then(|rest| {
            let digits: String = rest
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.')
                .filter(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
    };
    (number("Total bytes sent:"), number("Total file size:"))
}

/// The end of the upgrade on a host: its record, the master's key and
/// the standbys' authorization for it gone.
pub(crate) fn finish_script() -> String {
    format!(
        "set -e\nrm -rf {MARKER} {KEY_DIR} {HOLD}\nhome=$(getent passwd postgres | cut -d: -f6)\nf=\"$home/.ssh/authorized_keys\"\n\
if [ -f \"$f\" ] && grep -q ' {KEY_COMMENT}$' \"$f\"; then grep -v ' {KEY_COMMENT}$' \"$f\" > \"$f.pgha\" || true; \
chown postgres:postgres \"$f.pgha\"; chmod 0600 \"$f.pgha\"; mv \"$f.pgha\" \"$f\"; fi\n"
    )
}

/// `vacuumdb --analyze-in-stages` on every database: pg_upgrade does not
/// carry the planner's statistics, and queries plan badly until then.
pub(crate) fn analyze_script(d: &Dirs) -> String {
    format!(
        "cd / && runuser -u postgres -- {} -p {} --all --analyze-in-stages >/dev/null",
        d.bin(true, "vacuumdb"),
        d.port
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> Dirs {
        Dirs {
            old_bin: "/usr/lib/postgresql/15/bin".into(),
            new_bin: "/usr/lib/postgresql/17/bin".into(),
            old_data: "/var/lib/postgresql/15/pgha".into(),
            new_data: "/var/lib/postgresql/17/pgha".into(),
            port: 5432,
        }
    }

    #[test]
    fn both_data_directories_go_in_one_rsync_from_their_common_parent() {
        assert_eq!(
            dirs().common(),
            ("/var/lib/postgresql".into(), "15/pgha".into(), "17/pgha".into())
        );
        let other = Dirs {
            old_data: "/data/a".into(),
            new_data: "/srv/b".into(),
            ..dirs()
        };
        assert_eq!(other.common(), ("/".into(), "data/a".into(), "srv/b".into()));
        let s = sync_script(&dirs(), "10.0.2.1", 22, "ssh-ed25519 AAAA");
        assert!(s.contains("cd /var/lib/postgresql\n"), "{s}");
        assert!(
            s.contains("--hard-links --size-only --no-inc-recursive --relative")
                && s.contains(" 15/pgha 17/pgha postgres@10.0.2.1:/var/lib/postgresql/")
                && s.contains("--exclude=/15/pgha/pg_wal/ "),
            "{s}"
        );
        assert!(s.contains("StrictHostKeyChecking=yes"), "{s}");
        let v6 = sync_script(&dirs(), "fd00::1", 2222, "ssh-ed25519 AAAA");
        assert!(
            v6.contains("echo '[fd00::1]:2222 ssh-ed25519 AAAA'")
                && v6.contains("'postgres@[fd00::1]:/var/lib/postgresql/'"),
            "{v6}"
        );
        assert!(s.contains("echo '10.0.2.1 ssh-ed25519 AAAA' >"), "{s}");
    }

    #[test]
    fn facts_are_read_back() {
        let out = "marker from 15\nmarker master dc1-pg1\nconfigured 15\nnew_bin yes\nrsync yes\nold_running yes\n\
                   old_state in production\nold_checkpoint 0/3000028\nold_checksums 1\ntablespaces 0\n";
        let f = parse_facts(out);
        assert_eq!(f.mark("master"), Some("dc1-pg1"));
        assert_eq!(f.configured, Some(15));
        assert!(f.new_bin && f.rsync && f.old_running && f.old_checksums && !f.old_disabled);
        assert_eq!(f.old_state.as_deref(), Some("in production"));
        assert_eq!(f.old_checkpoint.as_deref(), Some("0/3000028"));
        assert_eq!(f.new_version, None);
        assert_eq!(parse_facts(""), Facts::default());
    }

    #[test]
    fn scripts_quote_what_they_are_given_and_compile() {
        let d = dirs();
        for s in [
            facts_script(&d),
            check_script(&d, "C.UTF-8"),
            upgrade_script(&d, "C"),
            mark_script(&[("master", "dc1-pg1"), ("from", "15")]),
            key_script(),
            receive_script(&d, "ssh-ed25519 AAAA", "10.0.1.1"),
            sync_script(&d, "10.0.2.1", 22, "ssh-ed25519 AAAA"),
            sync_script(&d, "fd00::1", 2222, "ssh-ed25519 AAAA"),
            finish_script(),
            analyze_script(&d),
            stop_script(&d.old_bin, &d.old_data),
            abandon_copy_script(&d),
            hold_script(17),
        ] {
            let st = std::process::Command::new("bash")
                .args(["-n", "-c", &s])
                .status()
                .unwrap();
            assert!(st.success(), "{s}");
        }
        let r = receive_script(&d, "ssh-ed25519 AAAA", "10.0.1.1");
        assert!(
            r.contains("echo 'from=\"10.0.1.1\",restrict ssh-ed25519 AAAA pgha-pg-upgrade'"),
            "{r}"
        );
        assert!(upgrade_script(&d, "C").contains("mode=--link"));
    }

    #[test]
    fn only_public_keys_and_locales_of_their_shape_pass() {
        assert_eq!(
            public_key("ssh-ed25519 AAAAC3Nza+/= root@host\n").as_deref(),
            Some("ssh-ed25519 AAAAC3Nza+/=")
        );
        assert_eq!(public_key("ssh-ed25519 AAAA;rm"), None);
        assert_eq!(public_key("from=x ssh-ed25519"), None);
        assert!(valid_locale("C.UTF-8") && valid_locale("en_US.utf8"));
        assert!(!valid_locale("C; rm") && !valid_locale(""));
    }

    #[test]
    fn rsync_statistics_are_read() {
        let out = "Number of files: 1,234\nTotal file size: 41,234,567 bytes\nTotal bytes sent: 5,123,456\n";
        assert_eq!(parse_stats(out), (Some(5_123_456), Some(41_234_567)));
    }
}
