//! Keeping the resident memory of a small router's daemon small.
//!
//! glibc's malloc keeps freed heap pages, so after a burst (a thousand connections that each
//! made a request, then went idle and were parked) the daemon's RSS would stay at the burst's
//! peak. [`give_back_after_parking`] returns those pages to the kernel, at most once a second
//! and only after connections were parked or after a burst ended (the open connections fell
//! to half their peak or less, by at least 64: a flood that was refused or timed out). [`limit_arenas`] keeps glibc at one malloc arena,
//! so memory freed by one worker thread is reused by the other (measured: less memory and no
//! loss of throughput with two worker threads) and large blocks in mappings of their own. Both do nothing on other C
//! libraries (musl returns memory by itself).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::proxy::State;

/// Caps glibc's malloc arenas at one, and fixes its mmap threshold: a large block (the admin
/// panel's 19 MiB password hash) is then always its own mapping, given back when freed,
/// rather than raising the threshold and staying in the heap. Call at start, before threads
/// are spawned.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; both are valid on glibc.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Returns freed heap pages to the kernel after connections were parked or a burst ended,
/// until `stop`.
pub async fn give_back_after_parking(state: Arc<State>, stop: CancellationToken) {
    let mut seen = state.parked();
    let mut peak = state.open_connections();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let now = state.parked();
        let open = state.open_connections();
        peak = peak.max(open);
        let burst_over = peak >= open + 64 && open <= peak / 2;
        if now != seen || burst_over {
            seen = now;
            peak = open;
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            let _ = tokio::task::spawn_blocking(|| {
                // SAFETY: malloc_trim has no preconditions.
                unsafe { libc::malloc_trim(0) }
            })
            .await;
        }
    }
}
