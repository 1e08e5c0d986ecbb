//! How the process takes memory from the kernel: set once, first thing, by the `herald`
//! binary and by whatever runs herald in-process the way the binary does (the load bench).
//!
//! herald's memory comes and goes in bursts: a fan-out round holds thousands of requests
//! in flight, then frees them, and the allocator (mimalloc) hands idle memory back to the
//! kernel about a second later. mimalloc asks for transparent huge pages on its arenas
//! (`madvise(MADV_HUGEPAGE)`), so the next burst's first touch of each 2 MiB region makes
//! the kernel zero all 2 MiB before herald may use a byte of it: in a profile of a
//! fan-out round to 1,000 webhooks (BENCHMARKS.md), a third of herald's CPU was the kernel
//! clearing huge pages, and the process held 40–50 MiB more at its peak. With 4 KiB pages
//! a burst pays only for the pages it touches; the steady-state rate is the same.

/// Stops the kernel from backing this process's memory with transparent huge pages, on
/// Linux (`prctl(PR_SET_THP_DISABLE)`: every mapping, whatever the allocator asks of
/// `madvise` and whatever the system-wide setting). Elsewhere, and where the kernel
/// refuses, nothing changes; the error is returned for the caller to mention.
pub fn no_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes one integer argument and touches no memory of
        // ours; the remaining arguments must be zero.
        let done = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if done != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_process_is_left_without_transparent_huge_pages() {
        no_transparent_huge_pages().unwrap();
        // SAFETY: PR_GET_THP_DISABLE takes no argument and returns the flag.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(disabled, 1);
    }
}
