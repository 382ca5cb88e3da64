//! The real tools accept what pgha renders: `haproxy -c` and Patroni's own
//! validator, of both supported releases. This machine's (Debian 12's
//! packages; .ci/setup installs them) check the Debian 12 rendering; Debian
//! 13's tools run inside the Debian 13 lab image (built by .ci/run).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{example, pgha};
use pgha::release::{Release, DEBIAN12, DEBIAN13};
use pgha::render::{write_tree, Renderer};
use pgha::secrets::Secrets;

fn require(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{tool} is not installed: run .ci/setup (installs Debian's haproxy, patroni and postgresql-15)"
    );
}

/// The examples; the site files (witness, site agent) come from the last only.
const EXAMPLES: [&str; 3] = ["two-clouds.yaml", "single-cloud.yaml", "three-sites.yaml"];

/// Every example rendered for hosts running `release`, under one directory.
fn rendered(release: Release) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in EXAMPLES {
        let d = pgha::design::load(&example(name))
            .unwrap()
            .design
            .for_postgres(release.postgres);
        // A real CA and certificates (made in memory, nothing saved): HAProxy
        // loads its ca-file when it checks a config.
        let (pki, _) = pgha::pki::ensure(&d, time::OffsetDateTime::now_utc(), false).unwrap();
        let all = Renderer::for_design(&d)
            .unwrap()
            .with_pki(Some(pki))
            .all(&d, &Secrets::generate().unwrap())
            .unwrap();
        files.extend(write_tree(&dir.path().join(name), &all).unwrap());
    }
    (dir, files)
}

/// The rendered files whose path ends with `suffix` (some of each example
/// but for the site's files, which only the last one has).
fn having(files: &[PathBuf], suffix: &str) -> Vec<PathBuf> {
    let found: Vec<PathBuf> = files.iter().filter(|f| f.ends_with(suffix)).cloned().collect();
    // And a virtual IP (dc1's); two-clouds.yaml has no backups.
    let site = suffix.contains("site-") || suffix.contains("vip-");
    let backups = suffix.contains("backup-metrics");
    for name in EXAMPLES
        .into_iter()
        .filter(|n| !site || *n == "three-sites.yaml")
        .filter(|n| !backups || *n != "two-clouds.yaml")
    {
        assert!(
            found.iter().any(|f| f.to_string_lossy().contains(name)),
            "no {suffix} rendered for {name}"
        );
    }
    found
}

/// Runs `program ARGS FILE` here on every Debian 12 file ending with
/// `suffix`: each must pass, and with `quiet` print nothing on stderr.
fn every_rendered_passes(suffix: &str, program: &str, args: &[&str], quiet: bool) {
    require(program);
    let (_dir, files) = rendered(DEBIAN12);
    for file in having(&files, suffix) {
        // The file as its host would read it: its TLS files where it names
        // them, which here is under the host's rendered tree.
        let root = file.to_string_lossy().strip_suffix(suffix).unwrap().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let local = file.with_extension("local");
        std::fs::write(&local, text.replace("/etc/pgha/tls/", &format!("{root}etc/pgha/tls/"))).unwrap();
        let out = Command::new(program).args(args).arg(&local).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && (!quiet || stderr.trim().is_empty()),
            "{}: {stderr}",
            file.display()
        );
    }
}

/// Debian 13's HAProxy 3.0, Patroni 4.0 and Python check the Debian 13
/// rendering inside the Debian 13 lab image, in one container.
#[test]
fn debian_13_tools_accept_every_rendered_file() {
    if !common::e2e() {
        return;
    }
    let image = pgha(["lab", "image", "--os", "debian13", "--image", "baked"]);
    assert!(image.status.success(), "{}", common::stderr(&image));
    let tag = common::stdout(&image).trim().to_string();
    let (dir, files) = rendered(DEBIAN13);
    let inside = |f: &PathBuf| format!("/r/{}", f.strip_prefix(dir.path()).unwrap().display());
    // Patroni 4's validator connects to the etcd hosts a config names: give
    // the container those addresses and a real etcd listening on them.
    let mut script = String::from(
        "set -e\n\
for a in $(sed -n 's/^    - \"\\([0-9.]*\\):2379\"$/\\1/p' $(find /r -name config.yml) | sort -u); do ip addr add \"$a/32\" dev lo; done\n\
timeout 120 etcd --data-dir /tmp/etcd --listen-client-urls http://0.0.0.0:2379 --advertise-client-urls http://127.0.0.1:2379 \
--listen-peer-urls http://127.0.0.1:2380 >/dev/null 2>&1 &\n\
n=0; until ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:2379 endpoint health >/dev/null 2>&1; do n=$((n+1)); [ $n -lt 100 ] || exit 1; sleep 0.1; done\n\
mkdir -p /etc/pgha && cp -r \"$(dirname \"$(find /r -path '*/etc/pgha/tls/metrics-ca.crt' | head -1)\")\" /etc/pgha/tls\n",
    );
    for (suffix, check) in [
        ("etc/haproxy/haproxy.cfg", "haproxy -q -c -f"),
        ("etc/patroni/config.yml", "patroni --validate-config"),
        (
            "usr/local/lib/pgha/patroni-fence",
            "PYTHONPYCACHEPREFIX=/tmp/pyc python3 -m py_compile",
        ),
        (
            "usr/local/lib/pgha/site-agent",
            "PYTHONPYCACHEPREFIX=/tmp/pyc python3 -m py_compile",
        ),
        (
            "usr/local/lib/pgha/site-gate",
            "PYTHONPYCACHEPREFIX=/tmp/pyc python3 -m py_compile",
        ),
        (
            "usr/local/lib/pgha/vip-leader",
            "PYTHONPYCACHEPREFIX=/tmp/pyc python3 -m py_compile",
        ),
    ] {
        for f in having(&files, suffix) {
            // Each must pass and print nothing.
            script.push_str(&format!(
                "out=$({check} '{0}' 2>&1) || {{ echo \"{0}: $out\"; exit 1; }}; [ -z \"$out\" ] || {{ echo \"{0}: $out\"; exit 1; }}\n",
                inside(&f)
            ));
        }
    }
    // The certificate metrics read the host's certificates (the rendered ones)
    // with this release's openssl and date: both expiries parsed (not 0:
    // unreadable), a valid textfile by promtool's lint. The node exporter
    // runs with a host's arguments (a wrong flag ends it at once) and reads it.
    let env = having(&files, "etc/default/prometheus-node-exporter")[0].clone();
    let code = having(&files, "usr/local/lib/pgha/cert-metrics")[0].clone();
    script.push_str(&format!(
        "sh -n '{0}' && sh '{0}'\n\
         promtool check metrics < /var/lib/prometheus/node-exporter/pgha.prom\n\
         [ \"$(grep -c '^pgha_certificate_expiry_timestamp_seconds{{.*}} 1[0-9]\\{{9\\}}$' /var/lib/prometheus/node-exporter/pgha.prom)\" = 2 ] \
         || {{ cat /var/lib/prometheus/node-exporter/pgha.prom; exit 1; }}\n\
         . '{1}'\n\
         prometheus-node-exporter $ARGS >/tmp/node.log 2>&1 &\n\
         n=0; until python3 -c \"import urllib.request as u; t = u.urlopen('http://127.0.0.1:9100/metrics', timeout=2).read().decode(); \
         assert 'pgha_certificate_expiry_timestamp_seconds{{certificate=\\\"host\\\"' in t and 'node_textfile_scrape_error 0' in t \
         and 'node_filesystem_avail_bytes{{' in t\" 2>/dev/null; do n=$((n+1)); \
         [ $n -lt 100 ] || {{ echo node exporter:; cat /tmp/node.log; exit 1; }}; sleep 0.1; done\n",
        inside(&code),
        inside(&env)
    ));
    // The backup metrics' textfile, as this release's node exporter reads it.
    script.push_str(
        r#"cd /h && python3 -B -c 'import backup_metrics as m; m.write_whole("/var/lib/prometheus/node-exporter/pgha-backup.prom", m.render(5, {"dc1": m.Repo(0, 2, 0, {"full": 1})}, True, 60))'
python3 -c "import urllib.request as u; t = u.urlopen('http://127.0.0.1:9100/metrics', timeout=2).read().decode(); assert 'pgha_backup_count{repository=\"dc1\"} 2' in t and 'node_textfile_scrape_error 0' in t, t"
"#,
    );
    // The site agent's, the gate's and the backup metrics' logic (systemd's
    // calendar included), under the reference release's Python.
    script.push_str(
        "cd /h && PYTHONDONTWRITEBYTECODE=1 python3 -m unittest -q test_site_agent test_site_gate test_vip_leader test_backup_metrics 2>&1 | tail -3 | grep -qx OK\n",
    );
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--cap-add", "NET_ADMIN", "-v"])
        .arg(format!("{}:/r:ro", dir.path().display()))
        .arg("-v")
        .arg(format!("{}:/h:ro", host_code().display()))
        .args([tag.as_str(), "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", common::stdout(&out), common::stderr(&out));
}

#[test]
fn haproxy_accepts_every_rendered_config() {
    every_rendered_passes("etc/haproxy/haproxy.cfg", "haproxy", &["-c", "-f"], false);
}

#[test]
fn patroni_accepts_every_rendered_config() {
    every_rendered_passes("etc/patroni/config.yml", "patroni", &["--validate-config"], true);
}

#[test]
fn python_compiles_every_rendered_fence_and_site_agent() {
    for script in [
        "usr/local/lib/pgha/patroni-fence",
        "usr/local/lib/pgha/site-agent",
        "usr/local/lib/pgha/site-gate",
        "usr/local/lib/pgha/vip-leader",
    ] {
        every_rendered_passes(script, "python3", &["-m", "py_compile"], true);
    }
}

/// host/: the code pgha installs as it is (the site agent) and its tests.
fn host_code() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("host")
}

/// The site agent's, the gate's and the VIP leader loop's decisions, every
/// branch (host/test_*.py), and the settings rendered for the loops: every
/// example's load into its `Settings`.
#[test]
fn site_agent_decides_and_reads_its_settings() {
    require("python3");
    let out = Command::new("python3")
        .args([
            "-B",
            "-m",
            "unittest",
            "test_site_agent",
            "test_site_gate",
            "test_vip_leader",
            "test_backup_metrics",
        ])
        .current_dir(host_code())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let (_dir, files) = rendered(DEBIAN12);
    // Each loop's settings, as rendered, load into its `Settings`.
    for (suffix, check) in [
        (
            "etc/pgha/site-agent.json",
            "import site_agent, sys; s = site_agent.Settings.load(sys.argv[1]); assert s.endpoints and s.follow[\"host\"], s",
        ),
        (
            "etc/pgha/backup-metrics.json",
            "import json, sys; s = json.load(open(sys.argv[1])); assert s['stanza'] and s['repositories'] and len(s['schedules']) == 2 and s['output'].endswith('/pgha-backup.prom'), s",
        ),
        (
            "etc/pgha/vip-leader.json",
            "import vip_leader, sys; s = vip_leader.Settings.load(sys.argv[1]); assert s.endpoints and s.key.startswith('/pgha-vip/'), s",
        ),
    ] {
        for f in having(&files, suffix) {
            let out = Command::new("python3")
                .args(["-B", "-c", check])
                .arg(&f)
                .current_dir(host_code())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}: {}", f.display(), common::stderr(&out));
        }
    }
}

/// The site fence's decision, every branch, run by `bash` (as on the hosts)
/// from the rendered script (the example's ttl is 30: bound 15 s).
#[test]
fn site_fence_decides_from_the_last_renewal() {
    let (_dir, files) = rendered(DEBIAN12);
    let fence = having(&files, "usr/local/lib/pgha/site-fence").remove(0);
    let text = std::fs::read_to_string(&fence).unwrap();
    assert!(text.contains("\nBOUND=15\n"), "{text}");
    let decide = |args: &[&str]| {
        let out = Command::new("bash")
            .arg(&fence)
            .arg("--decide")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
        common::stdout(&out).trim().to_string()
    };
    // armed, primary, now, last renewal, the fence's first start; verdict; why
    let cases = [
        (["0", "1", "100", "", ""], "hold", "never armed: no site yet"),
        (["1", "0", "100", "", ""], "hold", "not a primary"),
        (["1", "1", "100", "95.5", "10"], "hold", "renewed 4.5 s ago"),
        (["1", "1", "100", "85", "10"], "fence 15.0", "renewed 15 s ago"),
        (["1", "1", "100", "85.5", "10"], "hold", "renewed 14.5 s ago"),
        (["1", "1", "100", "", "10"], "fence 90.0", "never stamped"),
        (
            ["1", "1", "100", "", "95"],
            "hold",
            "never stamped, fence started 5 s ago",
        ),
        (
            ["1", "1", "100", "50", "95"],
            "hold",
            "old stamp, fence started 5 s ago",
        ),
        (["1", "1", "100", "garbage", ""], "fence unknown", "unreadable"),
        (["1", "1", "100", "", ""], "fence unknown", "nothing known"),
        (["1", "1", "100", "150", ""], "fence unknown", "a renewal in the future"),
        (["1", "1", "100", "1e9", ""], "fence unknown", "not a plain number"),
        (
            ["1", "1", "100", "99999999999999999999", ""],
            "fence unknown",
            "too long for the shell's arithmetic: the future",
        ),
        (
            ["1", "1", "100", "99999999999999999999", "10"],
            "fence unknown",
            "too long for the shell's arithmetic: the future",
        ),
        (["1", "1", "100", "0", ""], "fence unknown", "no start, a zero stamp"),
        (["1", "1", "100.25", "85.2", "10"], "fence 15.1", "rounded to a tenth"),
        (["1", "1", "100", "100.5", ""], "hold", "within the clock's second"),
        (["1", "1", "1e2", "95", ""], "fence unknown", "the clock unreadable"),
    ];
    for (args, want, why) in cases {
        assert_eq!(decide(&args), want, "{why}");
    }
}

/// PostgreSQL's restore_command, run by `sh` (dash, as on the hosts) from
/// the rendered script in a data directory whose pg_wal holds timeline 5's
/// history (timeline 4 ended at 0/13045BB0), with a fake pgBackRest and
/// pg_controldata: a segment of timeline 4 from the fork on is refused
/// (seen on the lab: a standby replayed the old master's archived segment
/// 13 past the fork and could no longer follow its upstream), anything
/// else goes to archive-get.
#[test]
fn restore_command_refuses_an_abandoned_branch() {
    let (dir, files) = rendered(DEBIAN12);
    let script = files
        .iter()
        .find(|f| f.ends_with("dc1-pg1/usr/local/lib/pgha/restore-wal") && f.to_string_lossy().contains("three-sites"))
        .expect("three-sites' dc1-pg1 has backups")
        .clone();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("pg_wal")).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = |name: &str, body: &str| {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        Command::new("chmod").arg("755").arg(&path).status().unwrap();
        path
    };
    let fetched = dir.path().join("fetched");
    fake("pgbackrest", &format!("echo \"$*\" >> '{}'", fetched.display()));
    let controldata = fake(
        "pg_controldata",
        "[ -e no-size ] && exit 1; echo 'Bytes per WAL segment:                16777216'",
    );
    let text = std::fs::read_to_string(&script).unwrap();
    let local = script.with_extension("local");
    let original = "/usr/lib/postgresql/15/bin/pg_controldata";
    assert!(text.contains(original), "{text}");
    std::fs::write(&local, text.replace(original, &controldata.to_string_lossy())).unwrap();
    let history = |text: &str| std::fs::write(data.join("pg_wal/00000005.history"), text).unwrap();
    let restore = |file: &str| {
        let _ = std::fs::remove_file(&fetched);
        let out = Command::new("sh")
            .arg(&local)
            .arg(file)
            .arg("pg_wal/RECOVERYXLOG")
            .current_dir(&data)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .unwrap();
        let got = std::fs::read_to_string(&fetched).unwrap_or_default();
        (out.status.code(), got, common::stderr(&out))
    };
    let passed = |file: &str| {
        let (code, got, err) = restore(file);
        assert_eq!(code, Some(0), "{file}: {err}");
        assert_eq!(
            got,
            format!("--stanza=pgha-demo --repo=1 archive-get {file} pg_wal/RECOVERYXLOG\n"),
            "{file}"
        );
    };
    let refused = |file: &str, why: &str| {
        let (code, got, err) = restore(file);
        assert_eq!(code, Some(1), "{file}: {err}");
        assert_eq!(got, "", "{file}: archive-get must not run");
        assert!(err.contains(why), "{file}: {err}");
    };
    // No history yet: every file is fetched.
    passed("000000040000000000000013");
    history("1\t0/3000000\tno recovery target specified\n\n4\t0/13045BB0\tno recovery target specified\n");
    refused("000000040000000000000013", "timeline 4 ended at 0/13045BB0");
    refused("000000040000000000000014", "timeline 4 ended at 0/13045BB0");
    refused("000000040000000100000000", "timeline 4 ended at 0/13045BB0");
    passed("000000040000000000000012");
    passed("000000050000000000000013");
    passed("000000010000000000000002");
    refused("000000010000000000000003", "timeline 1 ended at 0/3000000");
    passed("00000005.history");
    passed("000000040000000000000013.partial");
    // A timeline that ends on a segment boundary leaves that segment whole.
    history("4\t0/14000000\tno recovery target specified\n");
    passed("000000040000000000000013");
    refused("000000040000000000000014", "timeline 4 ended at 0/14000000");
    // The newest history is the one that counts; what cannot be read is refused.
    std::fs::write(data.join("pg_wal/00000006.history"), "4\tgarbage\tx\n").unwrap();
    refused("000000040000000000000013", "unreadable switchpoint");
    std::fs::remove_file(data.join("pg_wal/00000006.history")).unwrap();
    std::fs::write(data.join("no-size"), "").unwrap();
    refused("000000040000000000000014", "segment size is unknown");
    passed("000000050000000000000014");
}

/// Every name the site agent and the Patroni fence read is defined: a
/// misspelt or dropped variable compiles, and fails only on the branch that
/// reads it (pre_promote once refused every promotion for a `lease` it had
/// not kept). Python's own symbol tables, no linter needed.
#[test]
fn python_scripts_read_no_undefined_name() {
    const CHECK: &str = r#"
import builtins, symtable, sys
path = sys.argv[1]
top = symtable.symtable(open(path).read(), path, "exec")
known = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
known |= set(dir(builtins))
bad = set()
def walk(t):
    for s in t.get_symbols():
        if s.is_referenced() and s.is_global() and s.get_name() not in known:
            bad.add(f"{s.get_name()} (read in {t.get_name()})")
    for c in t.get_children():
        walk(c)
walk(top)
print("\n".join(sorted(bad)))
sys.exit(1 if bad else 0)
"#;
    require("python3");
    let (dir, files) = rendered(DEBIAN12);
    let check = dir.path().join("undefined.py");
    std::fs::write(&check, CHECK).unwrap();
    for suffix in [
        "usr/local/lib/pgha/patroni-fence",
        "usr/local/lib/pgha/site-agent",
        "usr/local/lib/pgha/backup-metrics",
    ] {
        for file in having(&files, suffix) {
            let out = Command::new("python3").arg(&check).arg(&file).output().unwrap();
            assert!(
                out.status.success(),
                "{}: undefined: {}{}",
                file.display(),
                common::stdout(&out),
                common::stderr(&out)
            );
        }
    }
}

/// Issue 28: Debian's promtool accepts what `pgha monitoring` writes (the
/// configuration, its targets and rules), and each alert's expression
/// finds what it is written for in series shaped like the components'
/// (`promtool test rules`), and nothing in a healthy cluster's.
#[test]
fn promtool_accepts_the_monitoring_files_and_the_rules_find_their_faults() {
    require("promtool");
    let dir = tempfile::tempdir().unwrap();
    for sub in ["examples", "inventories"] {
        let cp = Command::new("cp")
            .arg("-r")
            .arg(common::repo().join(sub))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(cp.success());
    }
    let design = dir.path().join("examples/three-sites.yaml");
    let d = pgha::design::load(&design).unwrap().design;
    pgha::pki::ensure(&d, time::OffsetDateTime::now_utc(), true).unwrap();
    let out_dir = dir.path().join("monitoring");
    let out = pgha([
        "-f".as_ref(),
        design.as_os_str(),
        "monitoring".as_ref(),
        "--out".as_ref(),
        out_dir.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let key = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(out_dir.join("tls/prometheus.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key & 0o777, 0o600);
    let promtool = |args: &[&str]| {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&out_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            common::stdout(&out),
            common::stderr(&out)
        );
        common::stdout(&out) + &common::stderr(&out)
    };
    let said = promtool(&["check", "config", "prometheus.yml"]);
    assert!(!said.contains("WARNING"), "{said}");
    // Issue 28's figure: the generated files' sizes.
    for f in [
        "prometheus.yml",
        "rules/pgha.rules.yml",
        "dashboards/pgha.json",
        "targets/pgha-node.json",
    ] {
        let size = std::fs::metadata(out_dir.join(f)).unwrap().len();
        eprintln!("figure: pgha monitoring for examples/three-sites.yaml: {f} {size} bytes");
    }
    // Every query of the dashboard is PromQL Prometheus parses (each as a
    // recording rule: promtool checks rules offline).
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("dashboards/pgha.json")).unwrap()).unwrap();
    let mut records = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            n += 1;
            records.push_str(&format!(
                "      - record: pgha:dashboard:{n}\n        expr: {}\n",
                serde_json::Value::from(t["expr"].as_str().unwrap())
            ));
        }
    }
    assert!(n > 15, "{dashboard}");
    std::fs::write(out_dir.join("dashboard.rules.yml"), records).unwrap();
    promtool(&["check", "rules", "dashboard.rules.yml"]);

    // Each rule's expression, by its alert's name.
    let rules = std::fs::read_to_string(out_dir.join("rules/pgha.rules.yml")).unwrap();
    let doc = &yaml_rust2::YamlLoader::load_from_str(&rules).unwrap()[0];
    let expr = |alert: &str| {
        doc["groups"][0]["rules"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|r| r["alert"].as_str() == Some(alert))
            .unwrap_or_else(|| panic!("no {alert} in {rules}"))["expr"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // A cluster of two clouds as Patroni reports it: dc1's master at 100 MB,
    // its replica dc1-pg2 50 MB behind (over the 16 MiB bound), dc1-pg3
    // 1 MB behind; dc2's standby leader 40 MB behind the master, its
    // replica 1 MB behind that; dc3's standby leader as far behind; dc1-pg4
    // a stopped replica (Patroni reports 0 replayed: not a lagging one).
    // Then dc2-pg1 is promoted (two masters) and dc3's leader key goes
    // (dc3 has no leader).
    let host = |h: &str| {
        format!(
            "cluster=\"pgha-demo\",cloud=\"{}\",host=\"{h}\",job=\"pgha-patroni\"",
            &h[..3]
        )
    };
    let series = |name: &str, h: &str, values: &str| {
        format!("      - series: '{name}{{{}}}'\n        values: '{values}'\n", host(h))
    };
    let mut input = String::new();
    for (h, primary, standby, replica, location, replayed, running, unlocked) in [
        ("dc1-pg1", "1x8", "0x8", "0x8", "100000000x8", "0x8", "1x8", "0x8"),
        ("dc1-pg2", "0x8", "0x8", "1x8", "0x8", "50000000x8", "1x8", "0x8"),
        ("dc1-pg3", "0x8", "0x8", "1x8", "0x8", "99000000x8", "1x8", "0x8"),
        ("dc1-pg4", "0x8", "0x8", "1x8", "0x8", "0x8", "0x8", "0x8"),
        (
            "dc2-pg1",
            "0x4 1x4",
            "1x4 0x4",
            "0x8",
            "0x8",
            "60000000x8",
            "1x8",
            "0x8",
        ),
        ("dc2-pg2", "0x8", "0x8", "1x8", "0x8", "59000000x8", "1x8", "0x8"),
        (
            "dc3-pg1",
            "0x8",
            "1x4 0x4",
            "0x8",
            "0x8",
            "60000000x8",
            "1x8",
            "0x4 1x4",
        ),
    ] {
        input.push_str(&series("patroni_primary", h, primary));
        input.push_str(&series("patroni_standby_leader", h, standby));
        input.push_str(&series("patroni_replica", h, replica));
        input.push_str(&series("patroni_postgres_running", h, running));
        input.push_str(&series("patroni_cluster_unlocked", h, unlocked));
        input.push_str(&series("patroni_xlog_location", h, location));
        input.push_str(&series("patroni_xlog_replayed_location", h, replayed));
    }
    // dc1-pg1 last archived 30 s before the start and fails from 75 s;
    // dc2-pg1 failed once at 75 s and archived a segment then: not failing.
    for (h, failed, age) in [
        ("dc1-pg1", "0x4 1 2 3 4", "30+15x8"),
        ("dc2-pg1", "0x4 1x4", "100+15x4 5+15x3"),
    ] {
        let labels = format!(
            "cluster=\"pgha-demo\",cloud=\"{}\",host=\"{h}\",job=\"pgha-postgres\"",
            &h[..3]
        );
        input.push_str(&format!(
            "      - series: 'pg_stat_archiver_failed_count{{{labels}}}'\n        values: '{failed}'\n"
        ));
        input.push_str(&format!(
            "      - series: 'pg_stat_archiver_last_archive_age{{{labels}}}'\n        values: '{age}'\n"
        ));
    }
    // The site lease as each host's gate reports it: every agent reads dc1
    // as the holder until 105 s, then none does (the lease is free);
    // dc1-pg1's renewal is 20 s old from 75 s (late), and it was fenced at
    // 105 s; dc2-pg2 reaches no site member and its agent stops looping
    // from 75 s.
    let site = |name: &str, h: &str, extra: &str, values: &str| {
        format!(
            "      - series: '{name}{{cluster=\"pgha-demo\",cloud=\"{}\",host=\"{h}\",job=\"pgha-site\"{extra}}}'\n        values: '{values}'\n",
            &h[..3]
        )
    };
    for h in ["dc1-pg1", "dc2-pg1", "dc2-pg2"] {
        input.push_str(&site("pgha_site_lease_holder", h, ",holder=\"dc1\"", "1x6 stale"));
    }
    input.push_str(&site("pgha_site_gate_bound_seconds", "dc2-pg2", "", "10x8"));
    input.push_str(&site("pgha_site_reachable", "dc1-pg2", "", "1x8"));
    input.push_str(&site("pgha_site_renewal_age_seconds", "dc1-pg1", "", "1x4 20x4"));
    input.push_str(&site("pgha_site_fences_total", "dc1-pg1", "", "0x6 1x2"));
    // dc1-pg3's agent recorded a late renewal 1000 s before the start, and
    // another at 65 s, between two scrapes of its renewal's age.
    input.push_str(&site(
        "pgha_site_last_late_renewal_age_seconds",
        "dc1-pg3",
        "",
        "1000+15x4 10+15x3",
    ));
    input.push_str(&site("pgha_site_reachable", "dc2-pg2", "", "1x4 0x4"));
    input.push_str(&site("pgha_site_agent_loop_age_seconds", "dc2-pg2", "", "1x4 30x4"));
    // A comparison that filters keeps the series' name (a function drops it).
    let at_site = |name: &str, h: &str| {
        let site = host(h).replace("pgha-patroni", "pgha-site");
        let named = if name.is_empty() {
            String::new()
        } else {
            format!("__name__=\"{name}\",")
        };
        format!("'{{{named}{site}}}'")
    };
    // The node exporter: dc1-pg1's data filesystem at half, then 5% free
    // from 75 s; dc2-pg1's root, a third free, losing 10 MB a scrape (full
    // within 4 h);
    // dc1-pg1's host certificate expiring 10 days after the epoch, dc2's in
    // over a year.
    let node_labels = |h: &str, extra: &str| format!("{},{extra}", host(h).replace("pgha-patroni", "pgha-node"));
    let data = "device=\"/dev/sdb1\",fstype=\"ext4\",mountpoint=\"/var/lib/postgresql\"";
    let root = "device=\"overlay\",fstype=\"overlay\",mountpoint=\"/\"";
    for (name, h, fs, values) in [
        (
            "node_filesystem_avail_bytes",
            "dc1-pg1",
            data,
            "50000000000x4 5000000000x4",
        ),
        ("node_filesystem_size_bytes", "dc1-pg1", data, "100000000000x8"),
        ("node_filesystem_readonly", "dc1-pg1", data, "0x8"),
        ("node_filesystem_avail_bytes", "dc2-pg1", root, "700000000-10000000x8"),
        ("node_filesystem_size_bytes", "dc2-pg1", root, "2000000000x8"),
        ("node_filesystem_readonly", "dc2-pg1", root, "0x8"),
    ] {
        input.push_str(&format!(
            "      - series: '{name}{{{}}}'\n        values: '{values}'\n",
            node_labels(h, fs)
        ));
    }
    let cert = "certificate=\"host\",path=\"/etc/pgha/tls/host.crt\"";
    for (h, values) in [("dc1-pg1", "864000x8"), ("dc2-pg1", "40000000x8")] {
        input.push_str(&format!(
            "      - series: 'pgha_certificate_expiry_timestamp_seconds{{{}}}'\n        values: '{values}'\n",
            node_labels(h, cert)
        ));
    }
    // The backup metrics as the database hosts' textfiles say: 60 s
    // allowed; repository dc1's newest backup completed at 20 s (dc2-pg1
    // reads it), dc2's at 50 s; dc2 held none before 60 s, and from 75 s no
    // host reads it; dc2-pg2's info fails from 75 s. dc1-pg1's timer last
    // ran long ago: what its stale file says (a newer backup, dc2 read and
    // holding five) counts for nothing.
    let backup = |name: &str, h: &str, repo: &str, values: &str| {
        let repo = if repo.is_empty() {
            String::new()
        } else {
            format!(",repository=\"{repo}\"")
        };
        let labels = host(h).replace("pgha-patroni", "pgha-node");
        format!("      - series: '{name}{{{labels}{repo}}}'\n        values: '{values}'\n")
    };
    for (name, h, repo, values) in [
        ("pgha_backup_allowed_age_seconds", "dc1-pg2", "", "60x8"),
        ("pgha_backup_allowed_age_seconds", "dc2-pg1", "", "60x8"),
        (
            "pgha_backup_last_completion_timestamp_seconds",
            "dc1-pg2",
            "dc1\",type=\"full",
            "0x8",
        ),
        (
            "pgha_backup_last_completion_timestamp_seconds",
            "dc2-pg1",
            "dc1\",type=\"diff",
            "20x8",
        ),
        (
            "pgha_backup_last_completion_timestamp_seconds",
            "dc1-pg2",
            "dc2\",type=\"full",
            "50x8",
        ),
        (
            "pgha_backup_last_completion_timestamp_seconds",
            "dc1-pg1",
            "dc1\",type=\"full",
            "85x8",
        ),
        ("pgha_backup_count", "dc1-pg2", "dc1", "2x8"),
        ("pgha_backup_count", "dc1-pg2", "dc2", "0x3 1x5"),
        ("pgha_backup_count", "dc1-pg1", "dc2", "5x8"),
        ("pgha_backup_repository_ok", "dc1-pg2", "dc2", "0x8"),
        ("pgha_backup_repository_ok", "dc2-pg1", "dc2", "1x4 0x4"),
        ("pgha_backup_repository_ok", "dc1-pg1", "dc2", "1x8"),
        ("pgha_backup_info_ok", "dc2-pg2", "", "1x4 0x4"),
        ("pgha_backup_schedule_ok", "dc2-pg2", "", "1x8"),
        ("pgha_backup_info_timestamp_seconds", "dc1-pg1", "", "-2000x8"),
        ("pgha_backup_info_timestamp_seconds", "dc1-pg2", "", "0+15x8"),
        ("pgha_backup_info_timestamp_seconds", "dc2-pg1", "", "0+15x8"),
        ("pgha_backup_info_timestamp_seconds", "dc2-pg2", "", "0+15x8"),
    ] {
        input.push_str(&backup(name, h, repo, values));
    }
    let repository = |r: &str| format!("'{{cluster=\"pgha-demo\",repository=\"{r}\"}}'");
    let at_node = |name: &str, h: &str| {
        format!(
            "'{{__name__=\"{name}\",{}}}'",
            host(h).replace("pgha-patroni", "pgha-node")
        )
    };
    let labels = |h: &str| format!("'{{{}}}'", host(h));
    let test = |alert: &str, at: &str, samples: &[(String, &str)]| {
        let mut t = format!(
            "      - expr: '{}'\n        eval_time: {at}\n        exp_samples:\n",
            expr(alert).replace('\'', "''")
        );
        for (labels, value) in samples {
            t.push_str(&format!("          - labels: {labels}\n            value: {value}\n"));
        }
        if samples.is_empty() {
            t = t.replace("        exp_samples:\n", "        exp_samples: []\n");
        }
        t
    };
    let archiver = "'{cluster=\"pgha-demo\",cloud=\"dc1\",host=\"dc1-pg1\",job=\"pgha-postgres\"}'".to_string();
    let cases = [
        test("PghaTwoWritableHosts", "30s", &[]),
        test(
            "PghaTwoWritableHosts",
            "90s",
            &[("'{cluster=\"pgha-demo\"}'".to_string(), "2")],
        ),
        test("PghaCloudWithoutLeader", "30s", &[]),
        test(
            "PghaCloudWithoutLeader",
            "90s",
            &[("'{cluster=\"pgha-demo\",cloud=\"dc3\"}'".to_string(), "1")],
        ),
        test("PghaReplicaLagging", "30s", &[(labels("dc1-pg2"), "50000000")]),
        test(
            "PghaStandbyCloudLagging",
            "30s",
            &[(labels("dc2-pg1"), "40000000"), (labels("dc3-pg1"), "40000000")],
        ),
        test("PghaStandbyCloudLagging", "90s", &[]),
        test("PghaWritableOutsideLeaseCloud", "30s", &[]),
        test(
            "PghaWritableOutsideLeaseCloud",
            "90s",
            &[(format!("'{{__name__=\"patroni_primary\",{}}}'", host("dc2-pg1")), "1")],
        ),
        test("PghaSiteLeaseLate", "30s", &[]),
        test(
            "PghaSiteLeaseLate",
            "90s",
            &[
                (at_site("pgha_site_renewal_age_seconds", "dc1-pg1"), "20"),
                (at_site("pgha_site_last_late_renewal_age_seconds", "dc1-pg3"), "25"),
            ],
        ),
        test("PghaSiteFenced", "90s", &[]),
        test("PghaSiteFenced", "120s", &[(at_site("", "dc1-pg1"), "1")]),
        test("PghaSiteLeaseNotHeld", "90s", &[]),
        test(
            "PghaSiteLeaseNotHeld",
            "120s",
            &[("'{cluster=\"pgha-demo\"}'".to_string(), "1")],
        ),
        test("PghaSiteUnreachable", "30s", &[]),
        test(
            "PghaSiteUnreachable",
            "90s",
            &[(at_site("pgha_site_reachable", "dc2-pg2"), "0")],
        ),
        test(
            "PghaSiteAgentStuck",
            "90s",
            &[(at_site("pgha_site_agent_loop_age_seconds", "dc2-pg2"), "30")],
        ),
        test("PghaFilesystemFilling", "30s", &[]),
        test(
            "PghaFilesystemFilling",
            "90s",
            &[(format!("'{{{}}}'", node_labels("dc1-pg1", data)), "0.05")],
        ),
        test(
            "PghaFilesystemFullIn4h",
            "30s",
            &[(format!("'{{{}}}'", node_labels("dc2-pg1", root)), "-8920000000")],
        ),
        test(
            "PghaCertificateExpiring",
            "90s",
            &[(format!("'{{{}}}'", node_labels("dc1-pg1", cert)), "863910")],
        ),
        test("PghaArchiveFailing", "45s", &[]),
        test("PghaArchiveFailing", "120s", &[(archiver, "4")]),
        test("PghaBackupTooOld", "30s", &[]),
        test("PghaBackupTooOld", "90s", &[(repository("dc1"), "70")]),
        test("PghaBackupMissing", "30s", &[(repository("dc2"), "0")]),
        test("PghaBackupMissing", "90s", &[]),
        test("PghaBackupRepositoryUnreadable", "30s", &[]),
        test("PghaBackupRepositoryUnreadable", "90s", &[(repository("dc2"), "0")]),
        test("PghaBackupInfoFailing", "30s", &[]),
        test(
            "PghaBackupInfoFailing",
            "90s",
            &[(at_node("pgha_backup_info_ok", "dc2-pg2"), "0")],
        ),
        test(
            "PghaBackupMetricsStale",
            "90s",
            &[(
                format!("'{{{}}}'", host("dc1-pg1").replace("pgha-patroni", "pgha-node")),
                "2090",
            )],
        ),
    ];
    let spec = format!(
        "rule_files: [rules/pgha.rules.yml]\nevaluation_interval: 15s\ntests:\n  - interval: 15s\n    input_series:\n{input}    promql_expr_test:\n{}",
        cases.concat()
    );
    std::fs::write(out_dir.join("test.yml"), spec).unwrap();
    promtool(&["test", "rules", "test.yml"]);
}
