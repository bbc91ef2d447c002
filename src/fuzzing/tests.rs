//! The fuzz corpora as regression tests, the targets' bookkeeping, and the seed writer.

use std::path::{Path, PathBuf};

use super::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fuzz")
}

/// The files of a corpus or artifacts directory (none if it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    out.sort();
    out
}

/// Every seed, every input a fuzzer added to a local corpus, and every crash kept in
/// `artifacts/` passes its target's check: what was found once stays fixed.
#[test]
fn every_corpus_and_artifact_file_passes_its_check() {
    let mut failures = Vec::new();
    for (name, check) in TARGETS {
        let seeds = files(&fuzz_dir().join("corpus").join(name));
        assert!(!seeds.is_empty(), "no seed corpus for {name}: run the seed writer (see below)");
        for path in seeds.iter().chain(&files(&fuzz_dir().join("artifacts").join(name))) {
            let data = std::fs::read(path).unwrap();
            if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {msg}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "fuzz inputs that fail their check:\n{}", failures.join("\n"));
}

/// Each check has its fuzz target, and the fuzz crate declares exactly those.
#[test]
fn every_check_has_a_fuzz_target() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let declared: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "vivirk-fuzz")
        .collect();
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(declared, names, "tests/fuzz/Cargo.toml's [[bin]]s and fuzzing::TARGETS differ");
    for name in names {
        let src = std::fs::read_to_string(fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"))).unwrap();
        assert!(
            src.contains(&format!("vivirk::fuzzing::{name}::check(")),
            "fuzz_targets/{name}.rs calls another check"
        );
    }
}

/// The request target knows every write endpoint with a JSON body, with the right body type.
#[test]
fn the_request_target_covers_every_write_endpoint() {
    use super::request_body::{COURSE_ENDPOINTS, OTHER_ENDPOINTS};
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json")).unwrap(),
    )
    .unwrap();
    let table: Vec<_> = COURSE_ENDPOINTS.iter().chain(OTHER_ENDPOINTS).collect();
    let mut covered = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let Some(schema) = ops["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str() else {
            continue;
        };
        // Sign-in, refresh, logout and password change: two strings each, checked by auth.
        if path.starts_with("/v1/auth/") || path == "/v1/accounts/me/password" {
            continue;
        }
        let ep = table.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("POST {path} is not fuzzed"));
        assert_eq!(schema, format!("#/components/schemas/{}Request", ep.body), "POST {path} takes another body");
        covered += 1;
    }
    assert_eq!(covered, table.len() - 1, "the table has endpoints the API does not (the cursor aside)");
}

/// Writes the seed corpora from real data: a log written by `EventLog`, exports written by
/// `write_export`, views folded by the projections, the bodies of `events/examples`.
///
/// `cargo test --lib fuzzing::tests::write_seed_corpus -- --ignored`
#[test]
#[ignore = "writes tests/fuzz/corpus; run by hand"]
fn write_seed_corpus() {
    for (name, seeds) in seeds::all() {
        let dir = fuzz_dir().join("corpus").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for old in files(&dir) {
            if old.file_name().is_some_and(|n| n.to_string_lossy().starts_with("seed-")) {
                std::fs::remove_file(old).unwrap();
            }
        }
        for (file, bytes) in seeds {
            std::fs::write(dir.join(format!("seed-{file}")), bytes).unwrap();
        }
    }
}

mod seeds {
    use std::sync::Arc;

    use time::Duration;
    use uuid::Uuid;

    use super::super::event_decode::{COURSE, T0, account_of};
    use super::super::export_verify::signing_key;
    use crate::audit::export::write_export;
    use crate::audit::{PublicKey, Scope, SignedCheckpoint};
    use crate::clock::ManualClock;
    use crate::domain::testing;
    use crate::domain::{CourseEvent, EventMeta, Role};
    use crate::log::{EventLog, ExpectedVersion, LogActor, LogConfig, Metadata, NewEvent, StreamId};
    use crate::projections::{CourseView, Recorded, codec};

    type Seeds = Vec<(String, Vec<u8>)>;

    pub fn all() -> Vec<(&'static str, Seeds)> {
        let (log_seeds, export_seeds) = log_and_exports();
        vec![
            ("log_record", log_seeds),
            ("event_decode", events()),
            ("export_verify", export_seeds),
            ("request_body", requests()),
            ("projection_record", views()),
        ]
    }

    /// The course examples with who records them.
    fn history() -> Vec<(Role, CourseEvent)> {
        testing::course_examples()
            .into_iter()
            .map(|e| {
                let role = match e {
                    CourseEvent::CheckInLogged(_) => Role::Mentor,
                    CourseEvent::GuidanceSessionHeld(_) => Role::Teacher,
                    _ => Role::Caseworker,
                };
                (role, e)
            })
            .collect()
    }

    fn new_event(n: usize, role: Role, e: &CourseEvent) -> NewEvent {
        NewEvent {
            event_id: Uuid::from_u128(1000 + n as u128),
            event_type: e.event_type().into(),
            schema_version: e.schema_version(),
            occurred_at: T0 + Duration::minutes(n as i64),
            actor: LogActor { account_id: account_of(role).0, role: role.as_str().into() },
            metadata: Metadata {
                correlation_id: n.is_multiple_of(2).then(|| Uuid::from_u128(0xC0_0000 + n as u128)),
                causation_id: None,
                device_id: (role == Role::Mentor).then(|| "phone-1".into()),
            },
            data: e.to_data(),
        }
    }

    /// Frames of a real segment, and exports of the same log.
    fn log_and_exports() -> (Seeds, Seeds) {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = LogConfig::new(tmp.path());
        config.clock = Arc::new(ManualClock::new(T0 + Duration::hours(1)));
        let (log, _) = EventLog::open(config).unwrap();
        let course = StreamId::for_entity("course", COURSE.0);
        let company = StreamId::for_entity("company", testing::COMPANY.0);
        let history = history();
        // Appends of one, two and three events, so frames with and without TXN_END.
        let mut n = 0;
        for size in [1, 2, 3, 1, 2, 1, 3, 1, 2, 1, 3, 1, 2, 1, 3] {
            let events: Vec<_> =
                history.iter().skip(n).take(size).enumerate().map(|(i, (r, e))| new_event(n + i, *r, e)).collect();
            if events.is_empty() {
                break;
            }
            n += events.len();
            log.append_blocking(&course, ExpectedVersion::Any, events).unwrap();
            if n == 6 {
                let c = testing::company_examples();
                let events = c.iter().take(2).enumerate().map(|(i, e)| NewEvent {
                    event_type: e.event_type().into(),
                    schema_version: e.schema_version(),
                    data: e.to_data(),
                    ..new_event(100 + i, Role::Caseworker, &history[0].1)
                });
                log.append_blocking(&company, ExpectedVersion::Any, events.collect()).unwrap();
            }
        }
        let (head, head_hash) = log.head();

        // The segment's frames, after its header, up to its logical end.
        let seg = std::fs::read(tmp.path().join("log").join(format!("{:020}.seg", 1))).unwrap();
        let mut frames = Vec::new();
        let mut at = 16;
        while at + 8 <= seg.len() {
            let len = u32::from_le_bytes(seg[at..at + 4].try_into().unwrap()) as usize;
            if len == 0 {
                break;
            }
            frames.push(&seg[at..at + 8 + len]);
            at += 8 + len;
        }
        assert_eq!(frames.len() as u64, head);
        let body = |range: std::ops::Range<usize>| frames[range].concat();
        let with = |mode: u8, location: u16, damage: u8, body: Vec<u8>| {
            let mut v = vec![mode];
            v.extend_from_slice(&location.to_le_bytes());
            v.push(damage);
            v.extend(body);
            v
        };
        let mut log_seeds = vec![
            ("frames-1-4".into(), with(0, 0, 0, body(0..4))),
            ("frames-5-8".into(), with(0, 0, 0, body(4..8))),
            ("rebuilt-anchored".into(), with(0b0011, 0, 0, body(0..6))),
            ("rebuilt-unanchored".into(), with(0b0001, 0, 0, body(8..14))),
            ("rebuilt-cut".into(), with(0b0111, 40_000, 0, body(0..6))),
            ("rebuilt-damaged".into(), with(0b1011, 20_000, 0x40, body(0..6))),
            ("rebuilt-damaged-tail".into(), with(0b1001, 60_000, 0x01, body(14..20))),
        ];
        let mut torn = body(20..24);
        torn.truncate(torn.len() - 100);
        log_seeds.push(("torn-tail".into(), with(0, 0, 0, torn)));

        // Exports: the whole log with a checkpoint, and the course.
        let key = signing_key();
        let public = PublicKey::from_verifying(&key.verifying_key());
        let at = T0 + Duration::hours(2);
        let checkpoint = |position: u64, hash: crate::log::Hash| {
            use base64::Engine;
            use ed25519_dalek::Signer;
            let sig = key.sign(&SignedCheckpoint::message(position, &hash, at));
            SignedCheckpoint {
                position,
                hash,
                signed_at: at,
                kid: public.kid.clone(),
                signature: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig.to_bytes()),
            }
        };
        let export = |scope: Scope| {
            let mut out = Vec::new();
            write_export(&log, scope, Some(checkpoint(head, head_hash)), Some(public.clone()), at, &mut out).unwrap();
            out
        };
        let full = export(Scope::Full);
        let course_export = export(Scope::Course { course_id: COURSE.0 });
        let lines =
            |b: &[u8], n: usize| -> Vec<u8> { b.split_inclusive(|c| *c == b'\n').take(n).flatten().copied().collect() };
        let export_seeds = vec![
            ("full-head".into(), lines(&full, 9)),
            ("course-head".into(), lines(&course_export, 6)),
            ("full-truncated".into(), {
                let mut b = lines(&full, 5);
                b.pop();
                b
            }),
            ("course-no-checkpoint".into(), {
                let mut b = lines(&course_export, 4);
                let header_end = b.iter().position(|c| *c == b'\n').unwrap();
                let mut header: serde_json::Value = serde_json::from_slice(&b[..header_end]).unwrap();
                header["checkpoint"] = serde_json::Value::Null;
                header["public_key"] = serde_json::Value::Null;
                header["events"] = 3.into();
                let mut out = serde_json::to_vec(&header).unwrap();
                out.extend(b.split_off(header_end));
                out
            }),
        ];
        (log_seeds, export_seeds)
    }

    fn line(role: Role, event_type: &str, version: u16, data: &[u8]) -> Vec<u8> {
        let mut l = format!("{} {event_type} {version} ", role.as_str()).into_bytes();
        l.extend_from_slice(data);
        l.push(b'\n');
        l
    }

    /// Stored payloads: the examples in stream order, three to a seed, the old versions, and
    /// the company and account events.
    fn events() -> Seeds {
        let history = history();
        let mut out: Seeds = history
            .chunks(3)
            .enumerate()
            .map(|(i, chunk)| {
                let mut seed = Vec::new();
                if i > 0 {
                    // Every seed opens the course first, so what follows has something to act on.
                    let (r, e) = &history[0];
                    seed.extend(line(*r, e.event_type(), e.schema_version(), &e.to_data()));
                }
                for (r, e) in chunk {
                    seed.extend(line(*r, e.event_type(), e.schema_version(), &e.to_data()));
                }
                (format!("course-{:02}", i * 3 + 1), seed)
            })
            .collect();
        let fixtures = crate::domain::schema::events_dir().join("fixtures");
        for (name, file) in [
            ("contact-v1", "ContactLogged.v1.json"),
            ("correction-of-v1", "EventCorrected.v1-with-ContactLogged.v1.json"),
        ] {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(fixtures.join(file)).unwrap()).unwrap();
            let data = serde_json::to_vec(&v["data"]).unwrap();
            let t = v["event_type"].as_str().unwrap();
            let version = v["schema_version"].as_u64().unwrap() as u16;
            let (r, e) = &history[0];
            let mut seed = line(*r, e.event_type(), e.schema_version(), &e.to_data());
            seed.extend(line(Role::Caseworker, t, version, &data));
            out.push((name.into(), seed));
        }
        let company: Vec<u8> = testing::company_examples()
            .iter()
            .flat_map(|e| line(Role::Caseworker, e.event_type(), e.schema_version(), &e.to_data()))
            .collect();
        out.push(("company".into(), company));
        let account = br#"admin AccountCreated 1 {"account_id":"00000000-0000-0000-0000-000000000005","username":"mentor.kim","display_name":"Kim","role":"mentor","password_hash":"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"}
admin AccountRoleChanged 1 {"account_id":"00000000-0000-0000-0000-000000000005","role":"teacher"}
admin AccountDisabled 1 {"account_id":"00000000-0000-0000-0000-000000000005"}
"#;
        out.push(("account".into(), account.to_vec()));
        out
    }

    /// One body per endpoint, from the examples' payloads, by a role that may send it.
    fn requests() -> Seeds {
        use super::super::request_body::{COURSE_ENDPOINTS, OTHER_ENDPOINTS, endpoint};
        let examples = testing::course_examples();
        let n = COURSE_ENDPOINTS.len() + OTHER_ENDPOINTS.len();
        let role_index = |r: Role| Role::ALL.iter().position(|x| *x == r).unwrap() as u8;
        let mut out = Seeds::new();
        for i in 0..n {
            let ep = endpoint(i as u8);
            let (role, mut body) = if let Some(e) = examples.iter().find(|e| ep.body == e.event_type()) {
                let role = match e {
                    CourseEvent::CheckInLogged(_) => Role::Mentor,
                    CourseEvent::GuidanceSessionHeld(_) => Role::Teacher,
                    _ => Role::Caseworker,
                };
                let mut v = e.to_value();
                match e {
                    // What the staffed course of the check holds: the contact is its 11th event.
                    CourseEvent::EventCorrected(_) => v["target_event_id"] = testing::ev(10).to_string().into(),
                    CourseEvent::EventRetracted(_) => v["target_event_id"] = testing::ev(11).to_string().into(),
                    CourseEvent::ParticipantAssigned(_) => v["account_id"] = Uuid::from_u128(0x0A).to_string().into(),
                    _ => {}
                }
                (role, v)
            } else if let Some(e) = testing::company_examples().iter().find(|e| ep.body == e.event_type()) {
                (Role::Caseworker, e.to_value())
            } else if ep.body == "NewAccount" {
                let v = serde_json::json!({
                    "username": "Mentor.Kim", "display_name": "Kim", "role": "mentor",
                    "password": "correct horse battery staple"
                });
                (Role::Admin, v)
            } else {
                let c = crate::projections::views::Cursor { occurred_at: T0, position: 12 };
                out.push((format!("{i:02}-history-cursor"), [vec![i as u8, 0], c.encode().into_bytes()].concat()));
                continue;
            };
            // The path's ids come from the path; new things get new ids, the server's or the
            // client's.
            for (_, field) in ep.bind {
                body.as_object_mut().unwrap().remove(*field);
            }
            if ep.path.contains('{') {
                for field in ep.generate {
                    match i % 2 {
                        0 => body.as_object_mut().unwrap().remove(*field),
                        _ => body
                            .as_object_mut()
                            .unwrap()
                            .insert(field.to_string(), Uuid::from_u128(0xF0 + i as u128).to_string().into()),
                    };
                }
            }
            if i % 3 == 0 && ep.path.starts_with("/v1/courses/") {
                body["event_id"] = Uuid::from_u128(0xE0 + i as u128).to_string().into();
                body["occurred_at"] = "2025-06-03T10:15:00+02:00".into();
                body["device_id"] = "phone-1".into();
            }
            let name = ep.path.rsplit('/').find(|s| !s.starts_with('{')).unwrap_or("x").replace('?', "-");
            let mut seed = vec![i as u8, role_index(role)];
            seed.extend(serde_json::to_vec(&body).unwrap());
            out.push((format!("{i:02}-{name}"), seed));
        }
        out
    }

    /// Views folded from the examples, at three points, as whole records, chunks and heads with
    /// a tail, without their CRC.
    fn views() -> Seeds {
        let history = history();
        [5, 14, history.len()]
            .into_iter()
            .map(|upto| {
                let mut view = CourseView::new(COURSE);
                for (n, (role, e)) in history.iter().take(upto).enumerate() {
                    let at = T0 + Duration::minutes(n as i64);
                    let meta = EventMeta {
                        event_id: Uuid::from_u128(1000 + n as u128),
                        stream_version: n as u64 + 1,
                        occurred_at: at,
                        recorded_at: at,
                        actor: crate::domain::Actor { account_id: account_of(*role), role: *role },
                    };
                    view.apply(&Recorded { position: n as u64 + 1, offset: Default::default(), meta }, e);
                }
                view
            })
            .flat_map(|view| {
                let n = view.observations.len();
                let mut out = vec![(format!("view-{n:02}-observations"), codec::encode(&view)[4..].to_vec())];
                if n > 0 {
                    let half = n / 2;
                    out.push((
                        format!("chunk-{half:02}-observations"),
                        codec::encode_chunk(&view.observations.iter().take(half).cloned().collect::<Vec<_>>())[4..]
                            .to_vec(),
                    ));
                    out.push((
                        format!("head-tail-from-{half:02}"),
                        codec::encode_head(&view, &[0xC0FFEE])[4..].to_vec(),
                    ));
                }
                out
            })
            .collect()
    }
}
