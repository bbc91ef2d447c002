//! The `vivirk` binary: only parses arguments (see `vivirk::cli`).

fn main() -> std::process::ExitCode {
    vivirk::cli::run()
}
