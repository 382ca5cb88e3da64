//! Metrics: Debian's prometheus-postgres-exporter on every database host.
//! It logs in to its own host's PostgreSQL over TLS as a `pg_monitor`
//! member, and serves `/metrics` over TLS to clients holding a certificate
//! of the metrics CA (`<design>.pki/metrics/prometheus.crt`), which nothing
//! else trusts.

use super::{Component, FileSpec};
use crate::shell::{quote, sql_literal};

pub(crate) const PACKAGE: &str = "prometheus-postgres-exporter";
pub(crate) const SERVICE: &str = "prometheus-postgres-exporter";
pub(crate) const WEB_CONFIG_PATH: &str = "/etc/pgha/exporter-web.yml";
pub(crate) const KEY_PATH: &str = "/etc/pgha/tls/exporter.key";
pub(crate) const METRICS_CA_PATH: &str = "/etc/pgha/tls/metrics-ca.crt";

/// The CA of the clients the exporter lets in.
pub(crate) const METRICS_CA: FileSpec = FileSpec {
    component: Component::Metrics,
    template: "exporter-ca.pem.j2",
    path: METRICS_CA_PATH,
    owner: "root",
    group: "root",
    mode: 0o644,
    service: SERVICE,
    check: None,
};

/// Debian's environment file for the unit: the connection (with the
/// password) and the arguments. Readable by the exporter's user only.
pub(crate) const ENV: FileSpec = FileSpec {
    component: Component::Metrics,
    template: "exporter.env.j2",
    path: "/etc/default/prometheus-postgres-exporter",
    owner: "root",
    group: "prometheus",
    mode: 0o640,
    service: SERVICE,
    check: None,
};

/// TLS for `/metrics`, with client certificates of the cluster CA.
pub(crate) const WEB: FileSpec = FileSpec {
    component: Component::Metrics,
    template: "exporter-web.yml.j2",
    path: WEB_CONFIG_PATH,
    owner: "root",
    group: "prometheus",
    mode: 0o640,
    service: SERVICE,
    check: None,
};

/// The host's key, for the exporter's user.
pub(crate) const KEY: FileSpec = FileSpec {
    component: Component::Metrics,
    template: "tls-key.pem.j2",
    path: KEY_PATH,
    owner: "root",
    group: "prometheus",
    mode: 0o640,
    service: SERVICE,
    check: None,
};

pub(crate) const FILES: [FileSpec; 4] = [METRICS_CA, KEY, WEB, ENV];

/// Debian's node exporter: the host's filesystems, memory, CPU and load,
/// and pgha's textfile, on loopback only (HAProxy's metrics gateway serves
/// it over TLS).
pub(crate) const NODE_PACKAGE: &str = "prometheus-node-exporter";
pub(crate) const NODE_SERVICE: &str = "prometheus-node-exporter";
/// Debian's default textfile directory (root's, readable by the exporter).
pub(crate) const TEXTFILE_DIR: &str = "/var/lib/prometheus/node-exporter";

/// Its arguments (Debian's unit reads `$ARGS` from here).
pub(crate) const NODE_ENV: FileSpec = FileSpec {
    component: Component::Metrics,
    template: "node-exporter.env.j2",
    path: "/etc/default/prometheus-node-exporter",
    owner: "root",
    group: "root",
    mode: 0o644,
    service: NODE_SERVICE,
    check: None,
};

/// What no exporter reads elsewhere: when the host's certificates expire,
/// written by the certificate metrics from the files themselves (a deploy's
/// own record would miss a certificate it has not renewed or one replaced
/// by hand). The node exporter reads it at each scrape.
pub(crate) const NODE_TEXTFILE: &str = "/var/lib/prometheus/node-exporter/pgha.prom";

pub(crate) const CERT_METRICS_SERVICE: &str = "pgha-cert-metrics";
pub(crate) const CERT_METRICS_TIMER_UNIT: &str = "pgha-cert-metrics.timer";

const fn cert_metrics_file(
    template: &'static str,
    path: &'static str,
    mode: u32,
    check: Option<&'static str>,
) -> FileSpec {
    super::timer_job_file(CERT_METRICS_SERVICE, template, path, mode, check)
}

/// Its code; run by the timer, so a change needs no restart.
pub(crate) const CERT_METRICS_CODE: FileSpec = cert_metrics_file(
    "cert-metrics.sh.j2",
    "/usr/local/lib/pgha/cert-metrics",
    0o755,
    Some("sh -n"),
);
pub(crate) const CERT_METRICS_UNIT: FileSpec = cert_metrics_file(
    "pgha-cert-metrics.service.j2",
    "/etc/systemd/system/pgha-cert-metrics.service",
    0o644,
    None,
);
pub(crate) const CERT_METRICS_TIMER: FileSpec = FileSpec {
    service: CERT_METRICS_TIMER_UNIT,
    ..cert_metrics_file(
        "pgha-cert-metrics.timer.j2",
        "/etc/systemd/system/pgha-cert-metrics.timer",
        0o644,
        None,
    )
};

pub(crate) const NODE_FILES: [FileSpec; 4] = [NODE_ENV, CERT_METRICS_CODE, CERT_METRICS_UNIT, CERT_METRICS_TIMER];

/// Creates the exporter's role, or sets its password, on the master. The
/// password travels on stdin; errors are not logged with the statement.
pub(crate) fn role_sql(user: &str, password: &str) -> String {
    let user_ident = format!("\"{}\"", user.replace('"', "\"\""));
    format!(
        "SET log_min_error_statement = panic;\n\
SET log_statement = 'none';\n\
SELECT 'CREATE ROLE {user_ident}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {name}) \\gexec\n\
ALTER ROLE {user_ident} LOGIN PASSWORD {pw};\n\
GRANT pg_monitor TO {user_ident};\n",
        name = sql_literal(user),
        pw = sql_literal(password),
    )
}

/// Runs [`role_sql`], which the caller puts in `$PGHA_INPUT` (a private
/// file: the password stays out of the script and of any argv).
pub(crate) fn role_script(port: u16) -> String {
    format!("runuser -u postgres -- psql -p {port} -XAtq -v ON_ERROR_STOP=1 < \"$PGHA_INPUT\"")
}

/// Prints `exporter_login` when the exporter's connection, read from its
/// environment file, logs in: the role exists with the file's password.
/// The password goes to psql in its environment, never in an argv.
pub(crate) fn login_script() -> String {
    format!(
        r#"if [ -f {env} ]; then
x() {{ sed -n "s/^DATA_SOURCE_NAME=.*[' ]$1=\([^ ']*\).*/\1/p" {env}; }}
PGPASSWORD=$(x password) PGSSLMODE=verify-full PGSSLROOTCERT=$(x sslrootcert) PGCONNECT_TIMEOUT=5 \
  psql -h "$(x host)" -p "$(x port)" -U "$(x user)" -d postgres -XAtqc 'SELECT 1' >/dev/null 2>&1 && echo exporter_login
fi
"#,
        env = quote(ENV.path)
    )
}

/// Prints `node_up` when the node exporter answers on its loopback port
/// (its unit's start succeeds even when a flag ends it at once).
pub(crate) fn node_up_script(port: u16) -> String {
    format!(
        "python3 -c 'import urllib.request as u; u.urlopen(\"http://127.0.0.1:{port}/metrics\", timeout=3).read()' \
         >/dev/null 2>&1 && echo node_up\n"
    )
}

/// [`login_script`], when the exporter runs.
pub(crate) fn running_login_script() -> String {
    format!("systemctl is-active --quiet {SERVICE} || exit 0\n{}", login_script())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_is_made_once_and_its_password_set_each_time() {
        let sql = role_sql("pgha_monitor", "s3cr'et");
        assert!(sql.starts_with("SET log_min_error_statement = panic;"), "{sql}");
        assert!(sql.contains("SELECT 'CREATE ROLE \"pgha_monitor\"' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = E'pgha_monitor') \\gexec"));
        assert!(sql.contains("ALTER ROLE \"pgha_monitor\" LOGIN PASSWORD E's3cr''et';"));
        assert!(sql.contains("GRANT pg_monitor TO \"pgha_monitor\";"));
    }

    #[test]
    fn the_login_check_reads_the_exporters_own_file() {
        let script = login_script();
        crate::shell::assert_parses_cleanly(&script);
        crate::shell::assert_parses_cleanly(&running_login_script());
        assert!(script.contains("PGPASSWORD=$(x password)"), "{script}");
        assert!(!script.contains("password="), "no password in the script: {script}");
    }
}
