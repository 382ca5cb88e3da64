//! Which steps of the running command have finished: what an interrupted
//! run (Ctrl-C) tells its user before it exits.

use std::sync::Mutex;

use super::progress::Event;

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

/// Notes a step starting or ending, as the progress events say.
pub(crate) fn observe(e: &Event) {
    match e {
        Event::StepStarted { number, title } => with(|j| j.running = Some((*number, title.clone()))),
        Event::StepDone { number, ok, .. } => with(|j| {
            if *ok {
                j.done.push(*number);
            }
            j.running = None;
        }),
        _ => {}
    }
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
