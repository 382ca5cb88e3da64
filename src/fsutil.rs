//! Local files pgha reads and writes: only regular files are read, with a
//! size cap, and every write is atomic (a unique temporary file in the same
//! directory, fsync, rename), keeping the file's mode and following a symlink
//! to the file it names.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Caps on what pgha reads: generous for real files, small enough that
/// `-f /dev/zero` or a runaway file cannot eat the machine.
pub(crate) const MAX_DESIGN: u64 = 16 << 20;
pub(crate) const MAX_SMALL: u64 = 1 << 20;

/// Why a file could not be read, in the user's terms.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    NotRegular(&'static str),
    TooLarge(u64),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::NotRegular(kind) => write!(f, "it is {kind}, not a regular file"),
            ReadError::TooLarge(cap) => write!(f, "it is larger than {} KiB", cap / 1024),
        }
    }
}

impl std::error::Error for ReadError {}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Checks that `path` (a symlink is followed) is a regular file.
pub(crate) fn check_regular(path: &Path) -> Result<(), ReadError> {
    let meta = std::fs::metadata(path).map_err(ReadError::Io)?;
    if meta.is_file() {
        Ok(())
    } else {
        Err(ReadError::NotRegular(kind(&meta)))
    }
}

/// Reads a regular file of at most `cap` bytes. Opened non-blocking, so a
/// FIFO swapped in after the check cannot hang the read.
pub(crate) fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    check_regular(path)?;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(ReadError::Io)?;
    let meta = f.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind(&meta)));
    }
    let mut buf = Vec::new();
    f.take(cap + 1).read_to_end(&mut buf).map_err(ReadError::Io)?;
    if buf.len() as u64 > cap {
        return Err(ReadError::TooLarge(cap));
    }
    Ok(buf)
}

/// Like [`read_regular`], as UTF-8 text.
pub(crate) fn read_text(path: &Path, cap: u64) -> anyhow::Result<String> {
    let bytes = read_regular(path, cap).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))
}

/// The file a write to `path` must replace: a symlink's target, so that a
/// linked design stays a link.
fn resolve(path: &Path) -> io::Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A new file, or a dangling link: write where the link points.
            match std::fs::read_link(path) {
                Ok(target) => Ok(path.parent().unwrap_or(Path::new(".")).join(target)),
                Err(_) => Ok(path.to_path_buf()),
            }
        }
        Err(e) => Err(e),
    }
}

/// A fresh name next to `target`, created with O_EXCL|O_NOFOLLOW so that a
/// stale file or a planted symlink is never written through.
fn create_temp(target: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    let mut seed = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut seed)?;
    create_temp_from(target, mode, u64::from_le_bytes(seed))
}

/// [`create_temp`] with its random start `seed` given (tests plant files at
/// the names it will try).
fn create_temp_from(target: &Path, mode: u32, seed: u64) -> io::Result<(PathBuf, File)> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("pgha");
    for attempt in 0..16u64 {
        let n = seed.wrapping_add(attempt);
        let tmp = dir.join(format!(".{name}.pgha-{n:016x}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free temporary name"))
}

/// Replaces `path` with `content` atomically. An existing file keeps its
/// mode (and its owner, when pgha may set it); a new one gets `new_mode`.
pub(crate) fn write_atomic(path: &Path, content: &[u8], new_mode: u32) -> anyhow::Result<()> {
    use anyhow::Context;
    let target = resolve(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    let old = std::fs::metadata(&target).ok();
    let mode = old.as_ref().map_or(new_mode, |m| m.permissions().mode() & 0o7777);
    let (tmp, mut f) =
        create_temp(&target, mode).with_context(|| format!("cannot write next to {}", target.display()))?;
    let written = (|| -> io::Result<()> {
        // The umask may have narrowed the mode given to open.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if let Some(m) = &old {
            // Only root may give a file away; anyone keeps their own.
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        }
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", target.display()));
    }
    Ok(())
}

/// The SHA-256 of `content` in lower-case hex, as `sha256sum` prints it.
/// Refuses a file others may read (secrets, private keys), naming the fix.
pub(crate) fn check_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{} is readable by others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

pub(crate) fn sha256_hex(content: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(content).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_only_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 10),
            Err(ReadError::NotRegular("a device"))
        ));
        assert!(matches!(
            read_regular(dir.path(), 10),
            Err(ReadError::NotRegular("a directory"))
        ));
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(read_regular(&fifo, 10), Err(ReadError::NotRegular("a FIFO"))));
        let big = dir.path().join("big");
        std::fs::write(&big, [b'x'; 11]).unwrap();
        assert!(matches!(read_regular(&big, 10), Err(ReadError::TooLarge(10))));
        assert_eq!(read_regular(&big, 11).unwrap().len(), 11);
    }

    #[test]
    fn atomic_writes_keep_the_mode_follow_links_and_leave_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.yaml");
        std::fs::write(&real, "old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink("real.yaml", &link).unwrap();
        write_atomic(&link, b"new", 0o644).unwrap();
        assert!(
            std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(),
            "the link stays a link"
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(std::fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o600);
        let fresh = dir.path().join("fresh");
        write_atomic(&fresh, b"x", 0o600).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn a_planted_symlink_at_a_temp_name_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "safe").unwrap();
        let target = dir.path().join("s.yaml");
        // Symlinks planted at the first two names create_temp tries.
        for n in [7u64, 8] {
            std::os::unix::fs::symlink(&victim, dir.path().join(format!(".s.yaml.pgha-{n:016x}"))).unwrap();
        }
        let (tmp, mut f) = create_temp_from(&target, 0o600, 7).unwrap();
        assert_eq!(tmp, dir.path().join(format!(".s.yaml.pgha-{:016x}", 9)));
        f.write_all(b"secret").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "safe");
        assert!(!std::fs::symlink_metadata(&tmp).unwrap().file_type().is_symlink());
        // Every name taken: an error, never a write through a link.
        let full = tempfile::tempdir().unwrap();
        let t = full.path().join("s.yaml");
        for n in 0..16u64 {
            std::os::unix::fs::symlink(&victim, full.path().join(format!(".s.yaml.pgha-{n:016x}"))).unwrap();
        }
        assert!(create_temp_from(&t, 0o600, 0).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "safe");
    }
}
