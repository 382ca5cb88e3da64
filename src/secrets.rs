//! Passwords: never in the design, never printed. They live in a 0600 YAML
//! file next to the design (generated on first deploy) and may be overridden
//! by environment variables.

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

pub use crate::design::objects::{MONITOR_USER, POOLER_USER, REPLICATION_USER, SUPERUSER};
pub const RESTAPI_USER: &str = "pgha";
pub const STATS_USER: &str = "pgha-stats";
/// Overrides `stats_password`, like [`ENV`] the others.
pub const STATS_ENV: &str = "PGHA_STATS_PASSWORD";
/// Overrides `backup_passphrase`.
pub const BACKUP_ENV: &str = "PGHA_BACKUP_PASSPHRASE";
/// Overrides `monitor_password`.
pub const MONITOR_ENV: &str = "PGHA_MONITOR_PASSWORD";

/// Patroni's user in each cloud's etcd.
pub const ETCD_PATRONI_USER: &str = "patroni";
/// The site agents' user in the site etcd.
pub const ETCD_AGENT_USER: &str = "site-agent";

/// Environment variables that override the file, by field.
pub const ENV: [(&str, &str); 3] = [
    ("superuser_password", "PGHA_SUPERUSER_PASSWORD"),
    ("replication_password", "PGHA_REPLICATION_PASSWORD"),
    ("restapi_password", "PGHA_RESTAPI_PASSWORD"),
];

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    pub superuser_password: String,
    pub replication_password: String,
    pub restapi_password: String,
    /// For HAProxy statistics pages opened beyond loopback. Files written
    /// before it existed lack it: it is generated then.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stats_password: String,
    /// Encrypts the backup repositories (pgBackRest's cipher pass). Files
    /// written before backups existed lack it: it is generated then.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub backup_passphrase: String,
    /// The metrics exporter's PostgreSQL password. Files written before it
    /// existed lack it: it is generated then.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub monitor_password: String,
    /// Patroni's password in its cloud's etcd ([`ETCD_PATRONI_USER`]).
    /// Files written before etcd had users lack it: it is generated then.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etcd_patroni_password: String,
    /// The site agents' password in the site etcd ([`ETCD_AGENT_USER`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etcd_agent_password: String,
    /// The passwords of the design's roles whose source is `secrets`, by
    /// role name: generated at the deploy that first meets the role.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub roles: std::collections::BTreeMap<String, String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

/// What templates see: the secrets plus the fixed user names.
#[derive(Serialize, Clone)]
pub struct TemplateSecrets<'a> {
    pub superuser_password: &'a str,
    pub replication_password: &'a str,
    pub restapi_password: &'a str,
    pub stats_password: &'a str,
    pub backup_passphrase: &'a str,
    pub monitor_password: &'a str,
    pub etcd_patroni_password: &'a str,
    pub etcd_agent_password: &'a str,
    /// PgBouncer's auth_user's, quoted for its userlist (`"` doubled).
    pub pgbouncer_userlist: String,
    pub pgbouncer_user: &'static str,
    pub etcd_patroni_user: &'static str,
    pub etcd_agent_user: &'static str,
    pub monitor_user: &'static str,
    pub replication_user: &'static str,
    pub restapi_user: &'static str,
    pub stats_user: &'static str,
}

impl Secrets {
    /// Stand-ins for `pgha render`, whose files are for reading, not installing.
    pub fn redacted() -> Self {
        let r = || "REDACTED".to_string();
        Secrets {
            superuser_password: r(),
            replication_password: r(),
            restapi_password: r(),
            stats_password: r(),
            backup_passphrase: r(),
            monitor_password: r(),
            etcd_patroni_password: r(),
            etcd_agent_password: r(),
            roles: [(POOLER_USER.to_string(), r())].into(),
        }
    }

    pub fn generate() -> anyhow::Result<Self> {
        Ok(Secrets {
            superuser_password: random_password()?,
            replication_password: random_password()?,
            restapi_password: random_password()?,
            stats_password: random_password()?,
            backup_passphrase: random_password()?,
            monitor_password: random_password()?,
            etcd_patroni_password: random_password()?,
            etcd_agent_password: random_password()?,
            roles: Default::default(),
        })
    }

    /// The password of etcd's gateway user: the site agents' in the site
    /// etcd (`site`), Patroni's in a cloud's.
    pub fn etcd_password(&self, site: bool) -> &str {
        if site {
            &self.etcd_agent_password
        } else {
            &self.etcd_patroni_password
        }
    }

    /// `text` with every secret value replaced by `REDACTED`: for output
    /// pgha shows but did not write itself.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in [
            &self.superuser_password,
            &self.replication_password,
            &self.restapi_password,
            &self.stats_password,
            &self.backup_passphrase,
            &self.monitor_password,
            &self.etcd_patroni_password,
            &self.etcd_agent_password,
        ]
        .into_iter()
        .chain(self.roles.values())
        {
            if !s.is_empty() {
                out = out.replace(s.as_str(), "REDACTED");
            }
        }
        out
    }

    pub fn for_templates(&self) -> TemplateSecrets<'_> {
        TemplateSecrets {
            superuser_password: &self.superuser_password,
            replication_password: &self.replication_password,
            restapi_password: &self.restapi_password,
            stats_password: &self.stats_password,
            backup_passphrase: &self.backup_passphrase,
            monitor_password: &self.monitor_password,
            etcd_patroni_password: &self.etcd_patroni_password,
            etcd_agent_password: &self.etcd_agent_password,
            pgbouncer_userlist: format!(
                "\"{}\" \"{}\"",
                POOLER_USER,
                self.roles
                    .get(POOLER_USER)
                    .map_or("", String::as_str)
                    .replace('"', "\"\"")
            ),
            pgbouncer_user: POOLER_USER,
            etcd_patroni_user: ETCD_PATRONI_USER,
            etcd_agent_user: ETCD_AGENT_USER,
            monitor_user: MONITOR_USER,
            replication_user: REPLICATION_USER,
            restapi_user: RESTAPI_USER,
            stats_user: STATS_USER,
        }
    }

    /// Reads the file (refusing one others can read) and applies the
    /// environment. `Ok(None)` when there is no file and no full environment.
    pub fn load(path: &Path) -> anyhow::Result<Option<Self>> {
        let from_file = match crate::fsutil::read_regular(path, crate::fsutil::MAX_SMALL) {
            Ok(bytes) => {
                crate::fsutil::check_private(path)?;
                Some(parse(path, &bytes)?)
            }
            Err(crate::fsutil::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => bail!("cannot read {}: {e}", path.display()),
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut secrets = match from_file {
            Some(s) => s,
            None => match (env(ENV[0].1), env(ENV[1].1), env(ENV[2].1)) {
                (Some(a), Some(b), Some(c)) => Secrets {
                    superuser_password: a,
                    replication_password: b,
                    restapi_password: c,
                    stats_password: String::new(),
                    backup_passphrase: String::new(),
                    monitor_password: String::new(),
                    etcd_patroni_password: String::new(),
                    etcd_agent_password: String::new(),
                    roles: Default::default(),
                },
                _ => return Ok(None),
            },
        };
        for (slot, (_, var)) in [
            &mut secrets.superuser_password,
            &mut secrets.replication_password,
            &mut secrets.restapi_password,
        ]
        .into_iter()
        .zip(ENV)
        {
            if let Some(v) = env(var) {
                *slot = v;
            }
        }
        if let Some(v) = env(STATS_ENV) {
            secrets.stats_password = v;
        }
        if let Some(v) = env(BACKUP_ENV) {
            secrets.backup_passphrase = v;
        }
        if let Some(v) = env(MONITOR_ENV) {
            secrets.monitor_password = v;
        }
        // Each stands on one line of a config file (pgbackrest.conf takes
        // the passphrase as it is): a control character would add lines.
        for (name, var, value) in [
            ("superuser_password", ENV[0].1, &secrets.superuser_password),
            ("replication_password", ENV[1].1, &secrets.replication_password),
            ("restapi_password", ENV[2].1, &secrets.restapi_password),
            ("stats_password", STATS_ENV, &secrets.stats_password),
            ("backup_passphrase", BACKUP_ENV, &secrets.backup_passphrase),
            ("monitor_password", MONITOR_ENV, &secrets.monitor_password),
        ] {
            if let Some(why) = bad_shape(value) {
                bail!(crate::error::Usage(format!(
                    "{name} (from {} or {var}) {why}: a secret is one line of printable characters",
                    path.display()
                )));
            }
        }
        // They stand unquoted in HAProxy's config and in a libpq connection
        // string; etcdctl reads the etcd ones as one word from its input.
        for (name, var, value) in [
            ("stats_password", STATS_ENV, &secrets.stats_password),
            ("monitor_password", MONITOR_ENV, &secrets.monitor_password),
            ("etcd_patroni_password", "", &secrets.etcd_patroni_password),
            ("etcd_agent_password", "", &secrets.etcd_agent_password),
        ] {
            if !value.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                let or_var = if var.is_empty() {
                    String::new()
                } else {
                    format!(" or {var}")
                };
                bail!(
                    "{name} (from {}{or_var}) may hold only letters, digits and . _ -",
                    path.display()
                );
            }
        }
        Ok(Some(secrets))
    }

    /// Loads the secrets, generating and saving them (0600) when absent.
    pub fn load_or_generate(path: &Path) -> anyhow::Result<Self> {
        if let Some(mut s) = Self::load(path)? {
            // A file from before these secrets existed: add them, once.
            let mut added = false;
            let file = path.exists();
            // Without a file (the environment alone) a generated passphrase
            // would be lost: the deploy refuses instead.
            for (slot, needs_file) in [
                (&mut s.stats_password, false),
                (&mut s.backup_passphrase, true),
                (&mut s.monitor_password, true),
            ] {
                if slot.is_empty() && (file || !needs_file) {
                    *slot = random_password()?;
                    added = true;
                }
            }
            // etcd's users keep their passwords from run to run: without a
            // file they derive from the superuser's (a new one each run
            // would reset them under Patroni and the agents).
            let superuser = s.superuser_password.clone();
            for (slot, label) in [
                (&mut s.etcd_patroni_password, "etcd-patroni"),
                (&mut s.etcd_agent_password, "etcd-site-agent"),
            ] {
                if slot.is_empty() {
                    *slot = if file {
                        added = true;
                        random_password()?
                    } else {
                        derived(&superuser, label)
                    };
                }
            }
            if added && file {
                s.save(path)?;
            }
            return Ok(s);
        }
        let s = Self::generate()?;
        s.save(path)?;
        Ok(s)
    }

    /// Generates a password for each of these roles that has none here;
    /// says whether it added one.
    pub fn add_role_passwords<'a>(&mut self, roles: impl IntoIterator<Item = &'a str>) -> anyhow::Result<bool> {
        let mut added = false;
        for role in roles {
            if !self.roles.contains_key(role) {
                self.roles.insert(role.to_string(), random_password()?);
                added = true;
            }
        }
        Ok(added)
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = format!(
            "# pgha secrets for the design next to this file. Keep it 0600 and out of version control.\n{}",
            crate::design::yaml::to_string(self)?
        );
        // A unique O_EXCL|O_NOFOLLOW temporary file, created 0600: a stale
        // temp file or a planted symlink never receives the passwords.
        crate::fsutil::write_atomic(path, text.as_bytes(), 0o600)
    }
}

/// The file's passwords. A parse error names the line only: serde's message
/// would quote the value, which may be a password.
fn parse(path: &Path, bytes: &[u8]) -> anyhow::Result<Secrets> {
    let text = std::str::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))?;
    crate::design::yaml::from_str(text, true).map_err(|e| {
        let at = format!(" (line {})", e.line);
        anyhow::anyhow!(
            "{}{at} is not a pgha secrets file: it must hold superuser_password, replication_password and \
             restapi_password, each a string, and nothing else",
            path.display()
        )
    })
}

/// 32 characters from [A-Za-z0-9], from the kernel's random source: safe in
/// YAML, libpq connection strings and HAProxy without quoting.
/// 32 hex characters from `secret` and `label`: a password that stays the
/// same while `secret` does.
fn derived(secret: &str, label: &str) -> String {
    crate::fsutil::sha256_hex(format!("pgha {label}\n{secret}").as_bytes())[..32].to_string()
}

fn random_password() -> anyhow::Result<String> {
    use std::io::Read;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    let mut f = std::fs::File::open("/dev/urandom").context("cannot open /dev/urandom")?;
    let mut buf = [0u8; 64];
    while out.len() < 32 {
        f.read_exact(&mut buf)?;
        // Rejection sampling keeps every character equally likely.
        for b in buf {
            if (b as usize) < 248 && out.len() < 32 {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    Ok(out)
}

/// Why a secret's value cannot stand in a config file, never naming it.
fn bad_shape(value: &str) -> Option<&'static str> {
    if value.chars().any(char::is_control) {
        Some("holds a control character (a line break?)")
    } else if value.trim() != value {
        Some("begins or ends with white space")
    } else if value.len() > 1024 {
        Some("is longer than 1024 bytes")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_passwords() {
        let s = Secrets::generate().unwrap();
        assert!(!format!("{s:?}").contains(&s.superuser_password));
        assert_eq!(s.superuser_password.len(), 32);
    }

    /// Without a secrets file, etcd's passwords are the same each run
    /// (a new one would reset the users under Patroni), one per user, and
    /// shaped for etcdctl's input.
    #[test]
    fn etcd_passwords_without_a_file_derive_from_the_superuser_password() {
        let a = derived("s3cret", "etcd-patroni");
        assert_eq!(a, derived("s3cret", "etcd-patroni"));
        assert_ne!(a, derived("s3cret", "etcd-site-agent"));
        assert_ne!(a, derived("other", "etcd-patroni"));
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()) && !a.contains("s3cret"));
    }

    #[test]
    fn saved_file_is_private_and_round_trips() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.secrets.yaml");
        let s = Secrets::load_or_generate(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(Secrets::load(&path).unwrap().unwrap(), s);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Secrets::load(&path).is_err());
    }

    #[test]
    fn a_damaged_secrets_file_is_never_echoed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.secrets.yaml");
        for text in [
            "hunter2-not-yaml: [",
            "superuser_password: [hunter2-not-yaml]\n",
            "hunter2-not-yaml\n",
            "superuser_password: a\nreplication_password: b\nrestapi_password: c\nhunter2: x\n",
        ] {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let e = format!("{:#}", Secrets::load(&path).unwrap_err());
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("not a pgha secrets file"), "{e}");
        }
    }

    #[test]
    fn a_secret_with_a_line_break_never_reaches_a_config_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.secrets.yaml");
        let good = "superuser_password: a\nreplication_password: b\nrestapi_password: c\n";
        for extra in [
            "backup_passphrase: \"abc\\nrepo1-path=/tmp/evil\"\n",
            "backup_passphrase: \" padded-evil \"\n",
            "monitor_password: \"x\\revil\"\n",
        ] {
            std::fs::write(&path, format!("{good}{extra}")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let e = format!("{:#}", Secrets::load(&path).unwrap_err());
            assert!(!e.contains("evil"), "{e}");
            assert!(e.contains("a secret is one line of printable characters"), "{e}");
        }
        assert_eq!(bad_shape("correct horse battery staple"), None);
        assert!(bad_shape("abc\nrepo1-path=/tmp/evil").is_some());
        assert!(bad_shape(&"x".repeat(2000)).is_some());
    }

    #[test]
    fn a_stale_temp_file_or_symlink_never_receives_the_passwords() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.secrets.yaml");
        // What the old code wrote through: a world-readable tmp and a symlinked tmp.
        std::fs::write(dir.path().join("x.secrets.tmp"), "").unwrap();
        std::fs::set_permissions(dir.path().join("x.secrets.tmp"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("x.secrets.yaml.tmp")).unwrap();
        let s = Secrets::load_or_generate(&path).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("x.secrets.tmp")).unwrap(), "");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "");
        assert!(std::fs::read_to_string(&path).unwrap().contains(&s.superuser_password));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
