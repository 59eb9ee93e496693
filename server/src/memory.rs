//! Handing freed memory back to the operating system. glibc's allocator
//! keeps what a process freed in its arenas, so after thousands of calls
//! end at once (say, 2,000 watch streams whose clients left) the server
//! would stay at its peak resident size. [`release_freed_soon`] asks glibc
//! to return it (`malloc_trim`) a moment after the burst ends, once the
//! connections those calls used are closed too; other platforms' allocators
//! need no help.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Trims once no request has come for this long: a burst of closes (which
/// a loaded machine can spread over seconds) is trimmed after its last one.
const SETTLE: Duration = Duration::from_secs(1);

static SCHEDULED: AtomicBool = AtomicBool::new(false);
/// Counts requests, so the scheduled trim can tell whether more came.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Asks for one trim [`SETTLE`] after the last of a burst of requests.
pub fn release_freed_soon() {
    REQUESTS.fetch_add(1, Ordering::SeqCst);
    if SCHEDULED.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        SCHEDULED.store(false, Ordering::SeqCst);
        return;
    };
    runtime.spawn(async {
        loop {
            let seen = REQUESTS.load(Ordering::SeqCst);
            tokio::time::sleep(SETTLE).await;
            if REQUESTS.load(Ordering::SeqCst) == seen {
                break;
            }
        }
        // A request from here on schedules another trim.
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
