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

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
#[doc(hidden)]
pub mod bench_support;
pub mod cli;
pub mod clock;
pub mod domain;
pub mod log;
pub mod projections;
pub mod serve;
pub mod settings;
