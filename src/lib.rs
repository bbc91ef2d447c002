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

/// Opens a sled database with the bounded cache and, with `flush_every_ms = None`, no background
/// flusher. sled 0.34 can hang for good in `flush` when two flushes of one database overlap (its
/// own periodic flusher and an explicit one, or the flush every `Tree` does when dropped; we saw
/// a test hang in the index's drop). So the derived stores (index, projections) never flush
/// until they are dropped: what a crash loses of them is caught up from the log. Stores that
/// want sled's buffers written out (sessions, the access log) say how often, and must then
/// never flush explicitly as well.
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
