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
/// sled 0.34's `flush` can wait for good for buffers that never become stable (sled issue
/// #1308, fixed on its main branch, never released): we have seen the lib tests hang in the
/// flush a `Tree` does when the index is dropped, a few times in a day of runs, with and
/// without a background flusher. It also has one lock for the whole process, which
/// `apply_batch` and transactions take exclusively and a flush holds shared while it waits. So
/// every batch, transaction and explicit flush of ours runs under [`sled_exclusive`], one at a
/// time: that removes the cross-database wait, not sled's own bug. Nothing on the request path
/// waits for a flush; what a hang would block is shutdown and the derived stores' persisting.
pub fn open_sled(path: &std::path::Path, flush_every_ms: Option<u64>) -> sled::Result<sled::Db> {
    sled::Config::new().path(path).cache_capacity(SLED_CACHE).flush_every_ms(flush_every_ms).open()
}

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
#[doc(hidden)]
pub mod bench_support;
pub mod cli;
pub mod clock;
pub mod domain;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod log;
pub mod projections;
pub mod serve;
pub mod settings;

/// Held around every sled batch, transaction and flush (see [`open_sled`]).
pub fn sled_exclusive() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}
