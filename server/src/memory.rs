//! Handing freed memory back to the operating system. glibc's allocator
//! keeps what a process freed in its arenas, so after thousands of calls
//! end at once (say, 2,000 watch streams whose clients left) the server
//! would stay at its peak resident size. [`release_freed_soon`] asks glibc
//! to return it (`malloc_trim`) a moment later, once the connections those
//! calls used are closed too; other platforms' allocators need no help.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Waits this long for the rest of a burst of closes before trimming.
const SETTLE: Duration = Duration::from_secs(1);

static SCHEDULED: AtomicBool = AtomicBool::new(false);

/// Schedules one trim (a burst of calls asks once).
pub fn release_freed_soon() {
    if SCHEDULED.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        SCHEDULED.store(false, Ordering::SeqCst);
        return;
    };
    runtime.spawn(async {
        tokio::time::sleep(SETTLE).await;
        SCHEDULED.store(false, Ordering::SeqCst);
        let _ = tokio::task::spawn_blocking(release_freed).await;
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_freed() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it is
    // safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed() {}
