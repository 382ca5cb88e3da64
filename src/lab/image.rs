//! The lab's host image: Debian's packages via debootstrap, imported into
//! Docker (no registry is reachable). The tag is keyed on the inputs, so a
//! changed recipe builds a new image and an unchanged one is reused.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use super::docker::docker;
use crate::components::packages;
use crate::release::{self, Release};

/// Bump when the build steps change in a way the package list does not show.
const RECIPE: &str = "pgha-lab-image-2";
const BASE_PACKAGES: [&str; 9] = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "sudo",
    "iproute2",
    "procps",
    "ca-certificates",
    "python3",
];

/// What the Debian 13 image with both servers installs after its release
/// upgrade: the new server, and rsync (`pgha upgrade postgres` copies what
/// pg_upgrade changed to the standbys with it).
const UPGRADE_ADDS: [&str; 2] = ["postgresql-17", "rsync"];

/// Debian's Prometheus and Alertmanager, for the lab's monitoring host.
const MONITOR_PACKAGES: [&str; 2] = ["prometheus", "prometheus-alertmanager"];

/// Baked: the HA stack pre-installed. Bare: a plain VM, deploy installs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    Baked,
    Bare,
}

/// The Debian release of the lab's hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Debian13,
    Debian12,
    /// Debian 13 with PostgreSQL 15 beside 17: the Debian 12 image moved
    /// to Debian 13 by a release upgrade, as a host `pgha upgrade release`
    /// moved is; its labs run 15 until `pgha upgrade postgres 17`.
    #[value(name = "debian13-pg15")]
    #[serde(rename = "debian13-pg15")]
    Debian13Pg15,
}

impl Os {
    pub(crate) fn release(self) -> Release {
        match self {
            Os::Debian13 | Os::Debian13Pg15 => release::DEBIAN13,
            Os::Debian12 => release::DEBIAN12,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Os::Debian13 => "debian13",
            Os::Debian12 => "debian12",
            Os::Debian13Pg15 => "debian13-pg15",
        }
    }

    /// The PostgreSQL major its labs run: the old one where it has two.
    pub(crate) fn postgres(self) -> u32 {
        match self {
            Os::Debian13Pg15 => release::DEBIAN12.postgres,
            _ => self.release().postgres,
        }
    }
}

impl Variant {
    pub fn packages(self, os: Os) -> Vec<String> {
        let mut p: Vec<String> = BASE_PACKAGES.iter().map(|s| s.to_string()).collect();
        if os == Os::Debian13Pg15 {
            // The Debian 12 image's, then what its release upgrade adds.
            p = Variant::Baked.packages(Os::Debian12);
            p.extend(UPGRADE_ADDS.map(String::from));
            return p;
        }
        if self == Variant::Baked {
            p.extend(packages::db_host(os.release().postgres));
            // Labs have backups unless `--no-backup`: their hosts need it.
            p.push(packages::BACKUP.to_string());
            // And the metrics exporter, on unless the design turns it off.
            p.push(crate::components::exporter::PACKAGE.to_string());
            p.push(crate::components::exporter::NODE_PACKAGE.to_string());
            // PgBouncer, which designs turn on (the reference release's
            // image only: the others' tests leave it off).
            if os == Os::Debian13 {
                p.push(crate::components::pgbouncer::PACKAGE.to_string());
                p.push(crate::components::vip::PACKAGE.to_string());
                // The monitoring host's (`lab up --monitor`).
                p.extend(MONITOR_PACKAGES.map(String::from));
            }
        }
        p
    }

    pub fn tag(self, os: Os) -> String {
        let mut h = Sha256::new();
        h.update(RECIPE);
        h.update(os.release().codename);
        h.update(self.packages(os).join(","));
        let digest = h.finalize();
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        let name = match self {
            Variant::Baked => "baked",
            Variant::Bare => "bare",
        };
        format!("pgha-lab/host:{}-{name}-{hex}", os.as_str())
    }
}

/// The tag of an image for `variant`, building it first when missing.
pub(crate) async fn ensure(os: Os, variant: Variant, say: &dyn Fn(&str)) -> anyhow::Result<String> {
    let tag = variant.tag(os);
    if docker(&["image", "inspect", "-f", "{{.Id}}", &tag]).await.is_ok() {
        return Ok(tag);
    }
    // Two pgha processes must not debootstrap into the same place.
    let _lock = lock(&format!("/var/tmp/{}.lock", tag.replace([':', '/'], "-")))?;
    if docker(&["image", "inspect", "-f", "{{.Id}}", &tag]).await.is_ok() {
        return Ok(tag);
    }
    let start = std::time::Instant::now();
    if os == Os::Debian13Pg15 {
        let from = Box::pin(ensure(Os::Debian12, Variant::Baked, say)).await?;
        say(&format!(
            "building image {tag} from {from} by a release upgrade (once; a few minutes)"
        ));
        upgrade_image(&from, &tag).await?;
    } else {
        say(&format!(
            "building image {tag} with debootstrap (once; about 2 minutes)"
        ));
        build(os, variant, &tag).await?;
    }
    say(&format!("built {tag} in {:.0} s", start.elapsed().as_secs_f64()));
    Ok(tag)
}

async fn build(os: Os, variant: Variant, tag: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("building the lab image needs root (debootstrap)");
    }
    if which("debootstrap").is_none() {
        bail!("debootstrap is not installed: apt-get install -y debootstrap (or run .ci/setup)");
    }
    let work = PathBuf::from(format!("/var/tmp/{}", tag.replace([':', '/'], "-")));
    require_space(Path::new("/var/tmp"), 2 << 30)?;
    require_space(Path::new("/var/lib/docker"), 2 << 30)?;
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let rootfs = work.join("rootfs");
    let mirror = apt_mirror()?;
    let include = variant.packages(os).join(",");
    let status = tokio::process::Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={include}"),
            os.release().codename,
        ])
        .arg(&rootfs)
        .arg(&mirror)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .context("cannot run debootstrap")?;
    if !status.status.success() {
        let _ = std::fs::remove_dir_all(&work);
        bail!(
            "debootstrap failed: {}\n  hint: see {}/rootfs/debootstrap/debootstrap.log",
            crate::shell::last_lines(&String::from_utf8_lossy(&status.stderr), 5),
            work.display()
        );
    }
    prepare_rootfs(&rootfs)?;
    let script =
        "set -o pipefail; tar -C \"$1\" -c . | docker import -c 'CMD [\"/lib/systemd/systemd\"]' - \"$2\" >/dev/null";
    let out = tokio::process::Command::new("bash")
        .args(["-c", script, "import"])
        .arg(&rootfs)
        .arg(tag)
        .output()
        .await?;
    let _ = std::fs::remove_dir_all(&work);
    if !out.status.success() {
        bail!("docker import failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Moves the Debian 12 image `from` to Debian 13 as `pgha upgrade release`
/// moves a host (sources renamed, services held, a full upgrade keeping
/// files), adds [`UPGRADE_ADDS`], and commits it as `tag`. PostgreSQL 15
/// stays installed: Debian 13 no longer ships it, and apt removes nothing.
async fn upgrade_image(from: &str, tag: &str) -> anyhow::Result<()> {
    let name = format!("pgha-image-build-{}", std::process::id());
    let script = format!(
        "set -e\nexport DEBIAN_FRONTEND=noninteractive\n\
         sed -i 's/bookworm/trixie/g' /etc/apt/sources.list $(find /etc/apt/sources.list.d -type f)\n\
         printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d\n\
         apt-get update -q >/dev/null\n\
         apt-get -y -q -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef full-upgrade >/dev/null\n\
         apt-get install -y -q --no-install-recommends {} >/dev/null\n\
         apt-get clean\nrm -f /usr/sbin/policy-rc.d /etc/ssh/ssh_host_* \
         /etc/systemd/system/multi-user.target.wants/pgbackrest.service \
         /etc/systemd/system/multi-user.target.wants/prometheus-node-exporter.service\n: > /etc/machine-id\n\
         grep -q trixie /etc/os-release\n",
        UPGRADE_ADDS.join(" ")
    );
    let _ = docker(&["rm", "-f", &name]).await;
    let run = docker(&["run", "--name", &name, from, "/bin/bash", "-c", &script]).await;
    let committed = match run {
        Ok(_) => docker(&["commit", "-c", "CMD [\"/lib/systemd/systemd\"]", &name, tag])
            .await
            .map(|_| ()),
        Err(e) => Err(e.context("the release upgrade inside the image failed")),
    };
    let _ = docker(&["rm", "-f", &name]).await;
    committed
}

/// Makes one root filesystem serve many distinct hosts.
fn prepare_rootfs(rootfs: &Path) -> anyhow::Result<()> {
    // Every host gets its own SSH host keys and machine id at first boot.
    for entry in std::fs::read_dir(rootfs.join("etc/ssh"))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
            std::fs::remove_file(entry.path())?;
        }
    }
    std::fs::write(rootfs.join("etc/machine-id"), "")?;
    let dropin = rootfs.join("etc/systemd/system/ssh.service.d");
    std::fs::create_dir_all(&dropin)?;
    std::fs::write(
        dropin.join("pgha-lab-hostkeys.conf"),
        "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n",
    )?;
    // pgBackRest's server waits for pgha's config: not started at boot
    // (deploy enables it where a design has backups).
    // Nor PgBouncer, which would serve its package's sample config, nor
    // vip-manager, which has none, nor the node exporter, which would
    // listen on every address with every collector, nor Prometheus and
    // Alertmanager (the monitoring host's; `lab monitor` starts them).
    for unit in [
        "prometheus.service",
        "prometheus-alertmanager.service",
        "pgbackrest.service",
        "pgbouncer.service",
        "vip-manager.service",
        "prometheus-node-exporter.service",
    ] {
        let _ = std::fs::remove_file(rootfs.join("etc/systemd/system/multi-user.target.wants").join(unit));
    }
    // A lab host is a throwaway container: dpkg need not sync each file it
    // unpacks (the release upgrade's package run took a quarter longer,
    // 46 s against 35 s per host). Never written on a real host.
    let dpkg = rootfs.join("etc/dpkg/dpkg.cfg.d");
    std::fs::create_dir_all(&dpkg)?;
    std::fs::write(dpkg.join("pgha-lab-unsafe-io"), "force-unsafe-io\n")?;
    // Downloaded packages only make the image bigger.
    if let Ok(entries) = std::fs::read_dir(rootfs.join("var/cache/apt/archives")) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "deb") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// The Debian mirror this machine's apt already uses; never a hard-coded one.
fn apt_mirror() -> anyhow::Result<String> {
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources") {
        if let Some(uri) = text.lines().find_map(|l| l.strip_prefix("URIs:")) {
            if let Some(first) = uri.split_whitespace().next() {
                return Ok(first.to_string());
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        for line in text.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.first() == Some(&"deb") {
                if let Some(url) = parts.iter().skip(1).find(|p| p.starts_with("http")) {
                    return Ok(url.to_string());
                }
            }
        }
    }
    bail!("cannot find this machine's Debian mirror in /etc/apt/sources.list(.d): the image is built from it")
}

/// An exclusive lock, released when the file is dropped (or the process dies).
fn lock(path: &str) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // SAFETY: flock on a descriptor we own; blocks until the other builder is done.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!("cannot lock {path}: {}", std::io::Error::last_os_error());
    }
    Ok(f)
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

fn require_space(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let probe = if path.exists() { path } else { Path::new("/") };
    let c = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes())?;
    // SAFETY: statvfs writes into the zeroed struct; c is a valid C string.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Ok(()); // cannot tell: let the build speak for itself
    }
    let free = s.f_bavail as u64 * s.f_frsize as u64;
    if free < bytes {
        bail!(
            "not enough disk space on {}: {} MiB free, the lab image needs about {} MiB",
            probe.display(),
            free >> 20,
            bytes >> 20
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_keyed_on_the_package_list() {
        assert!(Variant::Baked
            .packages(Os::Debian13Pg15)
            .iter()
            .any(|p| p == "postgresql-15"));
        assert_ne!(Variant::Baked.tag(Os::Debian13Pg15), Variant::Baked.tag(Os::Debian12));
        for os in [Os::Debian13, Os::Debian12] {
            assert_ne!(Variant::Baked.tag(os), Variant::Bare.tag(os));
            assert_eq!(Variant::Baked.tag(os), Variant::Baked.tag(os));
            assert!(Variant::Baked.packages(os).contains(&"patroni".to_string()));
            assert!(!Variant::Bare.packages(os).contains(&"patroni".to_string()));
        }
        assert_ne!(Variant::Bare.tag(Os::Debian13), Variant::Bare.tag(Os::Debian12));
        assert!(Variant::Baked
            .packages(Os::Debian13)
            .contains(&"postgresql-17".to_string()));
        assert!(Variant::Baked
            .tag(Os::Debian12)
            .starts_with("pgha-lab/host:debian12-baked-"));
    }
}
