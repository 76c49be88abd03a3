//! Who holds something in the database: the process that claimed a queued
//! request, dropped the indexes for an import, or noted itself as a long
//! writer. One text names it, `PID HOST RUN` (RUN: a random id of this run
//! of gbdfl), with ` WORKER` after it for a worker's claim.
//!
//! Rule this module keeps: one check says whether such a process still
//! runs, and it errs towards "unknown" (the caller then waits for a lease
//! or treats the record as another program's), never towards "gone" for a
//! process that may be alive. A process is gone when it ran on this host
//! and no process has its id, or the id is this process's but the run is
//! not (the id was reused). Kept by `a_reused_id_an_ended_process_and_foreign_texts`
//! and `this_process_and_its_workers_are_alive`.

use std::sync::OnceLock;

/// What is known of the process that an owner text names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// It runs (or a process with its id does).
    Alive,
    /// It ran on this host and has ended.
    Gone,
    /// Another host's, a text gbdfl cannot read (an older version's), or
    /// an operating system that cannot tell.
    Unknown,
}

/// An owner text read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    /// The process id.
    pub pid: u32,
    /// The host name of the machine it ran on.
    pub host: &'a str,
    /// `None` in a text an older gbdfl wrote (`PID HOST`).
    pub run: Option<&'a str>,
}

impl<'a> Owner<'a> {
    /// Reads `PID HOST [RUN [WORKER]]`; `None` for anything else.
    pub fn parse(text: &'a str) -> Option<Owner<'a>> {
        let mut parts = text.split(' ');
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next().filter(|h| !h.is_empty())?;
        Some(Owner {
            pid,
            host,
            run: parts.next(),
        })
    }

    /// For messages: `PID 4242 on host-a`.
    pub fn describe(&self) -> String {
        format!("PID {} on {}", self.pid, self.host)
    }
}

/// This process: `PID HOST RUN`.
pub fn this_process() -> &'static str {
    static THIS: OnceLock<String> = OnceLock::new();
    THIS.get_or_init(|| {
        format!(
            "{} {} {}",
            std::process::id(),
            host(),
            uuid::Uuid::new_v4().simple()
        )
    })
}

/// A worker thread of this process, for claims: `PID HOST RUN WORKER`.
pub fn worker(n: usize) -> String {
    format!("{} {n}", this_process())
}

fn host() -> String {
    // A space would cut the text short; hostnames have none.
    gethostname::gethostname()
        .to_string_lossy()
        .replace(' ', "_")
}

/// Whether the process named by `owner` ([`this_process`] or [`worker`],
/// of this or another gbdfl) still runs.
pub fn liveness(owner: &str) -> Liveness {
    let Some(o) = Owner::parse(owner) else {
        return Liveness::Unknown;
    };
    if o.host != host() {
        return Liveness::Unknown;
    }
    let this = Owner::parse(this_process()).expect("this process's text reads back");
    if o.pid == this.pid {
        return if o.run == this.run {
            Liveness::Alive
        } else {
            Liveness::Gone
        };
    }
    pid_liveness(o.pid)
}

#[cfg(unix)]
fn pid_liveness(pid: u32) -> Liveness {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return Liveness::Unknown;
    };
    if pid <= 0 {
        return Liveness::Unknown;
    }
    // SAFETY: signal 0 only asks whether the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return Liveness::Alive;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ESRCH) => Liveness::Gone,
        // Another user's process: it runs.
        Some(libc::EPERM) => Liveness::Alive,
        _ => Liveness::Unknown,
    }
}

#[cfg(not(unix))]
fn pid_liveness(_: u32) -> Liveness {
    Liveness::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_its_workers_are_alive() {
        assert_eq!(liveness(this_process()), Liveness::Alive);
        assert_eq!(liveness(&worker(3)), Liveness::Alive);
        let o = Owner::parse(this_process()).unwrap();
        assert_eq!(o.pid, std::process::id());
        assert!(o.describe().starts_with(&format!("PID {} on ", o.pid)));
    }

    #[cfg(unix)]
    #[test]
    fn a_reused_id_an_ended_process_and_foreign_texts() {
        let me = Owner::parse(this_process()).unwrap();
        // This process's id with another run: an earlier process whose id
        // was reused.
        let earlier = format!("{} {} 0123456789abcdef 0", me.pid, me.host);
        assert_eq!(liveness(&earlier), Liveness::Gone);
        // A child that has ended (and been reaped) is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let ended = format!("{pid} {} 0123456789abcdef", me.host);
        assert_eq!(liveness(&ended), Liveness::Gone);
        // The parent of this test runs; an older gbdfl's `PID HOST` reads.
        let parent = format!("{} {}", std::os::unix::process::parent_id(), me.host);
        assert_eq!(liveness(&parent), Liveness::Alive);
        for foreign in [
            "4242-0123456789abcdef-0",
            "4242 a-host-that-is-not-this-one x",
            "",
            "x y",
        ] {
            assert_eq!(liveness(foreign), Liveness::Unknown, "{foreign:?}");
        }
    }
}
