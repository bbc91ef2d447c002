//! The `vivirk` binary: only parses arguments (see `vivirk::cli`).

/// mimalloc rather than glibc's malloc: the server allocates on many threads (workers, the log
/// writer, the projections' follower and persists, sled's), and glibc's per-thread arenas kept
/// memory one thread freed from the others, so the resident set under a steady write load grew
/// far beyond the data (README, "What changed the numbers").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    vivirk::cli::run()
}
