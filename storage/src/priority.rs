//! Background work yields to ingest and queries: a thread that does it
//! runs 10 nice levels below the server ([`lower_priority`]).

/// Lowers the calling thread's priority by 10 nice levels (at most to 19).
/// On Linux a "process" priority set for a thread id applies to that
/// thread only (and to the threads it starts afterwards, which inherit it),
/// so call it on a thread of its own — never on a pooled one, which would
/// keep the priority for other work.
pub fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        // A failure leaves the thread at the server's priority: still
        // correct, only less polite to the write path.
        let lowered =
            getpriority_process(me).and_then(|now| setpriority_process(me, (now + 10).min(19)));
        if let Err(e) = lowered {
            tracing::warn!(error = %e, "cannot lower a background thread's priority");
        }
    }
}
