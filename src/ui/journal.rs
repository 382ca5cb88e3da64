//! Which steps of the running command have finished: what an interrupted
//! run (Ctrl-C) tells its user before it exits.

use std::sync::Mutex;

#[derive(Default)]
struct Journal {
    done: Vec<usize>,
    running: Option<(usize, String)>,
}

static JOURNAL: Mutex<Journal> = Mutex::new(Journal {
    done: Vec::new(),
    running: None,
});

fn with<T>(f: impl FnOnce(&mut Journal) -> T) -> T {
    f(&mut JOURNAL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Notes a step starting.
pub(crate) fn started(number: usize, title: &str) {
    with(|j| j.running = Some((number, title.to_string())));
}

/// Notes a step ending (`ok`: it finished).
pub(crate) fn finished(number: usize, ok: bool) {
    with(|j| {
        if ok {
            j.done.push(number);
        }
        j.running = None;
    });
}

/// The step running now, if any.
pub(crate) fn running() -> Option<usize> {
    with(|j| j.running.as_ref().map(|(n, _)| *n))
}

/// `steps 1, 2 completed; step 3 (...) was running`, in words.
pub(crate) fn summary() -> String {
    with(|j| j.summary())
}

impl Journal {
    fn summary(&self) -> String {
        let j = self;
        let done = match j.done.as_slice() {
            [] => "no step completed".to_string(),
            steps => {
                let list: Vec<String> = steps.iter().map(usize::to_string).collect();
                format!("completed step(s): {}", list.join(", "))
            }
        };
        match &j.running {
            Some((n, what)) => format!("{done}; step {n} ({what}) was interrupted and may be half done"),
            None => done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_finished_and_running_steps() {
        let j = Journal {
            done: vec![1],
            running: Some((2, "demote".into())),
        };
        assert_eq!(Journal::default().summary(), "no step completed");
        assert_eq!(
            j.summary(),
            "completed step(s): 1; step 2 (demote) was interrupted and may be half done"
        );
    }
}
