//! The one way a value enters a remote shell line: POSIX single quoting.
//!
//! Every interpolated value goes through [`quote`], validated or not, so a
//! shape check that is too lenient never becomes a command injection.

/// `s` as one literal shell word. Words made only of characters no shell
/// treats specially stay bare, so command lines read as a person writes them
/// (as Python's `shlex.quote` does).
pub(crate) fn quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `s` as an SQL string literal that reads the same whatever
/// `standard_conforming_strings` says (`platform.parameters` may turn it
/// off): an escape string, its backslashes and quotes doubled.
pub(crate) fn sql_literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Every word quoted, joined with spaces.
pub(crate) fn words<S: AsRef<str>>(items: &[S]) -> String {
    items.iter().map(|s| quote(s.as_ref())).collect::<Vec<_>>().join(" ")
}

/// The last `n` lines of a command's output, for an error message.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Fails unless `script` parses with `bash -n` without a word on stderr (an
/// unterminated here-document is only a warning, and swallows the rest).
/// Standard base64, to move bytes through a here-document.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 + 4);
    for (i, chunk) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push('\n'); // 76-column lines, as base64(1) writes them
        }
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (j, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if j <= chunk.len() {
                out.push(T[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (line breaks ignored, `=` padding); `None` for
/// anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let body = text.trim_end_matches(['=', '\n', '\r']);
    let mut vals = Vec::with_capacity(body.len());
    for b in body.bytes().filter(|b| !b"\r\n".contains(b)) {
        vals.push(T.iter().position(|t| *t == b)? as u32);
    }
    if vals.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(vals.len() * 3 / 4);
    for chunk in vals.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, v)| n | (v << (18 - 6 * i)));
        out.extend(n.to_be_bytes()[1..chunk.len()].iter());
    }
    Some(out)
}

#[cfg(test)]
pub(crate) fn assert_parses_cleanly(script: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("script.sh");
    std::fs::write(&file, script).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_literals_do_not_depend_on_standard_conforming_strings() {
        assert_eq!(sql_literal("it's"), "E'it''s'");
        assert_eq!(sql_literal(r"a\'; DROP"), r"E'a\\''; DROP'");
    }

    #[test]
    fn safe_words_stay_bare_everything_else_is_single_quoted() {
        assert_eq!(quote("/var/lib/postgresql/17/pgha"), "/var/lib/postgresql/17/pgha");
        assert_eq!(quote("http://10.0.0.4:2380"), "http://10.0.0.4:2380");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("/var/lib/pg;touch${IFS}x;"), "'/var/lib/pg;touch${IFS}x;'");
        assert_eq!(
            quote("10.77.0.11';touch x;echo '"),
            r"'10.77.0.11'\'';touch x;echo '\'''"
        );
        assert_eq!(words(&["a", "b c"]), "a 'b c'");
    }

    #[test]
    fn a_quoted_word_is_one_literal_argument_to_a_real_shell() {
        for s in [
            "x';touch /tmp/pgha-pwned;'",
            "$(id)",
            "`id`",
            "a\"b",
            "new\nline",
            "*",
            "~root",
            "!",
        ] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }
}
