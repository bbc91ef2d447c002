//! `spawn_app`: a real server on port 0 with a temp data dir and a manual clock, and a small
//! blocking client. Tests are plain functions; the server runs on its own runtime thread.

use std::sync::mpsc;

use serde_json::{Value, json};
use time::macros::datetime;
use uuid::Uuid;
use vivirk::api::Application;
use vivirk::clock::ManualClock;
use vivirk::settings::Settings;

pub struct TestApp {
    pub base: String,
    pub admin_password: String,
    /// The server's clock: tests move it instead of sleeping.
    #[allow(dead_code)]
    pub clock: ManualClock,
    /// Kept so the data directory lives as long as the app.
    #[allow(dead_code)]
    pub dir: tempfile::TempDir,
    agent: ureq::Agent,
    _stop: mpsc::Sender<()>,
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The problem code of an error response.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

pub fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(datetime!(2026-11-27 09:00 UTC));
    let mut settings = Settings::for_data_dir(dir.path());
    settings.bind = "127.0.0.1:0".parse().unwrap();
    let (addr_tx, addr_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let c = clock.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let app = Application::build_with_clock(settings, std::sync::Arc::new(c)).await.expect("app starts");
            addr_tx.send((app.address(), app.initial_admin_password.clone())).unwrap();
            let server = tokio::spawn(app.run_until_stopped());
            // Stop when the TestApp is dropped.
            let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            server.abort();
        });
    });
    let (addr, password) = addr_rx.recv().expect("server address");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    TestApp {
        base: format!("http://{addr}"),
        admin_password: password.expect("a fresh data dir creates the admin"),
        clock,
        dir,
        agent,
        _stop: stop_tx,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
        let mut r = r.expect("request sent");
        let status = r.status().as_u16();
        let headers =
            r.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp { status, body, headers }
    }

    pub fn get(&self, token: &str, path: &str) -> Resp {
        Self::finish(self.agent.get(self.url(path)).header("authorization", format!("Bearer {token}")).call())
    }

    pub fn get_with(&self, token: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.agent.get(self.url(path)).header("authorization", format!("Bearer {token}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::finish(req.call())
    }

    pub fn post(&self, token: &str, path: &str, body: &Value) -> Resp {
        self.post_with(token, path, body, &[])
    }

    pub fn post_with(&self, token: &str, path: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.agent.post(self.url(path)).header("content-type", "application/json");
        if !token.is_empty() {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::finish(req.send(serde_json::to_vec(body).unwrap()))
    }

    pub fn post_raw(&self, token: &str, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
        let req = self
            .agent
            .post(self.url(path))
            .header("content-type", content_type)
            .header("authorization", format!("Bearer {token}"));
        Self::finish(req.send(body))
    }

    pub fn login(&self, username: &str, password: &str) -> String {
        let r = self.post("", "/v1/auth/token", &json!({"username": username, "password": password}));
        assert_eq!(r.status, 200, "login {username}: {:?}", r.body);
        r.body["access_token"].as_str().unwrap().to_owned()
    }

    pub fn admin_token(&self) -> String {
        self.login("admin", &self.admin_password)
    }

    /// Creates an account with `role` and returns (account id, access token).
    pub fn account(&self, admin: &str, username: &str, role: &str) -> (Uuid, String) {
        let password = "correct horse battery staple";
        let r = self.post(
            admin,
            "/v1/accounts",
            &json!({"username": username, "display_name": format!("Test {username}"), "role": role, "password": password}),
        );
        assert_eq!(r.status, 201, "create {username}: {:?}", r.body);
        let id = Uuid::parse_str(r.body["account_id"].as_str().unwrap()).unwrap();
        (id, self.login(username, password))
    }

    /// The log's head position, read from /metrics (for "appends nothing" checks).
    pub fn head(&self) -> u64 {
        let r = Self::finish(self.agent.get(self.url("/metrics")).call());
        let text = r.body.as_str().unwrap_or("").to_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("vivirk_log_head_position "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .expect("head in metrics")
    }
}
