//! One small abstraction over SSH: connect once per host (multiplexed), run
//! scripts, install files. Host keys are always checked strictly.
//!
//! Scripts and file contents travel on stdin, never in the remote argv, so
//! passwords never show up in `ps` on the host.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures::future::BoxFuture;
use openssh::{KnownHosts, SessionBuilder, Stdio};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::components::FileSpec;
use crate::design::{Host, Ssh};
use crate::render::RenderedFile;
use crate::shell::{last_lines, quote};

/// sshd allows 10 sessions per connection by default; stay under it.
const MAX_SESSIONS_PER_HOST: usize = 8;

pub use crate::shell::{base64, base64_decode};
pub use crate::wait::{DEFAULT_DEADLINE, LONG_DEADLINE};

/// A remote call that did not end within its deadline. The remote command
/// may still run; what it did is not known.
#[derive(Debug)]
pub struct TimedOut {
    pub host: String,
    pub limit: Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: no answer within {} s; the call was abandoned and what it did is not known",
            self.host,
            self.limit.as_secs()
        )
    }
}

impl std::error::Error for TimedOut {}

/// The host seam: everything pgha does to a host is a shell script, with
/// optional input bytes. SSH is the real transport; tests script fakes.
pub trait Transport: Send + Sync {
    /// Runs `script` with `sh`; when `input` is given, the script reads it
    /// from the file `$PGHA_INPUT` (private, removed afterwards).
    fn run<'a>(&'a self, script: &'a str, input: Option<&'a [u8]>) -> BoxFuture<'a, anyhow::Result<Output>>;
    /// Ends the connection once nothing else uses it.
    fn close(self: Arc<Self>) -> BoxFuture<'static, ()>;
}

/// A connected host.
#[derive(Clone)]
pub struct Remote {
    pub name: String,
    pub address: String,
    transport: Arc<dyn Transport>,
}

/// What a remote command left behind.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// Why a connection failed, in the user's terms.
#[derive(Debug)]
pub struct ConnectError {
    pub host: String,
    pub address: String,
    pub reason: String,
    pub hint: String,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): cannot connect over SSH: {}\n  hint: {}",
            self.host, self.address, self.reason, self.hint
        )
    }
}

impl std::error::Error for ConnectError {}

/// One multiplexed SSH connection (a control master) to a host.
struct SshTransport {
    name: String,
    session: openssh::Session,
    slots: Semaphore,
    /// Not logged in as root: every script runs under `sudo -n`.
    sudo: bool,
}

impl Transport for SshTransport {
    fn run<'a>(&'a self, script: &'a str, input: Option<&'a [u8]>) -> BoxFuture<'a, anyhow::Result<Output>> {
        Box::pin(self.run_ssh(script, input))
    }

    fn close(self: Arc<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Ok(t) = Arc::try_unwrap(self) {
                let _ = t.session.close().await;
            }
        })
    }
}

impl SshTransport {
    async fn run_ssh(&self, script: &str, input: Option<&[u8]>) -> anyhow::Result<Output> {
        let _slot = self.slots.acquire().await.expect("semaphore is never closed");
        let full = with_input(script, input);
        let (program, args) = shell_command(self.sudo);
        let mut child = self
            .session
            .command(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .await
            .with_context(|| format!("{}: cannot start a remote shell", self.name))?;
        let mut stdin = child.stdin().take().expect("stdin is piped");
        stdin
            .write_all(full.as_bytes())
            .await
            .with_context(|| format!("{}: cannot send the script", self.name))?;
        stdin.shutdown().await.ok();
        drop(stdin);
        let out = child
            .wait_with_output()
            .await
            .with_context(|| format!("{}: the SSH connection failed", self.name))?;
        Ok(Output {
            status: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// The remote command that reads a script on stdin: `sh -s`, through
/// `sudo -n` (never a password prompt) for a user other than root.
pub fn shell_command(sudo: bool) -> (&'static str, &'static [&'static str]) {
    if sudo {
        ("sudo", &["-n", "sh", "-s"])
    } else {
        ("sh", &["-s"])
    }
}

/// Whether `user` reaches root through sudo.
fn needs_sudo(user: &str) -> bool {
    user != "root"
}

/// The script `sh -s` receives: `input`, if any, as a base64 here-document
/// into `$PGHA_INPUT` (binary-safe, never in argv), then `script`.
pub fn with_input(script: &str, input: Option<&[u8]>) -> String {
    match input {
        None => script.to_string(),
        Some(data) => format!(
            "set -e\numask 077\nPGHA_INPUT=$(mktemp)\ntrap 'rm -f \"$PGHA_INPUT\"' EXIT\nbase64 -d > \"$PGHA_INPUT\" <<'PGHA_EOF'\n{}\nPGHA_EOF\nset +e\n{script}\n",
            base64(data)
        ),
    }
}

/// This process's directory of SSH control sockets (0700, under the
/// temporary directory). Every master pgha starts names its socket there,
/// so the ones a cancelled connection left running can be found and ended.
static CONTROL_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

fn control_dir() -> &'static Path {
    CONTROL_DIR.get_or_init(|| {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("pgha-ssh-{}", std::process::id()));
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        dir
    })
}

/// Ends every SSH master this process started that is still running (a
/// connection cancelled by Ctrl-C while its master was starting has no
/// session to close it), then removes the control directory. Masters name
/// their socket in it on their command line. Bounded: one `pkill`.
pub fn end_leftover_masters() {
    // Nothing to end in a run that never connected.
    let Some(dir) = CONTROL_DIR.get().filter(|d| d.exists()) else {
        return;
    };
    let _ = std::process::Command::new("pkill")
        .args(["-TERM", "-f", &format!("{}/", dir.display())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(dir);
}

impl Remote {
    pub async fn connect(host: &Host, timeout: Duration) -> Result<Remote, ConnectError> {
        let ssh = &host.ssh;
        let mut b = SessionBuilder::default();
        b.control_directory(control_dir());
        b.user(ssh.user.clone())
            .port(ssh.port)
            .known_hosts_check(KnownHosts::Strict)
            .connect_timeout(timeout)
            .server_alive_interval(Duration::from_secs(5));
        if let Some(key) = &ssh.identity_file {
            b.keyfile(key);
        }
        if let Some(kh) = &ssh.known_hosts {
            b.user_known_hosts_file(kh);
        }
        let session = b.connect(&host.address).await.map_err(|e| explain(host, ssh, e))?;
        let sudo = needs_sudo(&ssh.user);
        if sudo {
            // Before anything changes: a user without passwordless sudo stops
            // the run here, naming the host.
            let ok = session
                .command("sudo")
                .args(["-n", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = session.close().await;
                return Err(ConnectError {
                    host: host.name.clone(),
                    address: host.address.clone(),
                    reason: format!(
                        "user {} cannot run commands as root with `sudo -n` (no passwordless sudo)",
                        ssh.user
                    ),
                    hint: format!(
                        "pgha runs every command as root through sudo: give {u} passwordless sudo on the host \
                         (for example `{u} ALL=(ALL:ALL) NOPASSWD: ALL` in /etc/sudoers.d/pgha), or log in as root",
                        u = ssh.user
                    ),
                });
            }
        }
        let transport = SshTransport {
            name: host.name.clone(),
            session,
            slots: Semaphore::new(MAX_SESSIONS_PER_HOST),
            sudo,
        };
        Ok(Remote::over(&host.name, &host.address, Arc::new(transport)))
    }

    /// A host reached through `transport` (SSH, or a test's fake).
    pub fn over(name: &str, address: &str, transport: Arc<dyn Transport>) -> Remote {
        Remote {
            name: name.to_string(),
            address: address.to_string(),
            transport,
        }
    }

    /// Runs a shell script, given on stdin to `sh -s`, within [`DEFAULT_DEADLINE`].
    pub async fn run(&self, script: &str) -> anyhow::Result<Output> {
        self.run_within(script, None, DEFAULT_DEADLINE).await
    }

    /// Runs `script`; when `input` is given, the script reads it from the
    /// file `$PGHA_INPUT` (a private temporary file, removed afterwards).
    pub async fn run_with_input(&self, script: &str, input: Option<&[u8]>) -> anyhow::Result<Output> {
        self.run_within(script, input, DEFAULT_DEADLINE).await
    }

    /// Runs `script` (with `input`, as [`Remote::run_with_input`]) and fails
    /// with [`TimedOut`] when it has not ended within `limit`.
    pub async fn run_within(&self, script: &str, input: Option<&[u8]>, limit: Duration) -> anyhow::Result<Output> {
        match tokio::time::timeout(limit, self.transport.run(script, input)).await {
            Ok(out) => out,
            Err(_) => Err(TimedOut {
                host: self.name.clone(),
                limit,
            }
            .into()),
        }
    }

    /// Runs `script` and fails, naming the host and quoting stderr, unless it exits 0.
    pub async fn check(&self, what: &str, script: &str) -> anyhow::Result<String> {
        self.check_within(what, script, DEFAULT_DEADLINE).await
    }

    /// [`Remote::check`] with its own deadline.
    pub async fn check_within(&self, what: &str, script: &str, limit: Duration) -> anyhow::Result<String> {
        let out = self.run_for(what, script, limit).await?;
        self.succeeded(out, what)
    }

    /// One run of `script` within `limit`, an error saying `what` it was.
    async fn run_for(&self, what: &str, script: &str, limit: Duration) -> anyhow::Result<Output> {
        self.run_within(script, None, limit)
            .await
            .with_context(|| what.to_string())
    }

    /// As [`Remote::check_within`], running `script` once more when its
    /// first run exits `again` (a failure that a second run outlives).
    pub async fn check_within_again_on(
        &self,
        what: &str,
        script: &str,
        limit: Duration,
        again: i32,
    ) -> anyhow::Result<String> {
        let mut out = self.run_for(what, script, limit).await?;
        if out.status == Some(again) {
            out = self.run_for(what, script, limit).await?;
        }
        self.succeeded(out, what)
    }

    /// The output of a command that exited 0, else an error naming the host
    /// and quoting the end of stderr.
    fn succeeded(&self, out: Output, what: &str) -> anyhow::Result<String> {
        if !out.success() {
            bail!(
                "{}: {what} failed (exit {:?}): {}",
                self.name,
                out.status,
                last_lines(&out.stderr, 8)
            );
        }
        Ok(out.stdout)
    }

    /// Installs `content` at the spec's path atomically (temp file + rename
    /// in the same directory), owner, group and mode set and the file
    /// checked (when the spec has a check) before the rename.
    pub async fn install_file(&self, file: &RenderedFile) -> anyhow::Result<()> {
        let out = self
            .run_with_input(&install_script(&file.spec), Some(file.content.as_bytes()))
            .await?;
        self.succeeded(out, &format!("writing {}", file.spec.path)).map(|_| ())
    }

    /// Installs the file as [`Remote::install_file`] and then runs `then`
    /// (a reload), both only when the host's file differs: one round trip,
    /// and no reload for nothing. Whether it differed.
    pub async fn install_if_changed(&self, file: &RenderedFile, then: &str) -> anyhow::Result<bool> {
        let out = self
            .run_with_input(
                &install_if_changed_script(&file.spec, then),
                Some(file.content.as_bytes()),
            )
            .await?;
        let out = self.succeeded(out, &format!("writing {}", file.spec.path))?;
        Ok(out.lines().any(|l| l == CHANGED))
    }

    pub async fn close(self) {
        self.transport.close().await;
    }
}

/// The shell that installs `$PGHA_INPUT` per `spec`. Pure, so it is tested as a string.
pub fn install_script(spec: &FileSpec) -> String {
    install_path_script(spec.path, spec.owner, spec.group, spec.mode, spec.check)
}

/// [`install_script`] for a path no spec names (files made at run time).
pub fn install_path_script(path: &str, owner: &str, group: &str, mode: u32, check: Option<&str>) -> String {
    // A new directory is made world-traversable whatever the SSH session's
    // umask: services run as their own users (Patroni's fence as postgres).
    let dir = Path::new(path).parent().map_or("/".into(), |d| d.display().to_string());
    let (qdir, qpath) = (quote(&dir), quote(path));
    let template = quote(&format!("{dir}/.pgha.XXXXXX"));
    let owner = quote(&format!("{owner}:{group}"));
    // The check command is a constant of the spec, written as shell.
    let check = check
        .map(|c| format!("{c} \"$tmp\" || {{ rm -f \"$tmp\"; echo 'the new file was rejected; the old one stays' >&2; exit 1; }}\n"))
        .unwrap_or_default();
    format!(
        "set -e\n[ -d {qdir} ] || install -d -m 755 {qdir}\ntmp=$(mktemp {template})\ncat \"$PGHA_INPUT\" > \"$tmp\"\nchown {owner} \"$tmp\"\nchmod {mode:o} \"$tmp\"\n{check}mv -f \"$tmp\" {qpath}\n"
    )
}

/// What [`install_if_changed_script`] prints when it wrote the file.
const CHANGED: &str = "pgha: changed";

/// [`install_script`] and `then`, unless the file already has the content.
pub fn install_if_changed_script(spec: &FileSpec, then: &str) -> String {
    format!(
        "if cmp -s \"$PGHA_INPUT\" {}; then exit 0; fi\n{}echo '{CHANGED}'\n{then}\n",
        quote(spec.path),
        install_script(spec)
    )
}

/// Sets a managed file's owner, group and mode (its content is right).
pub fn file_mode_script(spec: &FileSpec) -> String {
    spec.mode_script()
}

fn explain(host: &Host, ssh: &Ssh, err: openssh::Error) -> ConnectError {
    let detail = std::error::Error::source(&err)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let text = format!("{err}: {detail}");
    let known_hosts = ssh
        .known_hosts
        .as_ref()
        .map_or("~/.ssh/known_hosts".to_string(), |p| p.display().to_string());
    let (reason, hint) = if text.contains("Host key verification failed")
        || text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || text.contains("No ED25519 host key is known")
        || text.contains("host key")
    {
        (
            "the host key is unknown or does not match known_hosts".to_string(),
            format!(
                "verify the host's key out of band, then add it: ssh-keyscan -t ed25519 {} >> {known_hosts}",
                host.address
            ),
        )
    } else if text.contains("Permission denied") {
        (
            "authentication refused".to_string(),
            format!("check ssh.user ({}) and ssh.identity_file in the design", ssh.user),
        )
    } else if text.contains("timed out")
        || text.contains("No route")
        || text.contains("Connection refused")
        || text.contains("unreachable")
    {
        (
            format!("unreachable ({})", detail.trim()),
            "check that the host is up and port 22 (ssh.port) is reachable; limit the run with --cloud to skip a lost cloud".to_string(),
        )
    } else {
        (
            text.trim().to_string(),
            "run `ssh` to this host by hand to see more".to_string(),
        )
    };
    ConnectError {
        host: host.name.clone(),
        address: host.address.clone(),
        reason,
        hint,
    }
}

/// Connects to many hosts at once; reports every host that failed.
pub async fn connect_all(hosts: &[Host], timeout: Duration) -> (Vec<Remote>, Vec<ConnectError>) {
    let mut set = tokio::task::JoinSet::new();
    for (i, h) in hosts.iter().cloned().enumerate() {
        set.spawn(async move { (i, Remote::connect(&h, timeout).await) });
    }
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    while let Some(res) = set.join_next().await {
        match res.expect("connect task does not panic") {
            (i, Ok(r)) => ok.push((i, r)),
            (i, Err(e)) => failed.push((i, e)),
        }
    }
    ok.sort_by_key(|(i, _)| *i);
    failed.sort_by_key(|(i, _)| *i);
    (
        ok.into_iter().map(|(_, r)| r).collect(),
        failed.into_iter().map(|(_, e)| e).collect(),
    )
}

/// Closes connections all at once (each waits for its master to exit).
pub async fn close_all(remotes: impl IntoIterator<Item = Remote>) {
    futures::future::join_all(remotes.into_iter().map(Remote::close)).await;
}

pub fn connect_errors(errors: Vec<ConnectError>) -> anyhow::Error {
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    anyhow!(
        "{} host(s) unreachable, nothing was changed:\n{}",
        errors.len(),
        text.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_run_comes_only_after_the_named_exit() {
        /// Exits with each of its codes in turn, counting runs.
        struct Codes(std::sync::Mutex<Vec<i32>>, std::sync::atomic::AtomicUsize);
        impl Transport for Codes {
            fn run<'a>(&'a self, _: &'a str, _: Option<&'a [u8]>) -> BoxFuture<'a, anyhow::Result<Output>> {
                self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let code = self.0.lock().unwrap().remove(0);
                Box::pin(async move {
                    Ok(Output {
                        status: Some(code),
                        stdout: String::new(),
                        stderr: format!("exit {code}"),
                    })
                })
            }
            fn close(self: Arc<Self>) -> BoxFuture<'static, ()> {
                Box::pin(async {})
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let run = |codes: Vec<i32>| {
            let t = Arc::new(Codes(std::sync::Mutex::new(codes), Default::default()));
            let r = Remote::over("h", "10.0.0.1", t.clone());
            let ok = rt
                .block_on(r.check_within_again_on("x", "true", Duration::from_secs(5), 82))
                .is_ok();
            (ok, t.1.load(std::sync::atomic::Ordering::SeqCst))
        };
        assert_eq!(run(vec![0]), (true, 1));
        assert_eq!(run(vec![82, 0]), (true, 2));
        assert_eq!(run(vec![82, 82]), (false, 2));
        assert_eq!(run(vec![1, 0]), (false, 1));
    }

    #[test]
    fn base64_matches_the_reference() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        let long = base64(&[0u8; 100]);
        assert!(long.lines().all(|l| l.len() <= 76));
        for data in [&b""[..], b"f", b"fo", b"foo", b"foobar", &[0u8; 100], &[255u8; 7]] {
            assert_eq!(base64_decode(&base64(data)).as_deref(), Some(data));
        }
        assert_eq!(base64_decode("not base64!"), None);
    }

    #[test]
    fn only_root_runs_without_sudo() {
        assert_eq!(shell_command(needs_sudo("root")), ("sh", &["-s"][..]));
        assert_eq!(shell_command(needs_sudo("deploy")), ("sudo", &["-n", "sh", "-s"][..]));
    }

    #[test]
    fn a_file_with_the_same_content_is_neither_written_nor_reloaded() {
        let s = install_if_changed_script(&crate::components::glb::CONFIG, "systemctl reload haproxy");
        let (compare, rest) = s.split_once('\n').unwrap();
        assert_eq!(
            compare,
            "if cmp -s \"$PGHA_INPUT\" /etc/haproxy/haproxy.cfg; then exit 0; fi"
        );
        let install = install_script(&crate::components::glb::CONFIG);
        assert_eq!(rest, format!("{install}echo '{CHANGED}'\nsystemctl reload haproxy\n"));
    }

    #[test]
    fn install_script_is_atomic_and_exact() {
        assert_eq!(
            install_script(&crate::components::patroni::CONFIG),
            "set -e\n[ -d /etc/patroni ] || install -d -m 755 /etc/patroni\ntmp=$(mktemp /etc/patroni/.pgha.XXXXXX)\ncat \"$PGHA_INPUT\" > \"$tmp\"\nchown postgres:postgres \"$tmp\"\nchmod 600 \"$tmp\"\nmv -f \"$tmp\" /etc/patroni/config.yml\n"
        );
    }

    #[test]
    fn file_mode_script_is_exact() {
        assert_eq!(
            file_mode_script(&crate::components::patroni::CONFIG),
            "chown postgres:postgres /etc/patroni/config.yml && chmod 600 /etc/patroni/config.yml"
        );
    }

    #[test]
    fn checked_files_are_checked_before_the_rename() {
        let s = install_script(&crate::components::haproxy::CONFIG);
        let check = s.find("haproxy -c -q -f \"$tmp\"").expect("checked");
        assert!(check < s.find("mv -f").unwrap());
    }
}
