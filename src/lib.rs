//! vivirk: an event-sourced record of long programmes for young people with disabilities.
//!
//! Layers, from the bottom up (see ARCHITECTURE.md):
//! - [`clock`]: injected time.
//! - [`log`]: the append-only segment log (the truth) and its sled index (derived).
//! - [`domain`]: typed, versioned events and pure decisions; knows nothing of storage or HTTP.
//! - [`audit`]: signed checkpoints, exports and their offline verification, the access log.
//! - [`api`]: the HTTP API; [`settings`], [`serve`] and [`cli`] wire it to the command line.

/// The page cache each sled store may keep. sled defaults to 1 GiB per store, and we open
/// several: everything sled holds is derived and served from memory or read once at start, so a
/// small cache costs nothing on the request path and keeps the resident set bounded.
pub const SLED_CACHE: u64 = 16 << 20;

/// Opens a sled database with the bounded cache, writing its buffers out every `flush_every_ms`
/// in the background (`None`: only when we flush).
///
/// **We never take sled's exclusive lock.** sled 0.34 has one reader-writer lock for the whole
/// process: `apply_batch`, transactions and `checksum` take it exclusively, and from the first
/// time anything does, every other operation takes it shared, including a flush, which keeps it
/// while it waits for its buffers. With a batch waiting for the exclusive side, new shared
/// takers block (parking_lot prefers writers), among them the flusher the waiting flush depends
/// on: nothing moves again. gdb showed exactly that in our tests. As long as nothing takes the
/// exclusive side, sled never even switches the lock on (reads go through an atomic counter), so
/// every write of ours is a single-key `insert` or `remove`, ordered so that a crash between two
/// of them leaves a state the next open repairs from the log (each record carries the position
/// it is the state at). `clippy.toml` forbids the exclusive calls.
///
/// sled 0.34's `flush` can also wait for good for buffers that never become stable (sled issue
/// #1308, fixed on its main branch, never released). Nothing on the request path waits for a
/// flush; our explicit flushes run one at a time ([`one_sled_flush`]).
///
/// sled's file lock outlives the last handle on a store for a moment: its I/O threads release
/// it when they finish. The data directory's lock keeps other processes out, so a busy store
/// lock is this process's previous handle (tests and tools reopen at once; CI saw it once).
/// Opening waits for it, up to a second, rather than failing — a failed open rebuilds the store,
/// which would delete a directory sled is still writing.
pub fn open_sled(path: &std::path::Path, flush_every_ms: Option<u64>) -> sled::Result<sled::Db> {
    const ATTEMPTS: u32 = 50;
    let mut attempt = 1;
    loop {
        match sled::Config::new().path(path).cache_capacity(SLED_CACHE).flush_every_ms(flush_every_ms).open() {
            Err(sled::Error::Io(e)) if attempt < ATTEMPTS && e.to_string().contains("could not acquire lock") => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            opened => return opened,
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod allocator_tests {
    /// A block allocated shows in the bytes in use until it is freed (256 MiB, calloc'd and never
    /// touched, so it costs no memory; other tests' allocations move the figure by far less).
    #[test]
    fn a_block_shows_in_use_while_allocated() {
        const N: usize = 256 << 20;
        let (before, _) = super::allocator_stats().unwrap();
        let block = vec![0u8; N];
        let (during, _) = super::allocator_stats().unwrap();
        assert!(during >= before + (N as u64) * 3 / 4, "{before} -> {during}");
        drop(std::hint::black_box(block));
        let (after, _) = super::allocator_stats().unwrap();
        assert!(after + (N as u64) * 3 / 4 <= during, "{during} -> {after}");
    }
}

#[cfg(test)]
mod sled_open_tests {
    /// A store still locked by a handle of this process opens once that handle is gone; one
    /// that stays locked is an error after a bounded wait, not a hang.
    #[test]
    fn a_store_opens_once_the_previous_handle_lets_go_and_not_while_it_is_held() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("store");
        let held = super::open_sled(&path, None).unwrap();
        let err = super::open_sled(&path, None).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("could not acquire lock"), "{err}");
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let path2 = path.clone();
        let reopen = std::thread::spawn(move || {
            started_tx.send(()).unwrap();
            super::open_sled(&path2, None).map(|_| ())
        });
        started_rx.recv().unwrap();
        drop(held);
        reopen.join().unwrap().unwrap();
    }
}

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
#[doc(hidden)]
pub mod bench_support;
pub mod cli;
pub mod clock;
pub mod disk_set;
pub mod domain;
mod framing;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod log;
pub mod projections;
pub mod serve;
pub mod settings;

/// Hands memory that is free inside glibc's arenas back to the OS. A background persist encodes
/// every changed course on its own thread, and the buffers it frees stay in that thread's arena,
/// out of reach of the threads that allocate next: under a steady write load the server's RSS
/// kept a few hundred MB of such free memory. Called after each background persist (every 10 s).
/// It took 18–64 ms under the write load (each arena locked in turn while it is trimmed); the
/// A/B runs showed no change in the write p99, which the disk's sync stalls dominate.
pub fn return_free_memory_to_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the allocator holds, in bytes: `(in_use, free)`. `in_use` is what the program has
/// allocated and not freed (large blocks mapped on their own included); `free` is what glibc keeps
/// in its arenas for reuse rather than returning it to the OS. Their sum against the resident set
/// tells live data from retention (fragmentation). `None` where glibc's `mallinfo2` is missing.
pub fn allocator_stats() -> Option<(u64, u64)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's own bookkeeping (under its arena locks).
        let m = unsafe { libc::mallinfo2() };
        Some(((m.uordblks + m.hblkhd) as u64, m.fordblks as u64))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Held around every explicit flush of ours, so two never overlap (tools, shutdown and the audit
/// store's two writers may all flush; see [`open_sled`]). Flushes are rare and off the request
/// path, so one at a time in the whole process costs nothing.
pub fn one_sled_flush() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}
