//! Problems with the user's input, located in a file, and the exit codes.

use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based line and column in the user's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub line: usize,
    pub col: usize,
}

/// Exit code for invalid input (design, arguments, refused confirmation).
pub const EXIT_INVALID: u8 = 2;
/// Exit code for a failure while running.
pub const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about the user's input: where, which field, what, and what to do.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(severity: Severity, file: &Path, span: Option<Span>, field: &str, message: impl Into<String>) -> Self {
        Problem {
            severity,
            file: file.to_path_buf(),
            line: span.map(|s| s.line),
            column: span.map(|s| s.col),
            field: field.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(f, "{level}: {}", self.message)?;
        write!(f, "  --> {}", self.file.display())?;
        if let (Some(line), Some(col)) = (self.line, self.column) {
            write!(f, ":{line}:{col}")?;
        }
        if !self.field.is_empty() {
            write!(f, " (field `{}`)", self.field)?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// The input cannot be used: every error found, plus the warnings.
#[derive(Debug)]
pub struct Invalid {
    pub problems: Vec<Problem>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.problems.iter().filter(|p| p.is_error()).count();
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        write!(f, "{errors} error(s): nothing was changed")
    }
}

impl std::error::Error for Invalid {}

/// A wrong argument or an unanswered confirmation: exit code 2, like a bad design.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// `pgha status` found something to act on: exit 3 when the cluster is
/// degraded, 4 when it is unsafe (a writable host where none may be).
#[derive(Debug)]
pub struct Attention {
    pub code: u8,
    pub message: String,
}

impl fmt::Display for Attention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Attention {}

/// The exit code for an error that reached `main`.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(a) = err.downcast_ref::<Attention>() {
        return a.code;
    }
    if err.downcast_ref::<Invalid>().is_some() || err.downcast_ref::<Usage>().is_some() {
        EXIT_INVALID
    } else {
        EXIT_FAILURE
    }
}
