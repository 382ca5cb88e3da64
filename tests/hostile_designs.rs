//! issue 8: designs written to attack the hosts or the machine running pgha.
//! Each is refused with exit 2, naming the file, the line and the field, and
//! no accepted design renders a config line its template did not write.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{pgha, stderr};
use proptest::prelude::*;

/// A complete, valid design with inline hosts, to edit one value at a time.
const BASE: &str = "platform:
  name: pgha-demo
  data_dir: /var/lib/postgresql/15/pgha
  client_networks: [10.0.0.0/8]
  parameters:
    work_mem: 8MB
ssh:
  user: root
clouds:
  - name: dc1
    status: primary
    hosts:
      - {name: a1, address: 10.77.0.11}
      - {name: a2, address: 10.77.0.12}
      - {name: a3, address: 10.77.0.13}
  - name: dc2
    status: secondary
    hosts:
      - {name: b1, address: 10.77.0.21}
      - {name: b2, address: 10.77.0.22}
      - {name: b3, address: 10.77.0.23}
components:
  governor: {ttl: 30, loop_wait: 10, retry_timeout: 10}
glb:
  fqdn: db.example.com
  hosts:
    - {name: glb1, address: 10.77.0.5}
";

fn write(dir: &Path, src: &str) -> PathBuf {
    let path = dir.join("hostile.yaml");
    std::fs::write(&path, src).unwrap();
    path
}

fn replaced(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

/// `pgha validate` exits 2 and names `file:line` and the field.
fn refused(src: &str, field: &str, line: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), src);
    let out = pgha(["validate".as_ref(), "-f".as_ref(), path.as_os_str()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "accepted:\n{src}\n{err}");
    assert!(
        err.contains(&format!("{}:{line}:", path.display())),
        "no {line} in:\n{err}"
    );
    assert!(
        err.contains(&format!("(field `{field}`)")),
        "no field {field} in:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn base_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let out = pgha(["validate".as_ref(), "-f".as_ref(), write(dir.path(), BASE).as_os_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn shell_injection_through_values() {
    refused(
        &replaced("10.77.0.11}", "\"10.77.0.11';touch${IFS}x;echo${IFS}'\"}"),
        "clouds[0].hosts[0].address",
        13,
    );
    refused(
        &replaced("/var/lib/postgresql/15/pgha", "\"/var/lib/pg;touch${IFS}x;\""),
        "platform.data_dir",
        3,
    );
    refused(&replaced("name: dc1", "name: \"dc1;id\""), "clouds[0].name", 10);
    refused(&replaced("user: root", "user: \"root$(id)\""), "ssh.user", 8);
    refused(
        &replaced("{name: a1,", "{name: \"a1 -x\","),
        "clouds[0].hosts[0].name",
        13,
    );
    refused(&replaced("name: pgha-demo", "name: \"x`id`\""), "platform.name", 2);
}

#[test]
fn config_injection_through_values() {
    // A newline in glb.fqdn added a `listen` section that haproxy -c accepted.
    refused(
        &replaced(
            "fqdn: db.example.com",
            "fqdn: \"db.example.com\\nlisten evil\\n    bind *:1\"",
        ),
        "glb.fqdn",
        25,
    );
    // A parameter key that added YAML keys to Patroni's config.
    refused(
        &replaced("    work_mem: 8MB", "    \"work_mem: 1\\nrestapi: {}\\nx\": 1"),
        "platform.parameters.work_mem: 1\nrestapi: {}\nx",
        6,
    );
    refused(
        &replaced("    work_mem: 8MB", "    \"max-connections\": 1"),
        "platform.parameters.max-connections",
        6,
    );
    // `address: all` rendered `host all all all`.
    refused(&replaced("10.77.0.21}", "all}"), "clouds[1].hosts[0].address", 19);
    refused(&replaced("[10.0.0.0/8]", "[all]"), "platform.client_networks[0]", 4);
    refused(&replaced("10.77.0.5}", "\"[fd00::5]\"}"), "glb.hosts[0].address", 27);
    refused(
        &replaced("    work_mem: 8MB", "    work_mem: \"8MB\\n\""),
        "platform.parameters.work_mem",
        6,
    );
    refused(&replaced("name: dc2", "name: \"dc2\\t\""), "clouds[1].name", 16);
}

#[test]
fn numbers_out_of_range() {
    // A debug build panicked on the overflowing sum.
    refused(
        &replaced("retry_timeout: 10}", "retry_timeout: 2147483648}"),
        "components.governor.retry_timeout",
        23,
    );
    refused(&replaced("ttl: 30,", "ttl: 4294967295,"), "components.governor.ttl", 23);
    refused(
        &replaced("ssh:\n  user: root", "ssh:\n  user: root\n  port: 0"),
        "ssh.port",
        9,
    );
    refused(
        &format!("{BASE}  port: 0\n").replace("glb:\n", "glb:\n  stats_port: 0\n"),
        "glb.stats_port",
        25,
    );
}

#[test]
fn every_type_error_is_reported_not_only_the_first() {
    let src = replaced("ttl: 30,", "ttl: lots,")
        .replace("postgres_version", "x")
        .replacen(
            "  data_dir: /var/lib/postgresql/15/pgha",
            "  postgres_port: many\n  data_dir: /var/lib/postgresql/15/pgha",
            1,
        );
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &src);
    let out = pgha(["validate".as_ref(), "-f".as_ref(), path.as_os_str()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("(field `platform.postgres_port`)"), "{err}");
    assert!(err.contains("(field `components.governor.ttl`)"), "{err}");
}

#[test]
fn loader_never_hangs_or_eats_memory() {
    let started = Instant::now();
    let out = pgha(["validate", "-f", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a regular file"), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yaml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = pgha(["validate".as_ref(), "-f".as_ref(), fifo.as_os_str()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // An inventory that is a FIFO.
    let src = BASE.replace(
        "    hosts:\n      - {name: b1, address: 10.77.0.21}\n      - {name: b2, address: 10.77.0.22}\n      - {name: b3, address: 10.77.0.23}\n",
        "    inventory: fifo.yaml\n",
    );
    refused_in(dir.path(), &src, "clouds[1].inventory");

    // Anchors nested around a large subtree (9 GB and 37 s before the fix).
    let mut bomb = String::from("a0: &a0 [");
    bomb.push_str(&"x, ".repeat(5000));
    bomb.push_str("x]\n");
    for i in 1..9 {
        let p = i - 1;
        bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![format!("*a{p}"); 10].join(", ")));
    }
    let out = pgha(["validate".as_ref(), "-f".as_ref(), write(dir.path(), &bomb).as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("too many nodes"), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

fn refused_in(dir: &Path, src: &str, field: &str) {
    let path = write(dir, src);
    let out = pgha(["validate".as_ref(), "-f".as_ref(), path.as_os_str()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("(field `{field}`)")), "{}", stderr(&out));
}

#[test]
fn nul_bytes_and_byte_order_marks_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nul.yaml");
    std::fs::write(&path, BASE.replace("ssh:", "\0ssh:")).unwrap();
    let out = pgha(["validate".as_ref(), "-f".as_ref(), path.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{}:7:1", path.display())),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("NUL"), "{}", stderr(&out));
    std::fs::write(&path, format!("\u{feff}{BASE}")).unwrap();
    let out = pgha(["validate".as_ref(), "-f".as_ref(), path.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("byte order mark"), "{}", stderr(&out));
}

/// Values a fuzzer puts in each field: any printable text and controls.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,24}",
        "[a-z0-9.:/;'\"$`\\\\{}\\[\\]#&*!|>%@ -]{0,24}",
        "[a-z]{1,8}[\\n\\r\\t][a-z# :]{0,12}",
    ]
}

const FIELDS: [&str; 8] = [
    "pgha-demo",
    "/var/lib/postgresql/15/pgha",
    "8MB",
    "dc1",
    "a2",
    "10.77.0.22",
    "db.example.com",
    "10.0.0.0/8",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any value that validation accepts renders the same lines the base
    /// design renders, one for one: no value ever adds a line to a config.
    #[test]
    fn accepted_values_never_add_config_lines(which in 0..FIELDS.len(), v in value()) {
        let quoted = serde_json::to_string(&v).unwrap();
        let src = BASE.replacen(FIELDS[which], &quoted, 1);
        let path = Path::new("fuzz.yaml");
        let Ok(loaded) = pgha::design::load_str(&src, path) else { return Ok(()) };
        let base = pgha::design::load_str(BASE, path).unwrap().design;
        let secrets = pgha::secrets::Secrets::redacted();
        let r = pgha::render::Renderer::for_design(&base).unwrap();
        let want = r.all(&base, &secrets).unwrap();
        let got = r.all(&loaded.design, &secrets).unwrap();
        for (w, g) in want.iter().zip(&got) {
            for (wf, gf) in w.files.iter().zip(&g.files) {
                prop_assert_eq!(
                    wf.content.lines().count(),
                    gf.content.lines().count(),
                    "{} with {:?} = {:?}:\n{}", gf.spec.path, FIELDS[which], v, gf.content
                );
            }
        }
    }
}
