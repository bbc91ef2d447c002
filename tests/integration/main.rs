//! The one integration-test binary: everything that needs the real `vivirk` binary, a real
//! HTTP server on port 0, or a process to kill.

mod access_matrix;
mod api_journey;
mod audit;
mod endpoints;
mod helpers;
mod log_crash;
mod reliability;
