//! TLS: the generated CA, or the user's own.

use super::*;

/// The user's own CA needs both its certificate and its key.
pub(super) fn build_tls(cx: &mut Checker, root: &Node, base: &Path, raw: RawTls) -> Tls {
    let mut check = |field: &str, file: &str| {
        let path = base.join(file);
        if let Err(e) = crate::fsutil::check_regular(&path) {
            cx.error(
                root,
                field,
                format!("cannot read {}: {e}", path.display()),
                "paths are relative to the design file; leave tls out to let pgha make the cluster's CA",
            );
        }
        path
    };
    let trust_also = raw
        .trust_also
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, f)| check(&format!("tls.trust_also[{i}]"), f))
        .collect();
    match (raw.ca_cert, raw.ca_key) {
        (None, None) => Tls { ca: None, trust_also },
        (Some(cert), Some(key)) => Tls {
            ca: Some(OwnCa {
                cert: check("tls.ca_cert", &cert),
                key: check("tls.ca_key", &key),
            }),
            trust_also,
        },
        (cert, _) => {
            let (field, other) = if cert.is_some() {
                ("tls.ca_key", "tls.ca_cert")
            } else {
                ("tls.ca_cert", "tls.ca_key")
            };
            cx.error(
                root,
                field,
                format!("{other} is set but {field} is not"),
                "name both the CA certificate and its private key (PEM), or neither",
            );
            Tls { ca: None, trust_also }
        }
    }
}
