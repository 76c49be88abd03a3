//! Hardening of the gbdfl process itself, done first thing in `main`: files
//! owner-only by default, no core dumps, no tracing by other programs of the
//! same user, writes past a file-size limit that fail instead of killing
//! the process, and a panic message that holds no personal data.
//!
//! Rule this module keeps: after [`harden`], nothing gbdfl creates is
//! readable by others even if a code path forgets to ask, and no crash can
//! put the master key, the API key or a person's data into a core file or
//! onto the terminal.

/// Sets the process up before anything else runs. Failures are ignored: each
/// step only narrows what the process may do, and a platform without it
/// (not Linux, not Unix) keeps the explicit per-file checks of `fsutil` and
/// `keyfile`.
pub fn harden() {
    #[cfg(unix)]
    {
        use rustix::fs::Mode;
        use rustix::process::{Resource, Rlimit, setrlimit, umask};
        // Every file and folder created from here on is owner-only: the
        // database, its -wal/-shm, key files, reports and any temp file.
        umask(Mode::from_raw_mode(0o077));
        // A core file would hold the master key and decrypted records.
        let none = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        let _ = setrlimit(Resource::Core, none);
    }
    #[cfg(unix)]
    // SAFETY: SIG_IGN is a valid disposition for SIGXFSZ and no handler
    // code runs; this is at the start of main, before any other thread.
    unsafe {
        // Past RLIMIT_FSIZE the kernel sends SIGXFSZ, which kills the
        // process mid-write; ignored, the write fails with EFBIG and SQLite
        // rolls the transaction back with a clear error.
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // Not dumpable: no core dump even if the limit is raised again, no
    // ptrace by other processes of the same user, and /proc/PID/environ
    // and /proc/PID/mem (which hold the API key) readable by root only.
    #[cfg(target_os = "linux")]
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes plain integers and runs before other threads.
    unsafe {
        // Buffers of 256 KiB and more get pages of their own, returned to
        // the system when freed, and grow in place (mremap). glibc would
        // otherwise raise this threshold as such buffers are freed, serve
        // them from its heap, and copy on every growth: the expiry scan's
        // day buckets then cost 30 MB of peak memory more and the copies.
        // It also means freed large buffers of decrypted data leave the
        // process at once instead of lingering in the heap.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        // Freed memory at the top of the heap stays for the next use up to
        // 64 MiB instead of going back at 128 KiB: the expiry scan frees
        // and refills its per-batch sets, and gave a tenth of its time to
        // the page faults. What stays may hold names and IINs of a report
        // being made (decrypted records and keys are wiped, report rows
        // are not), as any freed heap memory could before: the process is
        // not dumpable and writes no core, so only swap could take it to
        // disk.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// What the panic hook prints: where, never what. A panic payload may hold
/// an IIN, a name or a decrypted answer (a `Debug` of some value), so it is
/// not printed; the file and line are enough to find the bug.
pub fn panic_message(file: &str, line: u32) -> String {
    format!("gbdfl: internal error at {file}:{line} (a bug; please report it)")
}

/// Installs the panic hook: prints [`panic_message`] and exits with code 1
/// (the documented code for a bug), with no payload and no backtrace.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let (file, line) = info
            .location()
            .map_or(("<unknown>", 0), |l| (l.file(), l.line()));
        eprintln!("{}", panic_message(file, line));
        std::process::exit(i32::from(crate::exit::ExitCode::Failure.code()));
    }));
}

/// For the test of the panic hook only: `GBDFL_TEST_PANIC=TEXT` makes the
/// binary panic at once with TEXT as the payload, so a test can prove TEXT
/// is not printed. It changes nothing else and reads no data. Only in a
/// build with the `dev` feature: a production binary has no such hook.
#[cfg(feature = "dev")]
pub fn test_panic_if_asked() {
    if let Some(payload) = std::env::var_os("GBDFL_TEST_PANIC") {
        panic!("{}", payload.to_string_lossy());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_place_only() {
        assert_eq!(
            panic_message("src/store/mod.rs", 42),
            "gbdfl: internal error at src/store/mod.rs:42 (a bug; please report it)"
        );
    }
}
