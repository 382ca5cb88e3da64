//! Partitions between data centers on a lab with a witness (issue 11), for
//! `tests/partition.rs` and `benches/partition.rs`: a monitor that asks every
//! database host, from inside its own container (so also inside a
//! partitioned cloud), whether it takes writes, and one run of "the primary
//! cloud is cut off" with its figures.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::{sql, stderr, stdout, wait_for, wait_for_or, writer, TestLab, Written};

pub(crate) const DC1: [&str; 3] = ["dc1-pg1", "dc1-pg2", "dc1-pg3"];
pub(crate) const DC2: [&str; 3] = ["dc2-pg1", "dc2-pg2", "dc2-pg3"];
/// The lab design's `site.ttl`.
pub(crate) const TTL: u64 = 20;

/// psql's exit code and output, as an answer.
fn classify(code: i32, out: &str, err: &str, secs: u64) -> Asked {
    if code == 0 {
        return Asked::Answer(out.trim().to_string());
    }
    // `timeout` says 124: no answer is not "no".
    if code == 124 {
        Asked::Unknown(format!("no answer within {secs} s"))
    } else if NOT_RUNNING.iter().any(|m| err.contains(m)) {
        Asked::Down
    } else {
        Asked::Unknown(err.trim().to_string())
    }
}

/// One long-lived `docker exec` per container that runs each question's
/// psql inside it. A `docker exec` per question cost about 90 ms of CPU
/// (dockerd, containerd, runc): the monitor asking six hosts several times a
/// second took most of this 2-core machine from the cluster it watched. The
/// question and the answer are the same (psql over the local socket, as
/// postgres, under `timeout`). A session that hangs past the question's
/// deadline is dropped and the question unanswered (as `timeout` says); one
/// that ended (a host powered off) answers with what docker said; one busy
/// with another thread's question, or that cannot start, leaves the
/// question to a `docker exec` of its own.
mod inside {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Child, ChildStdin, Command, Stdio};
    use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
    use std::sync::{Arc, Mutex, OnceLock, TryLockError};
    use std::time::{Duration, Instant};

    /// Reads `ID SECS QUERY` lines; answers with psql's output, a line
    /// `ERR`, its errors, a line `END ID CODE`, each marker after a 0x1f
    /// (bash builtins but for psql, so a question costs two processes).
    const LOOP: &str = r#"e=$(mktemp)
trap 'rm -f "$e"' EXIT
while IFS= read -r line; do
  id=${line%% *}; rest=${line#* }; secs=${rest%% *}; q=${rest#* }
  out=$(timeout "$secs" psql -XAtc "$q" </dev/null 2>"$e"); code=$?
  printf '%s\n\037ERR\n%s\n\037END %s %s\n' "$out" "$(<"$e")" "$id" "$code"
done"#;

    struct Session {
        child: Child,
        stdin: ChildStdin,
        answers: Receiver<String>,
        /// What docker says on its stderr (why the session ended), read to
        /// its end by a thread of its own.
        said: Option<std::thread::JoinHandle<String>>,
        next: u64,
    }

    type Slot = Arc<Mutex<Option<Session>>>;

    fn slot(container: &str) -> Slot {
        static ALL: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();
        let mut all = ALL.get_or_init(Default::default).lock().unwrap();
        all.entry(container.to_string()).or_default().clone()
    }

    fn start(container: &str) -> Option<Session> {
        let mut child = Command::new("docker")
            .args(["exec", "-i", "-u", "postgres", container, "bash", "-c", LOOP])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take()?;
        let stdout = child.stdout.take()?;
        let mut stderr = child.stderr.take()?;
        let (tx, answers) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf).trim_end_matches('\n').to_string();
                buf.clear();
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let said = Some(std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        }));
        Some(Session {
            child,
            stdin,
            answers,
            said,
            next: 0,
        })
    }

    /// psql's exit code, stdout and stderr (124: no answer within `secs`),
    /// or None: the caller asks by a `docker exec` of its own.
    pub(super) fn ask(container: &str, query: &str, secs: u64) -> Option<(i32, String, String)> {
        if query.contains('\n') {
            return None;
        }
        let slot = slot(container);
        let mut held = match slot.try_lock() {
            Ok(held) => held,
            Err(TryLockError::WouldBlock) => return None,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        if held.is_none() {
            *held = start(container);
        }
        let s = held.as_mut()?;
        s.next += 1;
        let id = s.next;
        let sent = s
            .stdin
            .write_all(format!("{id} {secs} {query}\n").as_bytes())
            .and_then(|_| s.stdin.flush());
        let deadline = Instant::now() + Duration::from_secs(secs + 5);
        let (mut out, mut err, mut in_err) = (String::new(), String::new(), false);
        let answer = match sent {
            Err(_) => Err(RecvTimeoutError::Disconnected),
            Ok(()) => loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = match s.answers.recv_timeout(left) {
                    Ok(line) => line,
                    Err(e) => break Err(e),
                };
                if line == "\x1fERR" {
                    in_err = true;
                } else if let Some(end) = line.strip_prefix("\x1fEND ") {
                    let (who, code) = end.split_once(' ').unwrap_or((end, ""));
                    if who == id.to_string() {
                        break Ok((code.parse().unwrap_or(-1), out, err));
                    }
                    (out, err, in_err) = (String::new(), String::new(), false);
                } else {
                    let text = if in_err { &mut err } else { &mut out };
                    text.push_str(&line);
                    text.push('\n');
                }
            },
        };
        match answer {
            Ok(a) => Some(a),
            Err(why) => {
                let _ = s.child.kill();
                let status = s.child.wait();
                let said = s.said.take().and_then(|t| t.join().ok()).unwrap_or_default();
                *held = None;
                match why {
                    RecvTimeoutError::Timeout => Some((124, String::new(), String::new())),
                    // The session ended: what docker said, if anything
                    // (a container not running); else ask once more apart.
                    RecvTimeoutError::Disconnected if !said.trim().is_empty() => {
                        Some((status.ok().and_then(|s| s.code()).unwrap_or(1), String::new(), said))
                    }
                    RecvTimeoutError::Disconnected => None,
                }
            }
        }
    }
}

/// A lab of three sites: its name (container prefix) and its /24's prefix.
#[derive(Clone, Copy)]
pub(crate) struct Sites {
    pub name: &'static str,
    pub prefix: &'static str,
}

impl Sites {
    /// Runs SQL through the GLB until it works (a restore, upgrade or flip
    /// just ended).
    pub(crate) fn via_glb(&self, pw: &str, query: &str) -> Vec<Vec<Option<String>>> {
        let mut rows = None;
        wait_for(&format!("`{query}` through the GLB"), Duration::from_secs(60), || {
            rows = sql(&self.glb(), 5000, pw, query).ok();
            rows.is_some()
        });
        rows.unwrap()
    }

    /// Every database host holds exactly `want` (`count(*) sum(id)` of `table`).
    pub(crate) fn everywhere(&self, pw: &str, table: &str, want: &str) {
        for h in DC1.iter().chain(&DC2) {
            let mut seen = String::new();
            wait_for(
                &format!("{table} on {h} to be {want}"),
                Duration::from_secs(120),
                || {
                    seen = sql(
                        &self.address(h),
                        5432,
                        pw,
                        &format!("SELECT count(*) || ' ' || sum(id) FROM {table}"),
                    )
                    .map(|r| r[0][0].clone().unwrap_or_default())
                    .unwrap_or_else(|e| e);
                    seen == want
                },
            );
        }
    }

    pub(crate) fn glb(&self) -> String {
        format!("{}.5", self.prefix)
    }

    pub(crate) fn address(&self, host: &str) -> String {
        let (cloud, n) = host.split_once("-pg").unwrap();
        format!("{}.{}{n}", self.prefix, &cloud[2..])
    }

    /// Runs `query` on `host` itself, over its local socket from inside its
    /// container (a partition does not hide it), within `secs` seconds.
    pub(crate) fn ask_inside(&self, host: &str, query: &str, secs: u64) -> Asked {
        let container = format!("{}-{host}", self.name);
        if let Some((code, out, err)) = inside::ask(&container, query, secs) {
            return classify(code, &out, &err, secs);
        }
        let out = Command::new("timeout")
            .args([
                &secs.to_string(),
                "docker",
                "exec",
                "-u",
                "postgres",
                &format!("{}-{host}", self.name),
            ])
            .args(["psql", "-XAtc", query])
            .output();
        let out = match out {
            Ok(out) => out,
            Err(e) => return Asked::Unknown(format!("cannot run docker: {e}")),
        };
        classify(out.status.code().unwrap_or(-1), &stdout(&out), &stderr(&out), secs)
    }

    /// The output of `query` on `host` itself, when it answered.
    pub(crate) fn psql_inside(&self, host: &str, query: &str) -> Option<String> {
        match self.ask_inside(host, query, 3) {
            Asked::Answer(a) => Some(a),
            _ => None,
        }
    }

    /// Whether PostgreSQL on `host` itself takes writes: `Some(false)` also
    /// when it (or its container) is not running; `None` when the host could
    /// not be asked: it may be writable.
    pub(crate) fn read_write(&self, host: &str) -> Option<bool> {
        self.read_write_or_why(host).ok()
    }

    /// As `read_write`, with why a host could not be asked. Three tries,
    /// each given longer: a container that is booting, or a machine busy
    /// with a whole lab, may take seconds to run `docker exec` (seen once in
    /// CI), and a slow answer is not "writable".
    pub(crate) fn read_write_or_why(&self, host: &str) -> Result<bool, String> {
        let mut why = String::new();
        for secs in [3, 6, 12] {
            match self.ask_inside(host, "SELECT NOT pg_is_in_recovery()", secs) {
                Asked::Answer(a) if a == "t" => return Ok(true),
                Asked::Answer(a) if a == "f" => return Ok(false),
                Asked::Answer(a) => why = format!("answered {a:?}"),
                Asked::Down => return Ok(false),
                Asked::Unknown(e) => why = e,
            }
        }
        // No answer through the container: the postmaster's own word, read
        // from outside it.
        let says = self.postmaster_says(host);
        eprintln!("monitor: {host} did not answer ({why}); its postmaster, read from outside: {says:?}");
        says.map_err(|e| format!("{why}; {e}"))
    }

    /// Whether `host`'s postmaster runs as a primary, read without entering
    /// its container: `docker top` gives its PID here, its working
    /// directory is the data directory, `postmaster.pid`'s status line
    /// says "ready" once it takes connections (a hot standby too), and a
    /// standby's signal file stays until its promotion ends. For a host
    /// `docker exec` could not ask: seed runs in CI saw one unanswered for
    /// 21 s three times, cause not found.
    fn postmaster_says(&self, host: &str) -> Result<bool, String> {
        let top = self.top(host, "pid,args")?;
        let Some(line) = top
            .lines()
            .skip(1)
            .find(|l| l.contains("bin/postgres") && l.contains(" -D "))
        else {
            return Ok(false); // no postmaster: no writes
        };
        if line.contains("--single") {
            return Ok(false); // pg_rewind's crash recovery takes no clients
        }
        let pid = line.split_whitespace().next().unwrap_or_default();
        let dir = format!("/proc/{pid}/cwd");
        let file = std::fs::read_to_string(format!("{dir}/postmaster.pid"))
            .map_err(|e| format!("{dir}/postmaster.pid: {e}"))?;
        match file.lines().nth(7).map(str::trim) {
            Some("ready") => Ok(["standby.signal", "recovery.signal"]
                .iter()
                .all(|f| !std::path::Path::new(&format!("{dir}/{f}")).exists())),
            Some("standby" | "starting" | "stopping") => Ok(false),
            other => Err(format!("postmaster.pid's status: {other:?}")),
        }
    }

    /// The hosts that take writes at one moment, and those that could not
    /// be asked (asked in parallel).
    pub(crate) fn sample(&self) -> Sample {
        let asks: Vec<_> = DC1
            .iter()
            .chain(&DC2)
            .map(|h| {
                let s = *self;
                std::thread::spawn(move || (h.to_string(), s.read_write_or_why(h)))
            })
            .collect();
        let mut sample = Sample::default();
        for (h, rw) in asks.into_iter().map(|a| a.join().unwrap()) {
            match rw {
                Ok(true) => sample.writable.push(h),
                Ok(false) => {}
                Err(why) => {
                    let state = self.container_state(&h);
                    sample.unknown.push(format!("{h} ({why}; {state})"))
                }
            }
        }
        sample
    }

    /// What Docker says of `host`'s container, for a host that could not be
    /// asked: whether it was being started or stopped then, and its
    /// PostgreSQL and Patroni processes (`docker top` does not exec in the
    /// container: a seed run saw `docker exec … psql` unanswered for 21 s on
    /// a container running since the lab began, cause not found).
    fn container_state(&self, host: &str) -> String {
        let container = format!("{}-{host}", self.name);
        let out = Command::new("timeout")
            .args(["5", "docker", "inspect", "-f"])
            .arg("container {{.State.Status}}, started {{.State.StartedAt}}")
            .arg(&container)
            .output();
        let state = match out {
            Ok(out) if out.status.success() => stdout(&out).trim().to_string(),
            Ok(out) => format!("docker inspect: {}", stderr(&out).trim()),
            Err(e) => format!("docker inspect: {e}"),
        };
        let top = self
            .top(host, "pid,stat,wchan:24,etime,args")
            .map(|top| {
                top.lines()
                    .filter(|l| l.contains("postgres") || l.contains("patroni") || l.contains("pg_"))
                    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                    .take(12)
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .unwrap_or_else(|e| e);
        format!("{state}; processes: {top}")
    }

    /// `host`'s processes with `columns`, as `docker top` lists them from
    /// outside the container (PIDs of this machine), header first.
    fn top(&self, host: &str, columns: &str) -> Result<String, String> {
        let container = format!("{}-{host}", self.name);
        let out = Command::new("timeout")
            .args(["5", "docker", "top", &container, "-o", columns])
            .output()
            .map_err(|e| format!("docker top: {e}"))?;
        if !out.status.success() {
            return Err(format!("docker top: {}", stderr(&out).trim()));
        }
        Ok(stdout(&out))
    }

    /// The hosts that take writes at one moment; panics when a host could
    /// not be asked (it may be a second master).
    pub(crate) fn writable_now(&self) -> Vec<String> {
        let s = self.sample();
        assert!(
            s.unknown.is_empty(),
            "could not ask {:?} whether it takes writes",
            s.unknown
        );
        s.writable
    }

    /// `ticks` on every host equal to the master's; returns `count:md5`.
    pub(crate) fn same_rows_everywhere(&self, pw: &str) -> String {
        let all: Vec<&str> = DC1.iter().chain(&DC2).copied().collect();
        self.same_rows_on(pw, &all)
    }

    /// `ticks` on each of `hosts` equal to the master's within 60 s each;
    /// returns `count:md5`. A host that stays behind fails with what it says
    /// of its replication and its Patroni's last lines.
    pub(crate) fn same_rows_on(&self, pw: &str, hosts: &[&str]) -> String {
        let master = self.rows(&self.glb(), 5000, pw).unwrap();
        for host in hosts {
            wait_for_or(
                &format!("{host}'s rows to equal the master's ({master})"),
                Duration::from_secs(60),
                || self.has_rows(pw, host, &master),
                || {
                    format!(
                        "it has {:?}\n{}",
                        self.rows(&self.address(host), 5432, pw),
                        self.why_behind(host)
                    )
                },
            );
        }
        master
    }

    /// The output of `script` run by root's shell in `host`'s container
    /// within 10 s (what Docker said when it could not run it).
    fn sh_inside(&self, host: &str, script: &str) -> String {
        Command::new("timeout")
            .args([
                "10",
                "docker",
                "exec",
                &format!("{}-{host}", self.name),
                "sh",
                "-c",
                script,
            ])
            .output()
            .map(|o| stdout(&o))
            .unwrap_or_else(|e| format!("docker: {e}"))
    }

    /// What `host` logged from `from` to `to` (wall clock), its last lines:
    /// why a host could not be asked then.
    fn journal_between(&self, host: &str, from: SystemTime, to: SystemTime) -> String {
        self.sh_inside(
            host,
            &format!(
                "journalctl --no-pager -o short-precise --since @{} --until @{} | tail -80",
                epoch_secs(from).saturating_sub(2),
                epoch_secs(to) + 1
            ),
        )
    }

    /// What `host` says of its replication, and its Patroni's last lines.
    fn why_behind(&self, host: &str) -> String {
        let receiver = self.psql_inside(
            host,
            "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), (SELECT status || ' tl ' || received_tli || ' ' \
             || coalesce(conninfo, '') FROM pg_stat_wal_receiver)",
        );
        let journal = self.sh_inside(
            host,
            "journalctl -u patroni -n 400 --no-pager -o short-precise | grep -v 'no action' | tail -40",
        );
        format!("{host}: in recovery, replayed, receiver: {receiver:?}\n{host}'s Patroni:\n{journal}")
    }

    /// `count:md5` of `ticks` at `address`:`port`.
    fn rows(&self, address: &str, port: u16, pw: &str) -> Option<String> {
        let query = "SELECT count(*) || ':' || coalesce(md5(string_agg(id::text, ',' ORDER BY id)), '') FROM ticks";
        sql(address, port, pw, query).ok().and_then(|r| r[0][0].clone())
    }

    /// `host` holds exactly the rows `master` (`count:md5`) names.
    pub(crate) fn has_rows(&self, pw: &str, host: &str, master: &str) -> bool {
        self.rows(&self.address(host), 5432, pw).as_deref() == Some(master)
    }

    /// Which of `acked` are missing on the cluster now.
    pub(crate) fn missing(&self, pw: &str, acked: &[i32]) -> Vec<i32> {
        let ids = acked.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        let have: std::collections::HashSet<i32> = sql(
            &self.glb(),
            5000,
            pw,
            &format!("SELECT id FROM ticks WHERE id IN ({ids})"),
        )
        .unwrap()
        .iter()
        .map(|r| r[0].as_deref().unwrap().parse().unwrap())
        .collect();
        acked.iter().copied().filter(|id| !have.contains(id)).collect()
    }

    /// How many of `acked` are missing on the cluster now.
    pub(crate) fn lost(&self, pw: &str, acked: &[i32]) -> usize {
        self.missing(pw, acked).len()
    }

    /// Asynchronous replication's documented RPO (README, "RPO"): only the
    /// writes acknowledged after the last position the new primary had
    /// received may be missing. The GLB writer waits for each
    /// acknowledgement before its next write, so commits are in the order of
    /// the acknowledgements and what the new primary had received is a
    /// prefix of them: the missing writes must be the newest ones
    /// acknowledged before the link was cut (`cut_done`), all of them, and
    /// none acknowledged after. Returns them, named, with how long before
    /// `cut` (when the cut began) each was acknowledged.
    pub(crate) fn check_rpo(&self, pw: &str, w: &Written, cut: Instant, cut_done: Instant) -> Vec<Lost> {
        let missing = self.missing(pw, &w.acked);
        let lost: Vec<Lost> = w
            .acked
            .iter()
            .zip(&w.at)
            .filter(|(id, _)| missing.contains(id))
            .map(|(id, at)| Lost { id: *id, at: *at, cut })
            .collect();
        let named: Vec<String> = lost.iter().map(Lost::to_string).collect();
        assert!(
            lost.iter().all(|l| l.at < cut_done),
            "writes acknowledged after the cut were lost: {named:?}"
        );
        if let Some(first) = lost.first() {
            let tail: Vec<i32> = w
                .acked
                .iter()
                .zip(&w.at)
                .filter(|(_, at)| **at >= first.at && **at < cut_done)
                .map(|(id, _)| *id)
                .collect();
            assert_eq!(
                lost.iter().map(|l| l.id).collect::<Vec<_>>(),
                tail,
                "the writes lost are not the newest ones before the cut (a gap inside what the new primary had): \
                 {named:?}"
            );
        }
        lost
    }
}

/// The lost writes named, after a colon (nothing when none was lost).
fn named(lost: &[Lost]) -> String {
    if lost.is_empty() {
        return String::new();
    }
    format!(": {}", lost.iter().map(Lost::to_string).collect::<Vec<_>>().join(", "))
}

/// An acknowledged write missing after a failover.
pub(crate) struct Lost {
    pub id: i32,
    pub at: Instant,
    pub cut: Instant,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.cut.checked_duration_since(self.at) {
            Some(d) => write!(f, "id {} acknowledged {:.2} s before the cut", self.id, d.as_secs_f64()),
            None => write!(
                f,
                "id {} acknowledged {:.2} s after the cut began",
                self.id,
                (self.at - self.cut).as_secs_f64()
            ),
        }
    }
}

/// What psql or docker say when PostgreSQL, or the whole container, is not
/// running: such a host takes no writes.
const NOT_RUNNING: [&str; 8] = [
    "No such file or directory",
    "Connection refused",
    "is not running",
    "No such container",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
];

/// One ask of a host from inside its container.
pub(crate) enum Asked {
    Answer(String),
    /// PostgreSQL or its container is not running.
    Down,
    /// No answer in time, or an error that says nothing either way: why.
    Unknown(String),
}

/// Every database host asked once.
#[derive(Default, Debug, Clone)]
pub(crate) struct Sample {
    pub writable: Vec<String>,
    /// Hosts that could not be asked, each with why: they may take writes.
    pub unknown: Vec<String>,
}

pub(crate) fn status_json(lab: &TestLab) -> serde_json::Value {
    let out = lab.pgha(&["status", "--output", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status json: {e}: {}", stderr(&out)))
}

/// Seconds since the epoch, as `journalctl --since @N` reads them.
pub(crate) fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Samples which hosts take writes until stopped. Bounded: at most 5000
/// samples (about an hour).
pub(crate) struct Monitor {
    sites: Sites,
    stop: Arc<AtomicBool>,
    /// Set: take no sample (see [`Monitor::around`]); `idle` says none is under way.
    paused: Arc<AtomicBool>,
    idle: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(Vec<Seen>, bool)>,
}

/// One whole sample: when it began asking, when the last answer came, and
/// the hosts that answered "writable".
pub(crate) struct Seen {
    pub at: Instant,
    /// `at` on the wall clock, to find the moment in the hosts' journals.
    pub wall: SystemTime,
    /// A host's "not writable" holds by then at the latest: a write the
    /// old master acknowledged between `at` and `done` is still before it
    /// stopped.
    pub done: Instant,
    pub writable: Vec<String>,
    /// Hosts that could not be asked, and why.
    pub unknown: Vec<String>,
}

impl Monitor {
    /// Samples 300 ms apart: each is six psql runs inside the hosts, on the
    /// two cores the lab itself needs.
    pub(crate) fn start(sites: Sites) -> Monitor {
        Monitor::start_every(sites, Duration::from_millis(300))
    }

    /// Samples `every` apart: for a long change (a release upgrade) whose
    /// masters change only at its switchover, a slower pace leaves the
    /// machine's two cores to the change.
    pub(crate) fn start_every(sites: Sites, every: Duration) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(false));
        let (flag, pause, rest) = (stop.clone(), paused.clone(), idle.clone());
        let handle = std::thread::spawn(move || {
            let mut samples = Vec::new();
            for _ in 0..5000 {
                if flag.load(Ordering::Relaxed) {
                    return (samples, true);
                }
                if pause.load(Ordering::SeqCst) {
                    rest.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let (at, wall) = (Instant::now(), SystemTime::now());
                let Sample { writable, unknown } = sites.sample();
                samples.push(Seen {
                    at,
                    wall,
                    done: Instant::now(),
                    writable,
                    unknown,
                });
                std::thread::sleep(every);
            }
            (samples, false)
        });
        Monitor {
            sites,
            stop,
            paused,
            idle,
            handle,
        }
    }

    /// Runs `power` (Docker powering hosts off, or taking their network
    /// away or back) between two whole samples. A sample asks the hosts in
    /// parallel for up to 21 s: one that spans such a Docker operation can
    /// see a host answer "writable" and the host Docker is working on hang
    /// in `docker exec` for all of its tries, which cannot rule out two
    /// masters although only Docker held it (seen twice, the cut-off
    /// master of seed_scenario's step 9b unanswered for 21 s while the new
    /// master was writable). The sample before shows every host as it was;
    /// the one after shows any master still there, or new.
    pub(crate) fn around<T>(&self, power: impl FnOnce() -> T) -> T {
        self.idle.store(false, Ordering::SeqCst);
        self.paused.store(true, Ordering::SeqCst);
        wait_for("the monitor's sample under way", Duration::from_secs(60), || {
            self.idle.load(Ordering::SeqCst)
        });
        let out = power();
        self.paused.store(false, Ordering::SeqCst);
        out
    }

    /// Stops; panics if two hosts were ever writable at once, if a host
    /// that could not be asked may have been a second master (another was
    /// writable then, or another was unknown too), or if the monitor ran
    /// out before it was stopped (the end went unwatched). Returns the
    /// writable hosts of each sample.
    pub(crate) fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        let (samples, stopped) = self.handle.join().unwrap();
        assert!(
            stopped,
            "the monitor ran out of samples before the end: the rest went unwatched"
        );
        for s in &samples {
            assert!(s.writable.len() <= 1, "two writable masters at once: {:?}", s.writable);
            if s.writable.len() + s.unknown.len() > 1 {
                // Each unanswered host's own account of those seconds.
                let end = s.wall + (s.done - s.at);
                let journals: String = s
                    .unknown
                    .iter()
                    .filter_map(|u| u.split_whitespace().next())
                    .map(|h| format!("== {h}\n{}\n", self.sites.journal_between(h, s.wall, end)))
                    .collect();
                // The verdict last: CI keeps a failure's tail.
                panic!(
                    "{journals}two masters cannot be ruled out: {:?} writable, {:?} could not be asked (sample begun {} s after the epoch, took {:.1} s)",
                    s.writable,
                    s.unknown,
                    epoch_secs(s.wall),
                    (s.done - s.at).as_secs_f64()
                );
            }
        }
        let unknown = samples.iter().filter(|s| !s.unknown.is_empty()).count();
        if unknown > 0 {
            eprintln!(
                "monitor: {unknown} of {} samples had a host that could not be asked",
                samples.len()
            );
        }
        samples
    }
}

/// The first sample begun at or after `from` for which `test` holds.
fn first(samples: &[Seen], from: Instant, test: impl Fn(&[String]) -> bool) -> Option<&Seen> {
    samples.iter().find(|s| s.at >= from && test(&s.writable))
}

/// Writes on `host` itself every 200 ms (over its local socket, from inside
/// its container), as clients inside a cut-off cloud do, until stopped;
/// returns when each write was acknowledged. Negative ids: the GLB writer's
/// are positive. Bounded: at most 600 writes.
fn inside_writer(sites: Sites, host: String) -> (Arc<AtomicBool>, std::thread::JoinHandle<Vec<Instant>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for _ in 0..600 {
            if flag.load(Ordering::Relaxed) {
                break;
            }
            let insert = "INSERT INTO ticks SELECT least(coalesce(min(id), 0), 0) - 1 FROM ticks";
            if sites.psql_inside(&host, insert).is_some() {
                acked.push(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        acked
    });
    (stop, handle)
}

/// The fence's documented bound: a third of the ttl without a renewal, the
/// requests then in flight (three of ttl/15), the stop.
pub(crate) fn fence_bound() -> Duration {
    Duration::from_secs_f64(TTL as f64 / 3.0 + 3.0 * TTL as f64 / 15.0 + 3.0)
}

/// The site lease's holder and the other cloud: `(old, new, old's hosts, new's hosts)`.
fn sides(lab: &TestLab) -> (&'static str, &'static str, [&'static str; 3], [&'static str; 3]) {
    let holder = status_json(lab)["site"]["holder"].as_str().unwrap().to_string();
    if holder == "dc1" {
        ("dc1", "dc2", DC1, DC2)
    } else {
        ("dc2", "dc1", DC2, DC1)
    }
}

/// Waits until a host of `new` takes writes and the GLB reaches it, then
/// lets the writer acknowledge a few writes there.
fn wait_new_master(sites: Sites, new: &str, new_hosts: &[&str], pw: &str) {
    // Auto failover: the lease expires (ttl), then its hold-down (Patroni's
    // ttl + 2 loops, 24 s in the lab), then the promotion.
    wait_for(&format!("{new} to take writes"), Duration::from_secs(TTL * 4), || {
        new_hosts.iter().any(|h| sites.read_write(h) == Some(true))
    });
    wait_for("writes through the GLB", Duration::from_secs(30), || {
        sql(&sites.glb(), 5000, pw, "SELECT 1 WHERE NOT pg_is_in_recovery()").is_ok_and(|r| r.len() == 1)
    });
    std::thread::sleep(Duration::from_secs(2));
}

/// How long, from now, until `old` (its hosts `old_hosts`) follows `new`
/// with no pgha command: every host of it read-only, replicating (Patroni
/// 3.0 says `running`, 4 `streaming`) on the new master's timeline; and
/// where the time went (`follow_events`). Past `limit` it fails with that
/// and each host's replication and Patroni's last lines.
fn wait_followed(
    sites: Sites,
    lab: &TestLab,
    old: &str,
    old_hosts: &[&str],
    new: &str,
    limit: Duration,
) -> (Duration, String) {
    let from = Instant::now();
    let since = SystemTime::now();
    let followed = || {
        let s = status_json(lab);
        let hosts = s["hosts"].as_array().unwrap();
        let newest = hosts.iter().filter_map(|h| h["timeline"].as_u64()).max();
        hosts.iter().all(|h| {
            h["cloud"] != old
                || (h["read_write"] == false
                    && h["timeline"].as_u64() == newest
                    && (h["state"] == "streaming" || h["state"] == "running"))
        })
    };
    wait_for_or(&format!("{old} to follow {new}"), limit, followed, || {
        let hosts: Vec<String> = old_hosts.iter().map(|h| sites.why_behind(h)).collect();
        format!("{}\n{}", follow_events(sites, old_hosts, since), hosts.join("\n"))
    });
    (from.elapsed(), follow_events(sites, old_hosts, since))
}

/// What `hosts` logged since `since` that takes a following
/// cloud time, counted: where a slow follow went (a run took 139.5 s after
/// a power-on where others took 35).
fn follow_events(sites: Sites, hosts: &[&str], since: SystemTime) -> String {
    const EVENTS: [(&str, &str); 7] = [
        ("so that Patroni rewinds it", "replicas stopped for a rewind"),
        ("has not streamed for", "WAL receivers restarted"),
        ("running pg_rewind from", "pg_rewinds"),
        (
            "doing crash recovery in a single user mode",
            "single-user crash recoveries",
        ),
        ("Demoting self because", "Patroni demotions"),
        ("Failing over", "crashed leaders handing over"),
        (
            "forked off current database system timeline",
            "forks seen by the startup process",
        ),
    ];
    let grep = EVENTS.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>().join("|");
    let since = epoch_secs(since);
    let script =
        format!("journalctl -u patroni -u pgha-site-agent --since @{since} --no-pager -o cat | grep -E '{grep}'");
    let mut counts = [0usize; EVENTS.len()];
    for host in hosts {
        for line in sites.sh_inside(host, &script).lines() {
            for (i, (pattern, _)) in EVENTS.iter().enumerate() {
                counts[i] += usize::from(line.contains(pattern));
            }
        }
    }
    let seen: Vec<String> = EVENTS
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|((_, what), n)| format!("{what}: {n}"))
        .collect();
    if seen.is_empty() {
        "no rewind, restart or demotion logged".into()
    } else {
        seen.join(", ")
    }
}

/// A deploy settles what a flip owed an unreachable cloud; status is clean.
fn settle(lab: &TestLab) {
    let out = lab.pgha(&["deploy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "deploy: {}", stderr(&out));
    let out = lab.pgha(&["status"]);
    assert_eq!(out.status.code(), Some(0), "status: {}{}", stdout(&out), stderr(&out));
}

/// What one cut of the primary cloud measured.
pub(crate) struct Cut {
    pub old: &'static str,
    pub new: &'static str,
    /// The fence's documented bound in this run.
    pub bound: Duration,
    /// From the cut to no host of the old cloud taking writes.
    pub fenced: Duration,
    /// From the cut to a host of the new cloud taking writes.
    pub promoted: Duration,
    /// From the last write acknowledged before the cut to the first after.
    pub first_write: Option<Duration>,
    /// From the heal to every host of the old cloud following the new one.
    pub followed: Duration,
    /// What its hosts logged meanwhile (`follow_events`).
    pub follow_events: String,
    pub acked: usize,
    /// Acknowledged writes missing afterwards: within the documented RPO
    /// (checked), named.
    pub lost: Vec<Lost>,
    pub rows: String,
    /// Writes acknowledged inside the old cloud (on its master) after the
    /// cut: past the fork, discarded by the rewind after the heal.
    pub inside_after_cut: usize,
    /// The commits the fenced master's agent counted past its last
    /// published position, and kept the WAL of.
    pub kept_commits: u64,
}

/// Cuts the primary cloud (the site lease's holder) off from everything,
/// this machine included, with a client writing through the GLB every
/// 100 ms. It fences itself; the other cloud becomes primary (by `cloud
/// make-primary`, or by itself with auto failover); after the heal the old
/// one follows with no pgha command, its rows equal to the new primary's.
/// Ends recorded and healthy: after a takeover `make-primary` records it,
/// and a deploy settles what the flip owed the cut-off cloud.
///
/// `fault` is made on the old master just before
/// the cut and undone once the old cloud followed: then pgha-site-fence
/// stops the master (within its bound), and the cloud's other agents make
/// it follow after the heal.
pub(crate) fn cut_primary(sites: Sites, lab: &TestLab, pw: &str, auto: bool, fault: Option<Fault>) -> Cut {
    let (old, new, old_hosts, new_hosts) = sides(lab);
    let monitor = Monitor::start(sites);
    let (stop, handle) = writer(&sites.glb(), pw);
    let old_master = sites.writable_now().pop().expect("a master");
    assert!(old_master.starts_with(old), "{old_master}");
    let (stop_inside, inside) = inside_writer(sites, old_master.clone());
    std::thread::sleep(Duration::from_secs(2));
    if let Some(f) = fault {
        lab.ssh_ok(&sites.address(&old_master), f.commands().0);
    }
    let bound = if fault.is_some() {
        site_fence_bound()
    } else {
        fence_bound()
    };
    let cut = Instant::now();
    let out = lab.lab(&["partition", old, "--operator"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cut_done = Instant::now();
    wait_for(
        &format!("{old} to fence its master"),
        bound + Duration::from_secs(5),
        || old_hosts.iter().all(|h| sites.read_write(h) == Some(false)),
    );
    stop_inside.store(true, Ordering::Relaxed);
    // Counted from when the partition is in place: a write acknowledged
    // while `lab partition` still ran may have reached the other cloud
    // (CI: 12 counted from its start, 11 kept past the fork).
    let inside_after_cut = inside.join().unwrap().iter().filter(|t| **t > cut_done).count();
    if !auto {
        let out = lab.pgha(&["cloud", "make-primary", new, "--yes"]);
        assert_eq!(out.status.code(), Some(0), "make-primary: {}", stderr(&out));
    }
    wait_new_master(sites, new, &new_hosts, pw);
    let out = lab.lab(&["unpartition", old]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A frozen Patroni follows nobody: thawed at the heal. The agent's
    // faults last until the cloud followed (its other agents make it).
    let thaw_at_heal = fault == Some(Fault::PatroniFreeze);
    if thaw_at_heal {
        lab.ssh_ok(&sites.address(&old_master), Fault::PatroniFreeze.commands().1);
    }
    let (followed, follow_events) = wait_followed(sites, lab, old, &old_hosts, new, Duration::from_secs(120));
    if let Some(f) = fault.filter(|_| !thaw_at_heal) {
        lab.ssh_ok(&sites.address(&old_master), f.commands().1);
    }
    stop.store(true, Ordering::Relaxed);
    let w = handle.join().unwrap();
    let samples = monitor.finish();
    let fenced = first(&samples, cut, |rw| rw.iter().all(|h| !h.starts_with(old)))
        .unwrap()
        .at;
    let promoted = first(&samples, cut, |rw| rw.iter().any(|h| h.starts_with(new)))
        .unwrap()
        .at;
    let last_before = w.at.iter().rev().find(|t| **t < cut).copied().unwrap_or(cut);
    let first_after = w.at.iter().find(|t| **t > promoted).copied();
    // Patroni asked the site agent before promoting.
    let asked = new_hosts.iter().any(|h| {
        lab.ssh_ok(&sites.address(h), "journalctl -u patroni --no-pager -o cat")
            .contains("pre_promote script `/usr/local/lib/pgha/site-agent --may-promote` exited with 0")
    });
    assert!(asked, "no pre_promote in {new}'s Patroni logs");
    let rows = sites.same_rows_everywhere(pw);
    let lost = sites.check_rpo(pw, &w, cut, cut_done);
    // The fenced master's agent kept the WAL past its last published
    // position (pgha-site-fence, which stopped it when the agent could not,
    // keeps nothing; its record names no WAL kept).
    let kept_commits = if fault.is_some() {
        0
    } else {
        let record = lab.ssh_ok(
            &sites.address(&old_master),
            // The agent's last record (pgha-site-fence's say "by").
            "grep -v '\"by\"' /var/lib/pgha/site-fenced.json | tail -1",
        );
        let record: serde_json::Value = serde_json::from_str(&record).unwrap();
        let kept = record["kept"].as_str().unwrap_or_else(|| panic!("{record}"));
        let files = lab.ssh_ok(&sites.address(&old_master), &format!("ls {kept} | wc -l"));
        assert!(files != "0", "no WAL kept in {kept}");
        record["commits_past_published"]
            .as_u64()
            .unwrap_or_else(|| panic!("{record}"))
    };
    if auto {
        assert_eq!(status_json(lab)["site"]["holder"], new);
        let out = lab.pgha(&["cloud", "make-primary", new, "--yes"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "make-primary after the takeover: {}",
            stderr(&out)
        );
    }
    settle(lab);
    Cut {
        old,
        new,
        bound,
        fenced: fenced - cut,
        promoted: promoted - cut,
        first_write: first_after.map(|t| t - last_before),
        followed,
        follow_events,
        acked: w.acked.len(),
        lost,
        rows,
        inside_after_cut,
        kept_commits,
    }
}

impl Cut {
    pub(crate) fn describe(&self, mode: &str) -> String {
        format!(
            "{mode}: {} partitioned: fenced after {} (bound {}), {} writable after {}, first write through the GLB \
             after {}; {} followed {} after the heal ({}); acknowledged writes lost: {} of {} (within the RPO: the newest before the cut){}; rows on all 6 \
             hosts equal ({}); writes acknowledged inside {} after the cut (discarded by the rewind): {}, commits the \
             fenced master kept the WAL of: {}",
            self.old,
            secs(self.fenced),
            secs(self.bound),
            self.new,
            secs(self.promoted),
            self.first_write.map_or("-".into(), secs),
            self.old,
            secs(self.followed),
            self.follow_events,
            self.lost.len(),
            self.acked,
            named(&self.lost),
            self.rows,
            self.old,
            self.inside_after_cut,
            self.kept_commits
        )
    }
}

/// What one power-off of the primary cloud measured.
pub(crate) struct Loss {
    pub old: &'static str,
    pub new: &'static str,
    /// From the power-off to a host of the new cloud taking writes.
    pub promoted: Duration,
    /// From the power-off to the first write through the GLB.
    pub first_write: Duration,
    /// From the power-on to every host of the old cloud following.
    pub followed: Duration,
    /// What its hosts logged meanwhile (`follow_events`).
    pub follow_events: String,
    pub acked: usize,
    pub lost: Vec<Lost>,
}

impl Loss {
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} powered off whole (its repository host too), `cloud make-primary {}`: {} writable after {}, first \
             write through the GLB after {}; powered on, {} followed after {} ({}); acknowledged writes lost: {} of \
             {} (within the RPO: the newest before the power-off){}",
            self.old,
            self.new,
            self.new,
            secs(self.promoted),
            secs(self.first_write),
            self.old,
            secs(self.followed),
            self.follow_events,
            self.lost.len(),
            self.acked,
            named(&self.lost)
        )
    }
}

/// Powers the primary cloud off whole (its repository host with it) with a
/// client writing through the GLB every 100 ms, makes the other cloud
/// primary by hand, then powers it on: it follows with no pgha command, its
/// rows equal to the new primary's. Ends healthy (a deploy settles what the
/// flip owed the lost cloud).
pub(crate) fn lose_primary(sites: Sites, lab: &TestLab, pw: &str) -> Loss {
    let (old, new, old_hosts, new_hosts) = sides(lab);
    let monitor = Monitor::start(sites);
    let (stop, handle) = writer(&sites.glb(), pw);
    std::thread::sleep(Duration::from_secs(2));
    // Between two whole samples (see `Monitor::around`), timed from inside.
    let (cut, out, cut_done) = monitor.around(|| {
        let cut = Instant::now();
        let out = lab.lab(&["kill", old]);
        (cut, out, Instant::now())
    });
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = lab.pgha(&["cloud", "make-primary", new, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "make-primary: {}", stderr(&out));
    wait_new_master(sites, new, &new_hosts, pw);
    let out = monitor.around(|| lab.lab(&["start", old]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (followed, follow_events) = wait_followed(sites, lab, old, &old_hosts, new, Duration::from_secs(180));
    stop.store(true, Ordering::Relaxed);
    let w = handle.join().unwrap();
    let samples = monitor.finish();
    assert!(
        samples
            .iter()
            .all(|s| s.at < cut || s.writable.iter().all(|h| !old_hosts.contains(&h.as_str()))),
        "a host of the lost cloud took writes again"
    );
    let promoted = first(&samples, cut, |rw| rw.iter().any(|h| h.starts_with(new)))
        .unwrap()
        .at;
    let first_write = w.at.iter().find(|t| **t > promoted).copied().unwrap();
    sites.same_rows_everywhere(pw);
    let lost = sites.check_rpo(pw, &w, cut, cut_done);
    settle(lab);
    Loss {
        old,
        new,
        promoted: promoted - cut,
        first_write: first_write - cut,
        followed,
        follow_events,
        acked: w.acked.len(),
        lost,
    }
}

/// Turns synchronous replication between clouds on in the lab's design
/// (`site.synchronous`, issue 29) and deploys.
pub(crate) fn set_synchronous(lab: &TestLab) {
    let design = std::fs::read_to_string(lab.design()).unwrap();
    let with = design.replace(
        "  auto_failover: false\n",
        "  auto_failover: false\n  synchronous: true\n",
    );
    assert_ne!(design, with, "the lab's design has a site section");
    std::fs::write(lab.design(), with).unwrap();
    let out = lab.pgha(&["deploy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "deploy: {}", stderr(&out));
}

/// Turns auto failover on or off in the lab's design and deploys (the
/// agents restart with it).
pub(crate) fn set_auto_failover(lab: &TestLab, on: bool) {
    let design = std::fs::read_to_string(lab.design()).unwrap();
    let (from, to) = if on { ("false", "true") } else { ("true", "false") };
    std::fs::write(
        lab.design(),
        design.replace(&format!("auto_failover: {from}"), &format!("auto_failover: {to}")),
    )
    .unwrap();
    let out = lab.pgha(&["deploy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "deploy: {}", stderr(&out));
}

/// The primary cloud cut off for `cut_for` (longer than the fence takes),
/// with nobody making another cloud primary meanwhile: it fences, and when
/// the link returns it is primary again by itself (it is still the lease's
/// last holder). Returns the longest write gap through the GLB and the
/// acknowledged writes lost.
pub(crate) fn blip_primary(sites: Sites, lab: &TestLab, pw: &str, cut_for: Duration) -> (Duration, usize) {
    let holder = status_json(lab)["site"]["holder"].as_str().unwrap().to_string();
    let hosts = if holder == "dc1" { DC1 } else { DC2 };
    let monitor = Monitor::start(sites);
    let (stop, handle) = writer(&sites.glb(), pw);
    std::thread::sleep(Duration::from_secs(2));
    let cut = Instant::now();
    let out = lab.lab(&["partition", &holder]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    wait_for(
        &format!("{holder} to fence its master"),
        fence_bound() + Duration::from_secs(5),
        || hosts.iter().all(|h| sites.read_write(h) == Some(false)),
    );
    std::thread::sleep(cut_for.saturating_sub(cut.elapsed()));
    let out = lab.lab(&["unpartition", &holder]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    wait_for(
        &format!("{holder} to take writes again"),
        Duration::from_secs(60),
        || hosts.iter().any(|h| sites.read_write(h) == Some(true)),
    );
    wait_for("writes through the GLB", Duration::from_secs(30), || {
        sql(&sites.glb(), 5000, pw, "SELECT 1 WHERE NOT pg_is_in_recovery()").is_ok_and(|r| r.len() == 1)
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let w = handle.join().unwrap();
    monitor.finish();
    sites.same_rows_everywhere(pw);
    let lost = sites.lost(pw, &w.acked);
    assert_eq!(status_json(lab)["site"]["holder"], holder.as_str());
    let out = lab.pgha(&["status"]);
    assert_eq!(out.status.code(), Some(0), "status: {}{}", stdout(&out), stderr(&out));
    (w.gap, lost)
}

/// The start of a fault on the master of `cloud`: the monitor and a client
/// writing through the GLB running, the master found, and two seconds of
/// writes before anything happens.
fn on_the_master(sites: Sites, pw: &str, cloud: &str) -> (Monitor, Arc<AtomicBool>, super::Ticks, String) {
    let monitor = Monitor::start(sites);
    let (stop, handle) = writer(&sites.glb(), pw);
    let master = sites.writable_now().pop().expect("a master");
    assert!(master.starts_with(cloud), "{master} is not in {cloud}");
    std::thread::sleep(Duration::from_secs(2));
    (monitor, stop, handle, master)
}

/// The end of a fault: writes go through the GLB again (a few more are
/// acknowledged there), then the writer and the monitor stop.
fn served_again(
    sites: Sites,
    pw: &str,
    monitor: Monitor,
    stop: &AtomicBool,
    handle: super::Ticks,
) -> (Written, Vec<Seen>) {
    wait_for("writes through the GLB", Duration::from_secs(30), || {
        sql(&sites.glb(), 5000, pw, "SELECT 1 WHERE NOT pg_is_in_recovery()").is_ok_and(|r| r.len() == 1)
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    (handle.join().unwrap(), monitor.finish())
}

/// The site fence's documented bound (issue 23): half the ttl after the
/// last renewal, its 1 s period, the immediate stop (a few seconds at most
/// on a busy machine).
pub(crate) fn site_fence_bound() -> Duration {
    Duration::from_secs_f64(TTL as f64 / 2.0 + 1.0 + 3.0)
}

/// What one fault of the site agent on the primary's master measured.
pub(crate) struct AgentFault {
    pub fault: Fault,
    /// From the fault to the master taking no writes.
    pub stopped: Duration,
    /// From the fault to another host of the same cloud taking writes.
    pub promoted: Duration,
    pub first_write: Option<Duration>,
    pub acked: usize,
    pub lost: Vec<Lost>,
}

impl AgentFault {
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} on the master: it stopped taking writes after {} (bound {}), a master again in its \
             cloud after {}, first write through the GLB after {}; acknowledged writes lost: {} of {}{}",
            self.fault.label(),
            secs(self.stopped),
            secs(site_fence_bound()),
            secs(self.promoted),
            self.first_write.map_or("-".into(), secs),
            self.lost.len(),
            self.acked,
            named(&self.lost)
        )
    }
}

/// A fault made on the primary cloud's master. Patroni's main process alone
/// is frozen: PostgreSQL, in the same unit, keeps running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The site agent stopped.
    Stop,
    /// The site agent frozen (SIGSTOP).
    Freeze,
    /// The site agent's settings gone: it dies at each start (systemd
    /// restarts it every second, without end).
    CrashLoop,
    /// Patroni frozen with PostgreSQL running.
    PatroniFreeze,
}

impl Fault {
    pub(crate) const ALL: [Fault; 4] = [Fault::Stop, Fault::Freeze, Fault::CrashLoop, Fault::PatroniFreeze];

    /// The commands that make it, and undo it.
    fn commands(self) -> (&'static str, &'static str) {
        match self {
            Fault::Stop => ("systemctl stop pgha-site-agent", "systemctl start pgha-site-agent"),
            Fault::Freeze => (
                "systemctl kill -s SIGSTOP pgha-site-agent",
                "systemctl kill -s SIGCONT pgha-site-agent",
            ),
            Fault::CrashLoop => (
                "mv /etc/pgha/site-agent.json /etc/pgha/site-agent.json.away && systemctl kill -s SIGKILL pgha-site-agent",
                "mv /etc/pgha/site-agent.json.away /etc/pgha/site-agent.json",
            ),
            Fault::PatroniFreeze => (
                "kill -STOP \"$(systemctl show -p MainPID --value patroni)\"",
                "kill -CONT \"$(systemctl show -p MainPID --value patroni)\"",
            ),
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Fault::Stop => "site agent stopped",
            Fault::Freeze => "site agent frozen (SIGSTOP)",
            Fault::CrashLoop => "site agent crashing at each start",
            Fault::PatroniFreeze => "Patroni frozen (SIGSTOP), PostgreSQL running,",
        }
    }
}

/// A `Fault` on the primary cloud's master (with Patroni frozen nothing
/// demotes it, and its agent, without an answer from Patroni, renews
/// nothing), with a client writing through the GLB: the site
/// fence, which shares nothing with the agent, stops that master within
/// its bound, Patroni fails over inside the cloud (pre_promote renews the
/// lease there), and the lease never leaves the cloud. Then the agent runs
/// again; the old master follows. Never two writable hosts.
pub(crate) fn agent_fault(sites: Sites, lab: &TestLab, pw: &str, fault: Fault) -> AgentFault {
    let (old, _, old_hosts, _) = sides(lab);
    let (monitor, stop, handle, master) = on_the_master(sites, pw, old);
    let address = sites.address(&master);
    let (make, undo) = fault.commands();
    let at = Instant::now();
    lab.ssh_ok(&address, make);
    wait_for(
        &format!("{master} to stop taking writes"),
        site_fence_bound() + Duration::from_secs(10),
        || sites.read_write(&master) == Some(false),
    );
    wait_for(
        &format!("another master in {old}"),
        Duration::from_secs(TTL * 3),
        || {
            old_hosts
                .iter()
                .any(|h| *h != master && sites.read_write(h) == Some(true))
        },
    );
    wait_for("writes through the GLB", Duration::from_secs(30), || {
        sql(&sites.glb(), 5000, pw, "SELECT 1 WHERE NOT pg_is_in_recovery()").is_ok_and(|r| r.len() == 1)
    });
    std::thread::sleep(Duration::from_secs(2));
    lab.ssh_ok(&address, undo);
    wait_for(&format!("{master} to follow"), Duration::from_secs(90), || {
        sites.read_write(&master) == Some(false)
            && status_json(lab)["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["host"] == master.as_str() && (h["state"] == "streaming" || h["state"] == "running"))
    });
    stop.store(true, Ordering::Relaxed);
    let w = handle.join().unwrap();
    let samples = monitor.finish();
    let stop = first(&samples, at, |rw| !rw.contains(&master)).unwrap();
    let stopped = stop.at;
    let promoted = first(&samples, at, |rw| rw.iter().any(|h| h.starts_with(old) && *h != master))
        .unwrap()
        .at;
    let last_before = w.at.iter().rev().find(|t| **t < stopped).copied().unwrap_or(at);
    let first_after = w.at.iter().find(|t| **t > promoted).copied();
    assert_eq!(status_json(lab)["site"]["holder"], old, "the lease left the cloud");
    sites.same_rows_everywhere(pw);
    // A master stopped at once may not have sent its last commits: the
    // documented in-cloud RPO, the newest before it stopped.
    let lost = sites.check_rpo(pw, &w, at, stop.done);
    let out = lab.pgha(&["status"]);
    assert_eq!(out.status.code(), Some(0), "status: {}{}", stdout(&out), stderr(&out));
    AgentFault {
        fault,
        stopped: stopped - at,
        promoted: promoted - at,
        first_write: first_after.map(|t| t - last_before),
        acked: w.acked.len(),
        lost,
    }
}

/// What one power-off of the primary cloud's master measured.
pub(crate) struct PowerOff {
    pub old: String,
    pub new: String,
    /// From the power-off to the new master taking writes.
    pub promoted: Duration,
    /// The longest gap between acknowledged writes through the GLB.
    pub gap: Duration,
    pub acked: usize,
    pub lost: Vec<Lost>,
    /// How long after the primary cloud's hosts the standby cloud's held the
    /// same rows (`None`: not within a minute more).
    pub standby_caught_up: Option<Duration>,
}

impl PowerOff {
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} powered off with auto failover on: {} master after {}, longest write gap {}; acknowledged writes \
             lost: {} of {} (the in-cloud RPO: the newest before the power-off){}; the standby cloud {}",
            self.old,
            self.new,
            secs(self.promoted),
            secs(self.gap),
            self.lost.len(),
            self.acked,
            named(&self.lost),
            self.standby_caught_up.map_or(
                "had NOT caught up a minute later (README: left open)".to_string(),
                |d| format!("caught up {} later", secs(d))
            )
        )
    }
}

/// The primary cloud's master powered off (issue 23), with auto failover on
/// and a client writing through the GLB: its lease expires with Patroni's
/// leader key, and the new master must come from the same cloud (the auto
/// failover's hold-down gives the cloud's replicas Patroni's ttl to elect
/// one; their pre_promote takes the lease back). Powered on, the old master
/// follows. Never two writable hosts.
pub(crate) fn power_off_master(sites: Sites, lab: &TestLab, pw: &str) -> PowerOff {
    let (cloud, _, hosts, _) = sides(lab);
    let (monitor, stop, handle, old) = on_the_master(sites, pw, cloud);
    // Between two whole samples (see `Monitor::around`), timed from inside.
    let (at, out, done) = monitor.around(|| {
        let at = Instant::now();
        let out = lab.lab(&["kill", &old]);
        (at, out, Instant::now())
    });
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut new = None;
    wait_for("a new master", Duration::from_secs(TTL * 4), || {
        new = DC1
            .iter()
            .chain(&DC2)
            .find(|h| **h != old && sites.read_write(h) == Some(true))
            .copied();
        new.is_some()
    });
    let new = new.unwrap().to_string();
    assert!(
        hosts.contains(&new.as_str()),
        "the crash of {old} moved the primary to {new}, out of {cloud}"
    );
    wait_for("writes through the GLB", Duration::from_secs(30), || {
        sql(&sites.glb(), 5000, pw, "SELECT 1 WHERE NOT pg_is_in_recovery()").is_ok_and(|r| r.len() == 1)
    });
    std::thread::sleep(Duration::from_secs(2));
    let out = monitor.around(|| lab.lab(&["start", &old]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    wait_for(&format!("{old} to follow {new}"), Duration::from_secs(120), || {
        status_json(lab)["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["host"] == old.as_str() && h["read_write"] == false && h["state"] == "streaming")
    });
    stop.store(true, Ordering::Relaxed);
    let w = handle.join().unwrap();
    let samples = monitor.finish();
    let promoted = first(&samples, at, |rw| rw.contains(&new)).unwrap().at;
    assert_eq!(status_json(lab)["site"]["holder"], cloud, "the lease left {cloud}");
    let lost = sites.check_rpo(pw, &w, at, done);
    // Every host of the primary cloud holds the master's rows. The standby
    // cloud is measured, not asserted: a standby leader that had received
    // WAL past the new master's fork cannot follow it (README, "The standby
    // cloud after the primary's master dies": left open); it loses nothing
    // of the primary cloud's.
    let master = sites.same_rows_on(pw, &hosts);
    let standby: Vec<&str> = DC1.iter().chain(&DC2).copied().filter(|h| !hosts.contains(h)).collect();
    let from = Instant::now();
    let caught_up = (0..60).any(|_| {
        let all = standby.iter().all(|h| sites.has_rows(pw, h, &master));
        if !all {
            std::thread::sleep(Duration::from_secs(1));
        }
        all
    });
    PowerOff {
        old,
        new,
        promoted: promoted - at,
        gap: w.gap,
        acked: w.acked.len(),
        lost,
        standby_caught_up: caught_up.then(|| from.elapsed()),
    }
}

/// The primary's master's links to the site members slowed: its site
/// traffic (etcd client `:2479` and peer `:2480`, both ways) shaped to
/// 8 kbit/s by tc's htb (this kernel has no netem; a trickle does the
/// same: every request to the site outlasts its deadline).
const SLOW_SITE: &str = "tc qdisc add dev eth0 root handle 1: htb default 1 \
&& tc class add dev eth0 parent 1: classid 1:1 htb rate 1gbit \
&& tc class add dev eth0 parent 1: classid 1:2 htb rate 8kbit ceil 8kbit \
&& for p in 'dport 2479' 'sport 2479' 'dport 2480' 'sport 2480'; do \
tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip $p 0xffff flowid 1:2 || exit 1; done";
const UNSLOW_SITE: &str = "tc qdisc del dev eth0 root";

/// What the slowed site links measured.
pub(crate) struct SlowSite {
    /// From the slowdown to the master taking no writes.
    pub stopped: Duration,
    /// From then to another host of its cloud taking writes, still slowed.
    pub again: Duration,
    /// Samples while slowed, and those that found a master (in the cloud).
    pub slowed: usize,
    pub served: usize,
    pub acked: usize,
    pub lost: Vec<Lost>,
}

impl SlowSite {
    pub(crate) fn describe(&self) -> String {
        format!(
            "site links of the master slowed to 8 kbit/s: it stopped taking writes after {} (bound {}); another \
             host of its cloud took writes {} later, still slowed; a master of its cloud (no other: manual mode) in \
             {} of {} samples while slowed; acknowledged writes lost: {} of {}{}",
            secs(self.stopped),
            secs(fence_bound()),
            secs(self.again),
            self.served,
            self.slowed,
            self.lost.len(),
            self.acked,
            named(&self.lost)
        )
    }
}

/// Issue 23: a master whose requests to the site only trickle (it is alive,
/// its agent too, but every renewal outlasts its deadline) fences within
/// the agent's bound; another host of its cloud, which reaches the site,
/// is promoted while the links are still slow (the lease is still the
/// cloud's), nobody else promotes, and the cloud is primary after the links
/// recover. Never two writable hosts.
pub(crate) fn slow_site_links(sites: Sites, lab: &TestLab, pw: &str) -> SlowSite {
    let (old, _, _, _) = sides(lab);
    let (monitor, stop, handle, master) = on_the_master(sites, pw, old);
    let address = sites.address(&master);
    let at = Instant::now();
    lab.ssh_ok(&address, SLOW_SITE);
    let slowed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            &format!("{master} to stop taking writes"),
            fence_bound() + Duration::from_secs(10),
            || sites.read_write(&master) == Some(false),
        );
        // Past the lease's ttl: nobody takes it in manual mode.
        std::thread::sleep(Duration::from_secs(TTL));
    }));
    let back = Instant::now();
    lab.ssh_ok(&address, UNSLOW_SITE);
    if let Err(e) = slowed {
        std::panic::resume_unwind(e);
    }
    wait_for(
        &format!("a master in {old} again"),
        Duration::from_secs(TTL * 4),
        || sites.writable_now().iter().any(|h| h.starts_with(old)),
    );
    let (w, samples) = served_again(sites, pw, monitor, &stop, handle);
    let stop = first(&samples, at, |rw| !rw.contains(&master)).unwrap();
    let stopped = stop.at;
    // The lease stays with the cloud (manual mode: nobody else may take
    // it), so only its hosts may take writes, one at a time (the monitor
    // checked that). A renewal that gets through the trickle, or another
    // host of the cloud made master, may serve again while slowed: the
    // lease is held, which is what the promise needs.
    let slowed: Vec<&Seen> = samples.iter().filter(|s| s.at > stopped && s.done < back).collect();
    let outside: Vec<&Vec<String>> = slowed
        .iter()
        .map(|s| &s.writable)
        .filter(|rw| rw.iter().any(|h| !h.starts_with(old)))
        .collect();
    assert!(
        outside.is_empty(),
        "a host outside {old} took writes while its master's site links were slow: {outside:?}"
    );
    let served = slowed.iter().filter(|s| !s.writable.is_empty()).count();
    // A fence for silence once made the whole cloud a standby cluster that
    // only the fenced (blind) host could resume: nobody took writes until
    // its links healed.
    let again = slowed
        .iter()
        .find(|s| !s.writable.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "no host of {old} took writes while {master}'s site links were slow ({} samples from its stop to \
                 the undo)",
                slowed.len()
            )
        })
        .at;
    assert_eq!(status_json(lab)["site"]["holder"], old, "the lease left the cloud");
    sites.same_rows_everywhere(pw);
    let lost = sites.check_rpo(pw, &w, at, stop.done);
    SlowSite {
        stopped: stopped - at,
        again: again - stopped,
        slowed: slowed.len(),
        served,
        acked: w.acked.len(),
        lost,
    }
}

/// What one fault of the client path's gate measured (issue 23).
pub(crate) struct GateFault {
    pub fault: GateFaultKind,
    /// From the fault to the last write acknowledged through the GLB.
    pub closed: Duration,
    pub bound: Duration,
    /// From the undo to the first write acknowledged through the GLB.
    pub reopened: Duration,
    /// Samples of the monitor that found the master writable meanwhile.
    pub writable_samples: usize,
    pub acked: usize,
    pub lost: usize,
}

impl GateFault {
    pub(crate) fn describe(&self) -> String {
        format!(
            "{}: the last write through the GLB acknowledged {} after it (bound {}), while the master stayed \
             writable ({} samples); writes again {} after the undo; acknowledged writes lost: {} of {}",
            self.fault.label(),
            secs(self.closed),
            secs(self.bound),
            self.writable_samples,
            secs(self.reopened),
            self.lost,
            self.acked
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GateFaultKind {
    /// The site agent and the site fence both frozen on the master: nothing
    /// renews the lease and nothing stops PostgreSQL; only the gate, seeing
    /// the last renewal age, closes the route.
    GuardsFrozen,
    /// The gate itself frozen: HAProxy's checks time out, the route closes.
    GateFrozen,
}

impl GateFaultKind {
    pub(crate) const ALL: [GateFaultKind; 2] = [GateFaultKind::GuardsFrozen, GateFaultKind::GateFrozen];

    fn label(self) -> &'static str {
        match self {
            GateFaultKind::GuardsFrozen => "site agent and site fence both frozen on the master",
            GateFaultKind::GateFrozen => "site gate frozen on the master",
        }
    }

    /// HAProxy's checks (inter 1 s, fall 2, timeout check 3 s) after the
    /// gate stops answering 200, from the fault.
    fn bound(self) -> Duration {
        let checks = Duration::from_secs(2 * (1 + 3));
        match self {
            // The gate closes a third of the ttl after the last renewal,
            // which came before the freeze.
            GateFaultKind::GuardsFrozen => Duration::from_secs_f64(TTL as f64 / 3.0) + checks,
            GateFaultKind::GateFrozen => checks,
        }
    }
}

/// A fault of the client path's guard on the primary's master, with a
/// client writing through the GLB and the monitor inside every host: the
/// GLB stops acknowledging writes within the gate's bound while the
/// master itself stays writable (the gate alone closed the route), and
/// once undone the route opens again. Held for 14 s, less than the lease's
/// ttl minus a renewal period: the agent, thawed first, renews before the
/// lease lapses and before the fence, thawed once the renewal is recorded,
/// looks. Never two writable hosts; nothing lost.
pub(crate) fn gate_fault(sites: Sites, lab: &TestLab, pw: &str, fault: GateFaultKind) -> GateFault {
    let (old, _, _, _) = sides(lab);
    let (monitor, stop, handle, master) = on_the_master(sites, pw, old);
    let address = sites.address(&master);
    let units = match fault {
        GateFaultKind::GuardsFrozen => "pgha-site-agent pgha-site-fence",
        GateFaultKind::GateFrozen => "pgha-site-gate",
    };
    let at = Instant::now();
    lab.ssh_ok(&address, &format!("systemctl kill -s SIGSTOP {units}"));
    let held = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            "the GLB to refuse writes",
            fault.bound() + Duration::from_secs(5),
            || super::sql_within(&sites.glb(), 5000, pw, "SELECT 1", Duration::from_secs(3)).is_err(),
        );
        if fault == GateFaultKind::GuardsFrozen {
            // `status` asks the gate itself: the master's route is closed.
            let s = status_json(lab);
            let host = s["hosts"]
                .as_array()
                .and_then(|h| h.iter().find(|r| r["host"] == master.as_str()));
            assert_eq!(
                host.map(|h| &h["site_guard"]["gate_answer"]),
                Some(&serde_json::json!(503)),
                "{s}"
            );
        }
        let until = at + Duration::from_secs(14);
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    }));
    let back = Instant::now();
    if fault == GateFaultKind::GuardsFrozen {
        // The agent first; the fence once a renewal is recorded again.
        lab.ssh_ok(&address, "systemctl kill -s SIGCONT pgha-site-agent");
        wait_for("the agent to renew", Duration::from_secs(TTL / 2), || {
            lab.ssh(
                &address,
                "awk -v s=\"$(cat /run/pgha/site-renewed)\" '{ exit !($1 - s < 3) }' /proc/uptime",
            )
            .status
            .success()
        });
    }
    lab.ssh_ok(&address, &format!("systemctl kill -s SIGCONT {units}"));
    if let Err(e) = held {
        std::panic::resume_unwind(e);
    }
    let (w, samples) = served_again(sites, pw, monitor, &stop, handle);
    let during: Vec<&Seen> = samples.iter().filter(|s| s.at > at && s.done < back).collect();
    let not_writable: Vec<&&Seen> = during
        .iter()
        .filter(|s| !s.writable.contains(&master) && !s.unknown.iter().any(|u| u.starts_with(&master)))
        .collect();
    assert!(
        not_writable.is_empty(),
        "{master} stopped taking writes during the fault: the gate was not what closed the route ({} samples)",
        not_writable.len()
    );
    let closed =
        w.at.iter()
            .filter(|t| **t > at && **t < back)
            .max()
            .map_or(Duration::ZERO, |t| *t - at);
    assert!(
        closed <= fault.bound(),
        "a write through the GLB was acknowledged {} after the fault (bound {})",
        secs(closed),
        secs(fault.bound())
    );
    let reopened = w.at.iter().find(|t| **t > back).map_or(Duration::MAX, |t| *t - back);
    assert_eq!(status_json(lab)["site"]["holder"], old, "the lease left the cloud");
    assert_eq!(sites.writable_now(), vec![master.clone()], "the master changed");
    sites.same_rows_everywhere(pw);
    let lost = sites.lost(pw, &w.acked);
    assert_eq!(lost, 0, "acknowledged writes lost");
    let out = lab.pgha(&["status"]);
    assert_eq!(out.status.code(), Some(0), "status: {}{}", stdout(&out), stderr(&out));
    GateFault {
        fault,
        closed,
        bound: fault.bound(),
        reopened,
        writable_samples: during.len(),
        acked: w.acked.len(),
        lost,
    }
}
