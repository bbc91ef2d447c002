//! `vivirk serve`: resolve settings, open the store, run the HTTP application until a signal.

use std::process::ExitCode;

use crate::settings::{ServeArgs, Settings};

pub fn run(args: ServeArgs) -> ExitCode {
    let settings = match Settings::resolve(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    crate::cli::init_tracing(settings.log_json);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let data_dir = settings.data_dir.clone();
    rt.block_on(async move {
        let app = match crate::api::Application::build(settings).await {
            Ok(app) => app,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        };
        if let Some(password) = &app.initial_admin_password {
            // Printed once, to the terminal only (never to the log); also kept in a 0600 file.
            println!("First start: created the account `admin` with password: {password}");
            println!(
                "(also written to {}/initial-admin-password; change it, then delete that file)",
                data_dir.display()
            );
        }
        println!("vivirk listening on http://{} (docs at /docs)", app.address());
        tracing::info!(address = %app.address(), "vivirk is listening");
        match app.run_until_stopped().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        }
    })
}
