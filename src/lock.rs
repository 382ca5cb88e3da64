//! Locks every changing command takes: one local lock per design (a `flock`
//! on a file next to it) and one cluster lock in etcd (a key bound to a
//! lease, naming the holder). A second run is refused, naming the holder; a
//! crashed holder's flock dies with its process and its lease expires.

use std::fs::OpenOptions;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use crate::components::{etcd, patroni};
use crate::design::Design;
use crate::remote::Remote;

/// The etcd lease's time to live: how long a crashed holder blocks others.
pub(crate) const LEASE_TTL: u64 = 30;
/// How often a live holder renews its lease: three chances per TTL.
const RENEW_EVERY: Duration = Duration::from_secs(LEASE_TTL / 3);

/// Who holds a lock, shown to whoever is refused.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    /// Unix seconds.
    pub since: u64,
}

impl Holder {
    pub fn me(command: &str) -> Holder {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates or truncates.
        let host = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            "?".into()
        };
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            // SAFETY: getuid cannot fail.
            .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }));
        Holder {
            user,
            host,
            pid: std::process::id(),
            command: command.to_string(),
            since: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        write!(
            f,
            "`pgha {}` by {}@{} (pid {}), for {} s",
            self.command,
            self.user,
            self.host,
            self.pid,
            now.saturating_sub(self.since)
        )
    }
}

/// The lock is held by someone else: exit 1, naming them.
#[derive(Debug)]
pub struct Busy {
    pub what: String,
    pub holder: Option<Holder>,
    pub hint: String,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.holder {
            Some(h) => write!(f, "{} is held by {h}", self.what)?,
            None => write!(f, "{} is held by another pgha", self.what)?,
        }
        write!(f, "\n  hint: {}", self.hint)
    }
}

impl std::error::Error for Busy {}

/// A `flock` on `.<design file name>.lock` beside the design (a symlinked
/// design locks beside its target), released when dropped or when the
/// process dies.
pub struct LocalLock {
    _file: std::fs::File,
    pub path: PathBuf,
}

pub fn local_path(design: &Path) -> PathBuf {
    let real = std::fs::canonicalize(design).unwrap_or_else(|_| design.to_path_buf());
    let name = real.file_name().and_then(|n| n.to_str()).unwrap_or("pgha.yaml");
    real.with_file_name(format!(".{name}.lock"))
}

impl LocalLock {
    pub fn acquire(design: &Path, holder: &Holder) -> anyhow::Result<LocalLock> {
        let path = local_path(design);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        // A process another thread is starting holds a copy of this
        // descriptor, and with it the lock of a run that just ended, until
        // it execs: a few tries over 0.2 s tell that from a real holder
        // (seen: a unit test resuming a killed command refused by itself).
        // A blocking wait, once per command and only while the lock is taken.
        // SAFETY: a valid open descriptor.
        let take = || unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        let mut taken = take();
        for _ in 0..20 {
            if taken {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            taken = take();
        }
        if !taken {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            bail!(Busy {
                what: format!("the design {}", design.display()),
                holder: serde_json::from_str(text.trim()).ok(),
                hint: "wait for it to finish; a crashed pgha releases this lock when its process ends".into(),
            });
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", serde_json::to_string(holder)?)?;
        Ok(LocalLock { _file: file, path })
    }
}

/// The cluster lock's key, under Patroni's namespace for the cluster.
pub fn cluster_key(d: &Design) -> String {
    format!("{}{}/pgha-lock", patroni::NAMESPACE, d.platform.name)
}

/// A lease-bound key in one cloud's etcd, renewed in the background.
pub struct ClusterLock {
    remote: Remote,
    client_port: u16,
    lease: String,
    pub cloud: String,
    renew: tokio::task::JoinHandle<()>,
    /// Until when the lease is surely alive: when the last renewal that
    /// etcd confirmed was sent, plus the TTL.
    valid_until: Validity,
}

/// How long before its lease could lapse a lock counts as lost.
const MARGIN: Duration = Duration::from_secs(5);

/// Shared between a lock's renewal task and the command's session.
pub(crate) type Validity = std::sync::Arc<std::sync::Mutex<tokio::time::Instant>>;

/// The lease's TTL from `sent`, the moment a grant or renewal was asked for.
fn valid_from(sent: tokio::time::Instant) -> tokio::time::Instant {
    sent + Duration::from_secs(LEASE_TTL)
}

/// The addresses of `cloud`'s hosts other than `host`: the etcd members a
/// keep-alive asks after the local one.
pub(crate) fn peers<'d>(d: &'d Design, cloud: &str, host: &str) -> Vec<&'d str> {
    d.cloud(cloud)
        .map(|c| {
            c.hosts
                .iter()
                .filter(|h| h.name != host)
                .map(|h| h.address.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a keep-alive's answer says etcd renewed the lease.
pub(crate) fn renewed(out: &str) -> bool {
    out.contains("keepalived with TTL(") && !out.contains("TTL(0)")
}

/// Fails once the lock may lapse within [`MARGIN`]: another pgha could then
/// take it, and no change may follow. (A renewal fails now and then, as when
/// an etcd member restarts: retried every second, it costs nothing.)
pub(crate) fn check_valid(valid_until: &Validity, now: tokio::time::Instant) -> anyhow::Result<()> {
    let until = *valid_until.lock().expect("not poisoned");
    if now + MARGIN > until {
        bail!(
            "the cluster lock could not be renewed in etcd for {} s: it may have expired, so this command stops \
             before its next change; run it again (a flip resumes where it stopped)",
            (now + Duration::from_secs(LEASE_TTL))
                .saturating_duration_since(until)
                .as_secs()
        );
    }
    Ok(())
}

/// What the acquire script answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Acquired(String),
    Held(Option<Holder>),
}

pub(crate) fn parse_answer(out: &str) -> anyhow::Result<Answer> {
    let line = out
        .lines()
        .find(|l| l.starts_with("acquired ") || l.starts_with("held"));
    match line {
        Some(l) if l.starts_with("acquired ") => {
            let id = l["acquired ".len()..].trim();
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("etcd granted no usable lease: {l:?}");
            }
            Ok(Answer::Acquired(id.to_string()))
        }
        Some(l) => {
            let json = l.strip_prefix("held").unwrap_or_default().trim();
            Ok(Answer::Held(serde_json::from_str(json).ok()))
        }
        None => bail!("unexpected answer from etcd: {:?}", out.trim()),
    }
}

impl ClusterLock {
    /// Takes the lock in the etcd of `cloud`, through `remote` (a host of it).
    pub async fn acquire(d: &Design, cloud: &str, remote: &Remote, holder: &Holder) -> anyhow::Result<ClusterLock> {
        let port = d.etcd.client_port;
        let value = crate::remote::base64(serde_json::to_string(holder)?.as_bytes()).replace('\n', "");
        let script = etcd::lock_acquire_script(port, &cluster_key(d), &value, LEASE_TTL);
        let sent = tokio::time::Instant::now();
        let out = remote.check("taking the cluster lock in etcd", &script).await?;
        match parse_answer(&out)? {
            Answer::Held(h) => bail!(Busy {
                what: format!("the cluster {} (lock in {cloud}'s etcd)", d.platform.name),
                holder: h,
                hint: format!("wait for it to finish; a crashed holder's lock expires within {LEASE_TTL} s"),
            }),
            Answer::Acquired(lease) => {
                let valid_until: Validity = std::sync::Arc::new(std::sync::Mutex::new(valid_from(sent)));
                let script = etcd::lease_keepalive_script(port, &lease, &peers(d, cloud, &remote.name));
                let (r, v) = (remote.clone(), valid_until.clone());
                let renew = tokio::spawn(async move {
                    let mut wait = RENEW_EVERY;
                    loop {
                        tokio::time::sleep(wait).await;
                        let sent = tokio::time::Instant::now();
                        // A failed renewal is not ignored: it is tried again
                        // within a second, and while none succeeds the lock's
                        // validity stops moving (the command's next step stops
                        // before the lease can lapse).
                        let out = r.run_within(&script, None, RENEW_EVERY).await;
                        wait = if out.is_ok_and(|o| o.success() && renewed(&o.stdout)) {
                            *v.lock().expect("not poisoned") = valid_from(sent);
                            RENEW_EVERY
                        } else {
                            Duration::from_secs(1)
                        };
                    }
                });
                Ok(ClusterLock {
                    remote: remote.clone(),
                    client_port: port,
                    lease,
                    cloud: cloud.to_string(),
                    renew,
                    valid_until,
                })
            }
        }
    }

    /// Fails once the lock may have lapsed ([`check_valid`]).
    pub(crate) fn ensure_held(&self) -> anyhow::Result<()> {
        check_valid(&self.valid_until, tokio::time::Instant::now())
    }

    /// The host whose etcd holds the lock (its connection is needed to release it).
    pub fn host(&self) -> &str {
        &self.remote.name
    }

    /// Revokes the lease: the key goes with it. (Dropped without this, as
    /// when a command is interrupted, the lease is no longer renewed and
    /// expires.)
    pub async fn release(self) {
        self.renew.abort();
        let _ = self
            .remote
            .run(&etcd::lease_revoke_script(self.client_port, &self.lease))
            .await;
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

/// Takes the cluster lock in the first cloud of `clouds` (in order) that has
/// a connected host whose etcd answers.
pub async fn cluster_in(
    d: &Design,
    clouds: &[&crate::design::Cloud],
    remotes: &std::collections::BTreeMap<String, Remote>,
    holder: &Holder,
) -> anyhow::Result<ClusterLock> {
    let mut last = anyhow!(
        "no host of {} is reachable",
        clouds.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    for cloud in clouds {
        for h in &cloud.hosts {
            let Some(r) = remotes.get(&h.name) else { continue };
            match ClusterLock::acquire(d, &cloud.name, r, holder).await {
                Ok(l) => return Ok(l),
                Err(e) if e.downcast_ref::<Busy>().is_some() => return Err(e),
                Err(e) => last = e,
            }
        }
    }
    Err(last.context("cannot take the cluster lock in etcd"))
}

/// A digest of the design file and the state file as they are now: a
/// command compares it after taking its locks with the one it planned from.
pub fn inputs_digest(d: &Design) -> String {
    let design = std::fs::read(&d.path).unwrap_or_default();
    digest(&crate::fsutil::sha256_hex(&design), d)
}

/// The design's text as hashed (`design_sha256`) with the state file as it is now.
fn digest(design_sha256: &str, d: &Design) -> String {
    let mut all = design_sha256.as_bytes().to_vec();
    all.extend_from_slice(b"\0state\0");
    all.extend_from_slice(&std::fs::read(crate::state::path(d)).unwrap_or_default());
    crate::fsutil::sha256_hex(&all)
}

/// Stops when the design or the state changed since `digest` was taken.
pub fn ensure_unchanged(d: &Design, digest: &str) -> anyhow::Result<()> {
    if inputs_digest(d) != digest {
        bail!(
            "{} or its state file changed while this command was planning (another pgha, or an edit): nothing was \
             changed; run the command again to plan from what they say now",
            d.path.display()
        );
    }
    Ok(())
}

/// What a changing command holds from its start: the local lock, who it is,
/// the digest of the design and state it plans from, and the half-done flip
/// it resumes, if it is that flip run again.
pub struct Session {
    pub holder: Holder,
    digest: String,
    pub(crate) resuming: Option<crate::state::FlipIntent>,
    _local: LocalLock,
}

impl Session {
    /// Takes the local lock for `command` (as the user typed it, after
    /// `pgha`) and refuses while a flip is half-done, unless `flip`
    /// (verb, cloud) is that flip.
    pub fn begin(d: &Design, command: &str, flip: Option<(&str, &str)>) -> anyhow::Result<Session> {
        let holder = Holder::me(command);
        let local = LocalLock::acquire(&d.path, &holder)?;
        // Read after the lock: what a finished holder wrote is what we plan from.
        let resuming = crate::state::refuse_unfinished_flip(d, flip)?;
        Ok(Session {
            // The design as it was loaded, not as the file is now: an edit
            // between the load and this lock is a change too.
            digest: digest(&d.source_sha256, d),
            holder,
            resuming,
            _local: local,
        })
    }

    /// Takes the cluster lock in the first of `clouds` whose etcd answers.
    pub async fn cluster(
        &self,
        d: &Design,
        clouds: &[&crate::design::Cloud],
        remotes: &std::collections::BTreeMap<String, Remote>,
    ) -> anyhow::Result<ClusterLock> {
        cluster_in(d, clouds, remotes, &self.holder).await
    }

    /// Stops when the design or the state changed since the plan was made.
    pub fn ensure_unchanged(&self, d: &Design) -> anyhow::Result<()> {
        ensure_unchanged(d, &self.digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keep_alive_counts_only_when_etcd_renewed() {
        assert!(renewed("lease 694d7e2a keepalived with TTL(30)\n"));
        assert!(!renewed("lease 694d7e2a expired or revoked.\n"));
        assert!(!renewed("lease 694d7e2a keepalived with TTL(0)\n"));
        assert!(!renewed(""));
    }

    /// Issue 22: renewals that fail are not ignored. Once the lock may lapse
    /// within [`MARGIN`], the command stops before its next change.
    #[tokio::test(start_paused = true)]
    async fn a_lock_whose_renewal_fails_stops_the_next_step() {
        use crate::testkit::{Sim, THREE_CLOUDS};
        for fail in [false, true] {
            let sim = Sim::new(THREE_CLOUDS);
            sim.world().lock_renewals_fail = fail;
            let design = sim.design();
            let fleet = sim.fleet(&design);
            let session = Session::begin(&design, "deploy", None).unwrap();
            let clouds: Vec<&crate::design::Cloud> = design.primary_clouds().collect();
            let lock = session.cluster(&design, &clouds, &fleet.remotes).await.unwrap();
            lock.ensure_held().unwrap();
            tokio::time::sleep(Duration::from_secs(LEASE_TTL * 3)).await;
            match (fail, lock.ensure_held()) {
                (false, Ok(())) => {}
                (true, Err(e)) => assert!(e.to_string().contains("could not be renewed"), "{e}"),
                (_, other) => panic!("renewals failing: {fail}: {other:?}"),
            }
            drop(session);
            lock.release().await;
        }
    }

    #[test]
    fn a_design_edited_between_load_and_lock_is_a_change() {
        use crate::testkit::THREE_CLOUDS;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgha.yaml");
        std::fs::write(&path, THREE_CLOUDS).unwrap();
        let load = || {
            crate::design::load_mode(&path, crate::design::Mode::AllowNoPrimary)
                .unwrap()
                .design
        };
        let d = load();
        let s = Session::begin(&d, "deploy", None).unwrap();
        s.ensure_unchanged(&d).unwrap();
        drop(s);
        // Edited after the load, before the lock.
        std::fs::write(&path, THREE_CLOUDS.replace("10.0.3.3", "10.0.3.4")).unwrap();
        let s = Session::begin(&d, "deploy", None).unwrap();
        let e = s.ensure_unchanged(&d).unwrap_err().to_string();
        assert!(e.contains("changed while this command was planning"), "{e}");
        drop(s);
        let d = load();
        Session::begin(&d, "deploy", None)
            .unwrap()
            .ensure_unchanged(&d)
            .unwrap();
    }

    #[test]
    fn a_second_local_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let design = dir.path().join("pgha.yaml");
        std::fs::write(&design, "x").unwrap();
        let first = LocalLock::acquire(&design, &Holder::me("deploy")).unwrap();
        // flock is per open file description: a second open in this process conflicts too.
        let e = LocalLock::acquire(&design, &Holder::me("cloud make-primary dc2"))
            .err()
            .unwrap();
        let busy = e.downcast_ref::<Busy>().expect("a Busy error");
        assert_eq!(busy.holder.as_ref().unwrap().command, "deploy");
        assert!(e.to_string().contains("`pgha deploy` by"), "{e}");
        drop(first);
        LocalLock::acquire(&design, &Holder::me("deploy")).unwrap();
    }

    #[test]
    fn a_symlinked_design_is_locked_beside_its_target() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("real.yaml"), "x").unwrap();
        std::os::unix::fs::symlink("real.yaml", dir.path().join("link.yaml")).unwrap();
        assert_eq!(
            local_path(&dir.path().join("link.yaml")),
            std::fs::canonicalize(dir.path()).unwrap().join(".real.yaml.lock")
        );
    }

    #[test]
    fn etcd_answers_are_parsed() {
        assert_eq!(
            parse_answer("acquired 694da21952c6e405\n").unwrap(),
            Answer::Acquired("694da21952c6e405".into())
        );
        let h = Holder::me("deploy");
        let held = format!("held {}\n", serde_json::to_string(&h).unwrap());
        assert_eq!(parse_answer(&held).unwrap(), Answer::Held(Some(h)));
        assert_eq!(parse_answer("held \n").unwrap(), Answer::Held(None));
        assert!(parse_answer("acquired ;rm\n").is_err());
        assert!(parse_answer("Error: context deadline exceeded").is_err());
    }
}
