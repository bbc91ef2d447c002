//! The real `vivirk serve` binary as a child process: no personal data in its logs, SIGKILL in
//! the middle of concurrent check-ins over HTTP, and hostile tokens.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

struct Server {
    child: Child,
    base: String,
    admin_password: Option<String>,
}

/// Starts `vivirk serve` on port 0 and reads the address (and, on a first start, the admin
/// password) from its stdout: no polling, no sleeps.
fn start(dir: &Path, stderr_to: Option<&Path>) -> Server {
    start_with(dir, stderr_to, &[])
}

fn start_with(dir: &Path, stderr_to: Option<&Path>, extra: &[&str]) -> Server {
    let stderr = match stderr_to {
        Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
        None => Stdio::null(),
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_vivirk"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .env("VIVIRK_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn vivirk serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut admin_password = None;
    let base = loop {
        let line = lines.next().expect("serve said nothing").unwrap();
        if let Some(p) = line.strip_prefix("First start: created the account `admin` with password: ") {
            admin_password = Some(p.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("vivirk listening on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, base, admin_password }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let a = agent();
    let url = format!("{base}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    let r = match (method, body) {
        ("GET", _) => {
            let mut req = a.get(&url);
            if let Some(h) = &auth {
                req = req.header("authorization", h);
            }
            req.call()
        }
        (_, b) => {
            let mut req = a.post(&url).header("content-type", "application/json");
            if let Some(h) = &auth {
                req = req.header("authorization", h);
            }
            req.send(serde_json::to_vec(b.unwrap_or(&json!({}))).unwrap())
        }
    };
    let mut r = r.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

fn ok(base: &str, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Value {
    let (s, v) = call(base, method, path, token, body).unwrap();
    assert!((200..300).contains(&s), "{method} {path}: {s} {v:?}");
    v
}

fn login(base: &str, user: &str, password: &str) -> String {
    ok(base, "POST", "/v1/auth/token", None, Some(&json!({"username": user, "password": password})))["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

const PW: &str = "a long enough password";

/// Accounts, a company, a course with a mentor on a placement; returns (caseworker token,
/// mentor token, course id, placement id, young person id).
fn setup(base: &str, admin_password: &str, names: [&str; 3]) -> (String, String, String, String, String) {
    let admin = login(base, "admin", admin_password);
    let mut ids = Vec::new();
    for (user, role, name) in
        [("cw1", "caseworker", names[0]), ("yp1", "young_person", names[1]), ("mentor1", "mentor", names[2])]
    {
        let v = ok(
            base,
            "POST",
            "/v1/accounts",
            Some(&admin),
            Some(&json!({"username": user, "display_name": name, "role": role, "password": PW})),
        );
        ids.push(v["account_id"].as_str().unwrap().to_owned());
    }
    let cw = login(base, "cw1", PW);
    let mentor = login(base, "mentor1", PW);
    let company = ok(
        base,
        "POST",
        "/v1/companies",
        Some(&cw),
        Some(&json!({"name": "Café Solsikke", "industry": "food", "kind": "social_economic", "cvr": null})),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let course = ok(
        base,
        "POST",
        "/v1/courses",
        Some(&cw),
        Some(&json!({"young_person": ids[1], "programme": "stu",
        "referring_caseworker": ids[0], "municipality": "Viborg Kommune", "start_date": "2026-08-01"})),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        base,
        "POST",
        &format!("/v1/courses/{course}/participants"),
        Some(&cw),
        Some(&json!({"account_id": ids[2], "role": "mentor", "company_id": company, "relation": null})),
    );
    let placement = ok(base, "POST", &format!("/v1/courses/{course}/placements"), Some(&cw), Some(&json!({"kind": "practice_arena",
        "company_id": company, "workplace": "social_economic", "mentor": ids[2], "hours_per_week": 10, "tasks": [], "start_date": "2026-08-01"})))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (cw, mentor, course, placement, ids[1].clone())
}

#[test]
fn no_personal_data_in_the_server_log() {
    let tmp = tempfile::tempdir().unwrap();
    let log_file = tmp.path().join("stderr.log");
    let mut server = start(&tmp.path().join("data"), Some(&log_file));
    let base = server.base.clone();
    let names = ["Quirinus Caseworkerson", "Zebulon Quartermaine", "Philippa Mentorsdottir"];
    let secrets = [
        "Frightened of the escalator at Magasin",
        "Talked about Zebulon's grandmother's funeral",
        "Quartermaine",
        "Philippa",
        "Quirinus",
        "Café Solsikke",
        "Viborg Kommune",
    ];
    let (cw, mentor, course, placement, yp) = setup(&base, server.admin_password.as_deref().unwrap(), names);
    ok(
        &base,
        "POST",
        &format!("/v1/courses/{course}/check-ins"),
        Some(&mentor),
        Some(&json!({"placement_id": placement,
        "attendance": "present", "wellbeing": 2, "tasks_done": ["till"], "concerns": secrets[0], "next_step": null})),
    );
    ok(
        &base,
        "POST",
        &format!("/v1/courses/{course}/contacts"),
        Some(&cw),
        Some(&json!({"with": [yp], "channel": "phone",
        "direction": "to_young_person", "outreach": true, "individual": true, "duration_minutes": 30, "summary": secrets[1]})),
    );
    // Refusals too: an error path must not echo content into the log either.
    let (s, _) = call(
        &base,
        "POST",
        &format!("/v1/courses/{course}/check-ins"),
        Some(&mentor),
        Some(&json!({"placement_id": placement,
        "attendance": "present", "wellbeing": 9, "tasks_done": [], "concerns": secrets[0], "next_step": null})),
    )
    .unwrap();
    assert_eq!(s, 422);
    let (s, _) = call(
        &base,
        "POST",
        "/v1/auth/token",
        None,
        Some(&json!({"username": "cw1", "password": "Quartermaine wrong"})),
    )
    .unwrap();
    assert_eq!(s, 401);
    ok(&base, "GET", &format!("/v1/courses/{course}/contacts"), Some(&cw), None);
    ok(&base, "GET", &format!("/v1/courses/{course}"), Some(&cw), None);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(log.lines().count() > 10, "the server logged at debug level:\n{log}");
    assert!(log.contains(&yp), "ids are logged (the test would prove nothing otherwise)");
    assert!(log.contains("handled"), "requests are logged");
    for s in secrets.iter().chain([PW, &cw, &mentor].iter()) {
        assert!(!log.contains(s), "the server log contains {s:?}");
    }
}

#[test]
fn sigkill_during_http_check_ins_loses_no_acknowledged_write() {
    let cycles: usize = std::env::var("VIVIRK_HTTP_KILL_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    kill_loop(cycles);
}

/// The long mode: `cargo test --test integration -- --ignored http_kill_loop_long`.
#[test]
#[ignore]
fn http_kill_loop_long() {
    kill_loop(50);
}

fn kill_loop(cycles: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let first = start(&data, None);
    let (cw, mentor, course, placement, _) =
        setup(&first.base, first.admin_password.as_deref().unwrap(), ["a", "b", "c"]);
    let mut server = first;
    let acked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut ready_ms = Vec::new();
    let mut seed: u64 =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7)
            | 1;
    for cycle in 0..cycles {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let target = 5 + (seed % 60) as usize;
        let before = acked.lock().unwrap().len();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for t in 0..4 {
            let (base, mentor, course, placement, acked, stop) =
                (server.base.clone(), mentor.clone(), course.clone(), placement.clone(), acked.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let id = uuid::Uuid::new_v4().to_string();
                    let body = json!({"event_id": id, "placement_id": placement, "attendance": "present",
                        "wellbeing": 1 + t % 5, "tasks_done": [], "concerns": null, "next_step": null});
                    match call(&base, "POST", &format!("/v1/courses/{course}/check-ins"), Some(&mentor), Some(&body)) {
                        Ok((201, _)) => acked.lock().unwrap().push(id),
                        Ok((s, v)) => panic!("cycle {cycle}: unexpected {s} {v:?}"),
                        Err(_) => return, // the server is gone
                    }
                }
            }));
        }
        // Kill at a random moment: once `target` more writes were acknowledged.
        while acked.lock().unwrap().len() < before + target && !threads.iter().all(|t| t.is_finished()) {
            std::thread::yield_now();
        }
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        let started = Instant::now();
        server = start(&data, None);
        let (s, _) = call(&server.base, "GET", "/readyz", None, None).unwrap();
        assert_eq!(s, 200);
        ready_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        // Every acknowledged check-in is in the record, and the course verifies.
        let mut stored = std::collections::HashSet::new();
        let mut from = 1;
        loop {
            let page = ok(
                &server.base,
                "GET",
                &format!("/v1/courses/{course}/events?from_version={from}&limit=1000"),
                Some(&cw),
                None,
            );
            let items = page.as_array().unwrap();
            if items.is_empty() {
                break;
            }
            for e in items {
                stored.insert(e["event_id"].as_str().unwrap().to_owned());
                from = e["stream_version"].as_u64().unwrap() + 1;
            }
        }
        for id in acked.lock().unwrap().iter() {
            assert!(stored.contains(id), "cycle {cycle}: acknowledged check-in {id} is lost");
        }
        let v = ok(&server.base, "GET", &format!("/v1/courses/{course}/verify"), Some(&cw), None);
        assert_eq!(v["ok"], true, "cycle {cycle}: {v:?}");
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    ready_ms.sort_by(f64::total_cmp);
    println!(
        "HTTP kill loop: {cycles} SIGKILLs, {} acknowledged check-ins all present; restart-to-ready median {:.0} ms, max {:.0} ms",
        acked.lock().unwrap().len(),
        ready_ms[ready_ms.len() / 2],
        ready_ms[ready_ms.len() - 1]
    );
    assert!(acked.lock().unwrap().len() >= cycles * 5);
}

#[test]
fn hostile_tokens_are_401_and_append_nothing() {
    use base64::Engine;
    let tmp = tempfile::tempdir().unwrap();
    let mut server = start(&tmp.path().join("data"), None);
    let base = server.base.clone();
    let (cw, mentor, course, placement, _) = setup(&base, server.admin_password.as_deref().unwrap(), ["a", "b", "c"]);
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let parts: Vec<&str> = mentor.split('.').collect();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let mut admin_claims = claims.clone();
    admin_claims["role"] = json!("admin");
    let jwks = ok(&base, "GET", "/.well-known/jwks.json", None, None);
    let public_x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let hs256 = {
        use sha2::Digest;
        // HMAC-SHA256 with the public key as secret, by hand (RFC 2104), to forge the classic
        // algorithm-confusion token.
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&public_x).unwrap();
        let mut k = [0u8; 64];
        k[..key.len()].copy_from_slice(&key);
        let header = b64(&json!({"alg": "HS256", "typ": "JWT"}));
        let msg = format!("{header}.{}", parts[1]);
        let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).chain(msg.bytes()).collect();
        let inner = sha2::Sha256::digest(&inner);
        let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(inner).collect();
        format!("{msg}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&outer)))
    };
    let hostile = vec![
        ("alg none", format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), parts[1])),
        ("HS256 with the public key", hs256),
        ("tampered payload", format!("{}.{}.{}", parts[0], b64(&admin_claims), parts[2])),
        ("no signature", format!("{}.{}", parts[0], parts[1])),
        ("garbage", "not.a.token".to_owned()),
        ("oversized", format!("{}.{}.{}", parts[0], "A".repeat(20_000), parts[2])),
        ("empty", String::new()),
    ];
    let body = json!({"placement_id": placement, "attendance": "present", "wellbeing": 3, "tasks_done": [], "concerns": null, "next_step": null});
    let head_before =
        ok(&base, "GET", &format!("/v1/courses/{course}/verify"), Some(&cw), None)["events"].as_u64().unwrap();
    for (what, token) in &hostile {
        let (s, v) = call(&base, "POST", &format!("/v1/courses/{course}/check-ins"), Some(token), Some(&body)).unwrap();
        assert_eq!(s, 401, "{what}: {v:?}");
        assert!(v["code"].as_str().is_some_and(|c| !c.is_empty()), "{what}: {v:?}");
    }
    let head_after =
        ok(&base, "GET", &format!("/v1/courses/{course}/verify"), Some(&cw), None)["events"].as_u64().unwrap();
    assert_eq!(head_before, head_after, "a hostile token appended something");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// A small tmpfs for the data directory; `None` where mounting is not allowed (not root).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(path).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(path.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_gives_503_keeps_reads_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&tmp.path().join("fs"), "24m") else {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let data = fs.0.join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vivirk"))
        .args(["serve", "--bind", "127.0.0.1:0", "--segment-size", "262144", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut password = None;
    let base = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(p) = line.strip_prefix("First start: created the account `admin` with password: ") {
            password = Some(p.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("vivirk listening on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let (cw, mentor, course, placement, _) = setup(&base, password.as_deref().unwrap(), ["a", "b", "c"]);
    // Fill the file system, leaving a little room.
    let filler = fs.0.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let len = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&filler).unwrap().set_len(len.saturating_sub(128 * 1024)).unwrap();
    let body = |id: &str| {
        json!({"event_id": id, "placement_id": placement, "attendance": "present", "wellbeing": 3,
        "tasks_done": ["a task with a little text to take up some room"], "concerns": null, "next_step": null})
    };
    let mut acked = Vec::new();
    let mut refused = None;
    for _ in 0..20_000 {
        let id = uuid::Uuid::new_v4().to_string();
        let (s, v) =
            call(&base, "POST", &format!("/v1/courses/{course}/check-ins"), Some(&mentor), Some(&body(&id))).unwrap();
        match s {
            201 => acked.push(id),
            503 => {
                refused = Some(v);
                break;
            }
            other => panic!("unexpected {other}: {v:?}"),
        }
    }
    let refused = refused.expect("the disk filled up, but writes never failed");
    assert_eq!(refused["code"], "storage_unavailable", "{refused:?}");
    // Reads keep working.
    let history = ok(&base, "GET", &format!("/v1/courses/{course}/contacts?limit=5"), Some(&cw), None);
    assert!(history["items"].as_array().is_some_and(|i| !i.is_empty()));
    // Space returns: writes resume.
    std::fs::remove_file(&filler).unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let (s, v) =
        call(&base, "POST", &format!("/v1/courses/{course}/check-ins"), Some(&mentor), Some(&body(&id))).unwrap();
    assert_eq!(s, 201, "after space returned: {v:?}");
    acked.push(id);
    let v = ok(&base, "GET", &format!("/v1/courses/{course}/verify"), Some(&cw), None);
    assert_eq!(v["ok"], true, "{v:?}");
    // Nothing acknowledged was lost, and nothing is corrupt after a restart.
    child.kill().unwrap();
    child.wait().unwrap();
    let mut restarted = start_with(&data, None, &["--segment-size", "262144"]);
    let mut stored = std::collections::HashSet::new();
    let mut from = 1;
    loop {
        let page = ok(
            &restarted.base,
            "GET",
            &format!("/v1/courses/{course}/events?from_version={from}&limit=1000"),
            Some(&cw),
            None,
        );
        let items = page.as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        for e in &items {
            stored.insert(e["event_id"].as_str().unwrap().to_owned());
            from = e["stream_version"].as_u64().unwrap() + 1;
        }
    }
    assert!(acked.iter().all(|id| stored.contains(id)), "an acknowledged check-in was lost");
    println!(
        "disk full: {} check-ins acknowledged before the 503, all present after recovery and restart",
        acked.len() - 1
    );

    // (A read-only data directory under a running server: see the loop-device ext4 test below.)
    let base = restarted.base.clone();
    let v = ok(&base, "GET", &format!("/v1/courses/{course}/verify"), Some(&cw), None);
    assert_eq!(v["ok"], true, "{v:?}");
    restarted.child.kill().unwrap();
    restarted.child.wait().unwrap();
}

/// An ext4 file system in a file on a loop device, for a real read-only fault: mounted with
/// `errors=remount-ro`, an ext4 error (`/sys/fs/ext4/<dev>/trigger_fs_error`, the kernel's own
/// test hook) turns it read-only at once, open files included, exactly as a failing disk would.
/// `None` where that is not possible (not root, no loop devices, no mkfs.ext4).
///
/// Why not a plain read-only remount: Linux refuses `mount -o remount,ro` (also of a bind mount)
/// with EBUSY while a file is open for writing — and the server always has its segment open.
struct LoopExt4 {
    image: std::path::PathBuf,
    device: String,
    mountpoint: std::path::PathBuf,
}

impl LoopExt4 {
    fn create(dir: &Path, size_mib: u64) -> Option<Self> {
        let run = |cmd: &str, args: &[&str]| {
            Command::new(cmd)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
        };
        let image = dir.join("ext4.img");
        std::fs::File::create(&image).ok()?.set_len(size_mib << 20).ok()?;
        run("mkfs.ext4", &["-q", "-F", image.to_str()?])?;
        let out = run("losetup", &["--find", "--show", image.to_str()?])?;
        let device = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        let mountpoint = dir.join("fs");
        std::fs::create_dir_all(&mountpoint).ok()?;
        let fs = LoopExt4 { image, device, mountpoint };
        run("mount", &["-o", "errors=remount-ro", &fs.device, fs.mountpoint.to_str()?])?;
        fs.trigger_path().exists().then_some(fs)
    }

    fn trigger_path(&self) -> std::path::PathBuf {
        let name = self.device.rsplit('/').next().unwrap_or_default();
        Path::new("/sys/fs/ext4").join(name).join("trigger_fs_error")
    }

    /// Makes the file system read-only now (an ext4 error with errors=remount-ro).
    fn fail(&self) {
        std::fs::write(self.trigger_path(), "vivirk read-only fault test\n").expect("trigger an ext4 error");
    }

    /// The fault cleared: unmount, repair, mount read-write again (needs every file closed).
    fn repair(&self) {
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        assert!(ok(Command::new("umount").arg(&self.mountpoint)), "umount");
        // e2fsck: 0 clean, 1 errors corrected.
        let fsck = Command::new("e2fsck").arg("-fy").arg(&self.image).stdout(Stdio::null()).status().unwrap();
        assert!(matches!(fsck.code(), Some(0 | 1)), "e2fsck: {fsck:?}");
        assert!(ok(Command::new("mount").args(["-o", "errors=remount-ro", &self.device]).arg(&self.mountpoint)));
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mountpoint).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

/// Kills the server when a test fails halfway, so the file system can be unmounted.
struct Killed(Server);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

fn stored_event_ids(base: &str, token: &str, course: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut from = 1;
    loop {
        let page =
            ok(base, "GET", &format!("/v1/courses/{course}/events?from_version={from}&limit=1000"), Some(token), None);
        let items = page.as_array().unwrap();
        if items.is_empty() {
            return ids;
        }
        for e in items {
            ids.push(e["event_id"].as_str().unwrap().to_owned());
            from = e["stream_version"].as_u64().unwrap() + 1;
        }
    }
}

#[test]
fn a_read_only_data_dir_gives_503_keeps_reads_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(fs) = LoopExt4::create(tmp.path(), 64) else {
        eprintln!("skipped: cannot mount an ext4 image on a loop device here (not root, or no loop devices/mkfs.ext4)");
        return;
    };
    let data = fs.mountpoint.join("data");
    let stderr = tmp.path().join("server.log");
    let segment = ["--segment-size", "1048576"];
    let server = Killed(start_with(&data, Some(&stderr), &segment));
    let base = server.0.base.clone();
    let (cw, mentor, course, placement, _) = setup(&base, server.0.admin_password.as_deref().unwrap(), ["a", "b", "c"]);
    let body = move |id: &str, t: usize| {
        json!({"event_id": id, "placement_id": placement, "attendance": "present", "wellbeing": 1 + t % 5,
        "tasks_done": ["stocked shelves"], "concerns": null, "next_step": null})
    };

    // Check-ins from three phones; the disk turns read-only while they keep writing. The fault
    // lands between requests (`gate`): an ext4 abort racing an fdatasync can lose the write the
    // kernel has just reported durable — shown without vivirk, with a loop of pwrite+fdatasync
    // on the same setup (1 of 10 runs lost its last acknowledged write) — so "nothing
    // acknowledged is lost" is only a fair check for writes acknowledged before the fault.
    let gate = Arc::new(std::sync::RwLock::new(()));
    let acked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let refused: Arc<Mutex<Vec<(String, usize, Value)>>> = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let (base, mentor, course, acked, refused, gate) =
                (base.clone(), mentor.clone(), course.clone(), acked.clone(), refused.clone(), gate.clone());
            let body = body.clone();
            std::thread::spawn(move || {
                loop {
                    let id = uuid::Uuid::new_v4().to_string();
                    let path = format!("/v1/courses/{course}/check-ins");
                    let _writing = gate.read().unwrap();
                    match call(&base, "POST", &path, Some(&mentor), Some(&body(&id, t))).unwrap() {
                        (201, _) => acked.lock().unwrap().push(id),
                        (503, v) => {
                            refused.lock().unwrap().push((id, t, v));
                            return;
                        }
                        (s, v) => panic!("unexpected {s}: {v:?}"),
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 30 {
        std::thread::yield_now();
    }
    {
        let _between_requests = gate.write().unwrap();
        fs.fail();
    }
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let refused = refused.lock().unwrap().clone();
    for (_, _, v) in &refused {
        assert_eq!(v["code"], "storage_unavailable", "{v:?}");
        assert_eq!(v["status"], 503, "{v:?}");
    }
    // Later writes are refused the same way, as problem JSON.
    let r = agent()
        .post(format!("{base}/v1/courses/{course}/check-ins"))
        .header("authorization", format!("Bearer {mentor}"))
        .header("content-type", "application/json")
        .send(serde_json::to_vec(&body(&uuid::Uuid::new_v4().to_string(), 0)).unwrap())
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers().get("content-type").unwrap(), "application/problem+json");
    // Reads keep working; readiness says the server cannot take writes, liveness that it runs.
    let history = ok(&base, "GET", &format!("/v1/courses/{course}/contacts?limit=5"), Some(&cw), None);
    assert!(history["items"].as_array().is_some_and(|i| !i.is_empty()), "{history:?}");
    ok(&base, "GET", &format!("/v1/courses/{course}"), Some(&cw), None);
    ok(&base, "GET", "/v1/me/courses", Some(&mentor), None);
    let (s, v) = call(&base, "GET", "/readyz", None, None).unwrap();
    assert_eq!((s, v["code"].as_str()), (503, Some("storage_unavailable")), "{v:?}");
    assert_eq!(call(&base, "GET", "/healthz", None, None).unwrap().0, 200);
    let log = std::fs::read_to_string(&stderr).unwrap();
    // EROFS when the write finds the file system read-only, EIO when it turned read-only under
    // the write (its journal aborted between the write and the sync).
    assert!(
        log.contains("os error 30") || log.contains("os error 5)"),
        "the writes did not fail on the file system (EROFS or EIO):\n{log}"
    );

    // The fault clears only with every file closed: stop the server, repair, start again.
    // The start's recovery cuts a torn tail (the refused group commit may be partly on disk:
    // its write can have reached the disk before the sync failed).
    drop(server);
    fs.repair();
    let restart_log = tmp.path().join("restart.log");
    let server = Killed(start_with(&data, Some(&restart_log), &segment));
    let base = server.0.base.clone();
    let stored = stored_event_ids(&base, &cw, &course);
    for id in &acked {
        assert!(stored.contains(id), "acknowledged check-in {id} is lost");
    }
    // Writes resume, and the phones' retries of the refused check-ins (same event ids) append
    // each exactly once.
    for (id, t, _) in &refused {
        let (s, v) =
            call(&base, "POST", &format!("/v1/courses/{course}/check-ins"), Some(&mentor), Some(&body(id, *t)))
                .unwrap();
        assert_eq!(s, 201, "retry after the repair: {v:?}");
    }
    let stored = stored_event_ids(&base, &cw, &course);
    for (id, _, _) in &refused {
        assert_eq!(stored.iter().filter(|s| *s == id).count(), 1, "{id}");
    }
    let v = ok(&base, "GET", &format!("/v1/courses/{course}/verify"), Some(&cw), None);
    assert_eq!(v["ok"], true, "{v:?}");
    drop(server);
    let offline =
        Command::new(env!("CARGO_BIN_EXE_vivirk")).args(["verify", "--data-dir"]).arg(&data).output().unwrap();
    assert!(offline.status.success(), "verify: {}", String::from_utf8_lossy(&offline.stdout));
    let cut = std::fs::read_to_string(&restart_log).unwrap().contains("torn");
    println!(
        "read-only data dir: {} check-ins acknowledged before the fault, all present after repair and restart{}; {} refused with 503 and retried once each",
        acked.len(),
        if cut { " (a torn tail was cut)" } else { "" },
        refused.len()
    );
}
