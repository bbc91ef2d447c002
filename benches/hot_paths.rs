//! Micro-benchmarks of what every request does, so a regression shows up here before it reaches
//! the HTTP figure (`benches/load.py`). `cargo bench --bench hot_paths` runs them all;
//! `cargo bench --bench hot_paths -- projection` only those whose path contains `projection`.
//!
//! The inputs are the real thing: a log of COURSES courses of HISTORY events each, made by the
//! generator of `vivirk bench projections` (contacts, check-ins, guidance sessions, meetings,
//! actions, goal progress, corrections), appended to an `EventLog` in a temporary directory
//! (durability off: appending is `vivirk bench log`'s job), with projections, the decision cache
//! and accounts opened on it as `vivirk serve` opens them. Request bodies are the published
//! examples in `events/examples`. Every benchmark works on course 0, a course with HISTORY
//! events. With `HOT_PATHS_SIZES=1` set, the setup also prints the JSON sizes of the history page
//! and the course status.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use actix_web::ResponseError;
use divan::{Bencher, black_box};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use vivirk::api::{ApiError, etag_json, tagged_json, version_tag};
use vivirk::app::{AppError, Permission, Principal, Vivirk, access, decode_course};
use vivirk::auth::{Auth, AuthConfig};
use vivirk::bench_support::{Tokens, parse_write};
use vivirk::clock::{ManualClock, SharedClock};
use vivirk::domain::course::{CheckInLogged, ContactLogged};
use vivirk::domain::{
    CommandContext, CourseCommand, CourseEvent, CourseId, CourseState, DomainError, EventMeta, Role, apply, decide,
};
use vivirk::log::{
    Durability, Envelope, EventLog, ExpectedVersion, Hash, LogConfig, RecordHeader, StreamId, crc_ok, decode_payload,
    encode_frame,
};
use vivirk::projections::bench::{Gen, course_events};
use vivirk::projections::views::{self, HistoryFilter};
use vivirk::projections::{AsOf, CourseView, ProjectionConfig, Projections, Recorded, decode_envelope, fold_envelopes};

/// Courses in the log.
const COURSES: u64 = 1_000;
/// Events per course (course 0 is the one measured).
const HISTORY: u64 = 200;
/// The page size the API serves by default.
const PAGE: usize = 50;
/// The key our fixed access tokens are signed with (a benchmark's, not a secret).
const JWT_SEED: [u8; 32] = [7; 32];

fn main() {
    if std::env::var_os("HOT_PATHS_SIZES").is_some() {
        let f = fx();
        let page = f.projections.contact_history(f.course, &HistoryFilter::default(), None, PAGE);
        let page = serde_json::to_vec(&page.ok().flatten()).map_or(0, |v| v.len());
        let status = serde_json::to_vec(&f.projections.course_status(f.course)).map_or(0, |v| v.len());
        eprintln!("JSON: {PAGE}-item history page {page} bytes, course status {status} bytes");
    }
    divan::main();
    // The fixture is a static, never dropped: remove its directory by hand.
    if let Some(f) = FIXTURE.get() {
        let _ = std::fs::remove_dir_all(&f.dir);
    }
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fx() -> &'static Fixture {
    FIXTURE.get_or_init(|| Fixture::new().unwrap_or_else(|e| panic!("setting up the benchmarks: {e}")))
}

/// One stored event of course 0 in every form the hot paths handle it in.
struct Stored {
    env: Envelope,
    event: CourseEvent,
    meta: EventMeta,
    rec: Recorded,
    canonical: Vec<u8>,
    /// The whole on-disk frame: `len | crc | payload`.
    frame: Vec<u8>,
}

impl Stored {
    fn new(env: Envelope) -> Result<Self, String> {
        let (event, meta) = decode_course(&env).map_err(|e| e.to_string())?;
        let (_, rec, _) = decode_envelope(&env).map_err(|e| format!("{e:?}"))?;
        let canonical = env.canonical_fields().to_vec();
        let mut frame = Vec::new();
        encode_frame(
            &mut frame,
            RecordHeader { flags: 1, batch: 1 },
            &canonical,
            &env.prev_hash,
            &env.hash,
            &env.stream_prev_hash,
            &env.stream_hash,
            &env.data,
        );
        Ok(Stored { env, event, meta, rec, canonical, frame })
    }

    fn payload_and_crc(&self) -> (&[u8], u32) {
        let crc = u32::from_le_bytes([self.frame[4], self.frame[5], self.frame[6], self.frame[7]]);
        (&self.frame[8..], crc)
    }
}

struct Fixture {
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
    log: EventLog,
    app: Vivirk,
    projections: Projections,
    auth: Auth,
    tokens: Tokens,
    now: OffsetDateTime,
    course: CourseId,
    /// Course 0's envelopes, oldest first, as read from the log.
    envelopes: Vec<Envelope>,
    /// Its last check-in and last contact.
    check_in: Stored,
    contact: Stored,
    /// Decision state and projection view after all HISTORY events.
    state: CourseState,
    view: CourseView,
    mentor: Principal,
    caseworker: Principal,
    check_in_cmd: CourseCommand,
    contact_cmd: CourseCommand,
    /// Request bodies as the mentor app and the web client send them.
    check_in_body: Vec<u8>,
    contact_body: Vec<u8>,
    /// Our access token of the mentor, and one of the admin from a real login.
    mentor_token: String,
    admin_token: String,
}

fn course_stream(c: u64) -> StreamId {
    StreamId::for_entity("course", Uuid::from_u128(0xC0_0000 + u128::from(c)))
}

/// A published example's `data`, with some fields replaced, plus the write metadata a client
/// sends.
fn body(example: &str, set: &[(&str, serde_json::Value)]) -> Result<Vec<u8>, String> {
    let v: serde_json::Value = serde_json::from_str(example).map_err(|e| e.to_string())?;
    let mut data = v.get("data").cloned().ok_or("example without data")?;
    let obj = data.as_object_mut().ok_or("example data is not an object")?;
    for (k, val) in set {
        obj.insert((*k).to_owned(), val.clone());
    }
    obj.insert("event_id".into(), serde_json::json!("0196f3a2-8c1d-7e4b-9a30-5d2c7b8e9f10"));
    obj.insert("device_id".into(), serde_json::json!("ios-7F3A9C2E"));
    serde_json::to_vec(&data).map_err(|e| e.to_string())
}

fn participant(state: &CourseState, role: Role) -> Result<Principal, String> {
    state
        .participants
        .iter()
        .find(|a| a.role == role)
        .map(|a| Principal { account_id: a.account_id, role })
        .ok_or_else(|| format!("course 0 has no {role:?}"))
}

impl Fixture {
    fn new() -> Result<Self, String> {
        let dir = tempfile::Builder::new().prefix("vivirk-hot-paths-").tempdir().map_err(|e| e.to_string())?.keep();
        let err = |e: &dyn std::fmt::Display| e.to_string();

        // Course 0's history fixes "now": a day after its last event.
        let mut g = Gen { n: 0 };
        let histories: Vec<_> = (0..COURSES).map(|c| course_events(&mut g, c, HISTORY)).collect::<Result<_, _>>()?;
        let last = histories[0].iter().map(|e| e.occurred_at).max().ok_or("empty history")?;
        let now = last + Duration::days(1);
        let clock = ManualClock::new(now);
        let shared: SharedClock = Arc::new(clock);

        let mut config = LogConfig::new(&dir);
        config.durability = Durability::None;
        config.clock = shared.clone();
        let (log, _) = EventLog::open(config).map_err(|e| err(&e))?;
        // Interleaved in the log, a few events per append, as `vivirk bench projections` does.
        let mut iters: Vec<_> = histories.into_iter().enumerate().map(|(c, h)| (c as u64, h.into_iter())).collect();
        loop {
            let mut any = false;
            for (c, it) in &mut iters {
                let batch: Vec<_> = it.by_ref().take(10).collect();
                if !batch.is_empty() {
                    any = true;
                    log.append_blocking(&course_stream(*c), ExpectedVersion::Any, batch).map_err(|e| err(&e))?;
                }
            }
            if !any {
                break;
            }
        }

        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| err(&e))?;
        let auth_db = sled::Config::new().path(dir.join("auth")).open().map_err(|e| err(&e))?;
        let auth =
            Auth::open(&dir, log.clone(), auth_db, shared.clone(), AuthConfig::default()).map_err(|e| err(&e))?;
        let password = rt.block_on(auth.bootstrap_admin()).map_err(|e| err(&e))?.ok_or("no initial admin")?;
        let admin_token = rt
            .block_on(auth.login("admin", &password, IpAddr::from([127, 0, 0, 1])))
            .map_err(|e| err(&e))?
            .access_token;

        let (projections, _) =
            Projections::rebuild(log.clone(), shared.clone(), ProjectionConfig::new(&dir)).map_err(|e| err(&e))?;
        let app = Vivirk::new(log.clone(), shared.clone());

        let envelopes = log.read_stream(&course_stream(0), 1, false, 1000).map_err(|e| err(&e))?;
        if envelopes.len() as u64 != HISTORY {
            return Err(format!("course 0 has {} events, not {HISTORY}", envelopes.len()));
        }
        let course = CourseId(course_stream(0).entity_id().ok_or("course stream without id")?);
        let decoded = envelopes.iter().map(decode_course).collect::<Result<Vec<_>, _>>().map_err(|e| err(&e))?;
        let state = CourseState::from_events(decoded.iter().map(|(e, m)| (e, m)));
        let (view, _, _) = fold_envelopes(course, &envelopes, AsOf::Head);
        let last_of = |t: &str| -> Result<Stored, String> {
            let env = envelopes.iter().rev().find(|e| e.event_type == t).ok_or(format!("no {t} in course 0"))?;
            Stored::new(env.clone())
        };
        let check_in = last_of("CheckInLogged")?;
        let contact = last_of("ContactLogged")?;

        let mentor = participant(&state, Role::Mentor)?;
        let caseworker = participant(&state, Role::Caseworker)?;
        let placement = state.active_placement.ok_or("course 0 has no active placement")?;
        let young_person = state.young_person.ok_or("course 0 has no young person")?;
        let check_in_body = body(
            include_str!("../events/examples/CheckInLogged.json"),
            &[("placement_id", serde_json::json!(placement.0))],
        )?;
        let contact_body = body(
            include_str!("../events/examples/ContactLogged.json"),
            &[("with", serde_json::json!([young_person.0]))],
        )?;
        let req = write_request();
        let (c, _) = parse_write::<CheckInLogged>(&req, &check_in_body).map_err(|e| err(&e))?;
        let check_in_cmd = CourseCommand::LogCheckIn(c);
        let (c, _) = parse_write::<ContactLogged>(&req, &contact_body).map_err(|e| err(&e))?;
        let contact_cmd = CourseCommand::LogContact(c);

        let tokens = Tokens::new(JWT_SEED).map_err(|e| err(&e))?;
        let mentor_token = tokens.issue(mentor.account_id.0, Role::Mentor, now).map_err(|e| err(&e))?;

        let f = Fixture {
            dir,
            rt,
            log,
            app,
            projections,
            auth,
            tokens,
            now,
            course,
            envelopes,
            check_in,
            contact,
            state,
            view,
            mentor,
            caseworker,
            check_in_cmd,
            contact_cmd,
            check_in_body,
            contact_body,
            mentor_token,
            admin_token,
        };
        f.check()?;
        Ok(f)
    }

    /// Every benchmark measures the successful path: check it once.
    fn check(&self) -> Result<(), String> {
        decide(&self.state, &self.check_in_cmd, &self.ctx(&self.mentor)).map_err(|e| format!("check-in: {e}"))?;
        decide(&self.state, &self.contact_cmd, &self.ctx(&self.caseworker)).map_err(|e| format!("contact: {e}"))?;
        let page = self.projections.contact_history(self.course, &HistoryFilter::default(), None, PAGE);
        match page {
            Ok(Some(p)) if p.items.len() == PAGE && p.items.iter().all(|i| i.detail.is_some()) => {}
            other => return Err(format!("history page: {other:?}")),
        }
        self.projections.course_status(self.course).ok_or("no course status")?;
        self.tokens.verify(&self.mentor_token, self.now).map_err(|e| e.to_string())?;
        self.auth.verify_access(&self.admin_token).map_err(|e| e.to_string())?;
        self.rt.block_on(self.app.check_course_visible(&self.mentor, self.course)).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn ctx(&self, p: &Principal) -> CommandContext {
        CommandContext::now(self.now, p.actor())
    }
}

fn write_request() -> actix_web::HttpRequest {
    actix_web::test::TestRequest::post()
        .uri("/v1/courses/00000000-0000-0000-0000-000000c00000/check-ins")
        .insert_header(("content-type", "application/json"))
        .insert_header(("x-correlation-id", "0196f3a2-8c1d-7e4b-9a30-5d2c7b8e9f11"))
        .to_http_request()
}

/// The stored envelope: its canonical bytes, the on-disk frame (CRC32C), and reading it back.
mod envelope {
    use super::*;

    #[divan::bench(args = ["check-in", "contact"])]
    fn canonical_encode(bencher: Bencher, kind: &str) {
        let s = stored(kind);
        let mut out = Vec::with_capacity(256);
        bencher.bench_local(|| {
            out.clear();
            black_box(&s.env).canonical_fields().encode(&mut out);
            black_box(out.len())
        });
    }

    /// The writer's frame: flags, batch, canonical bytes, four hashes, data, CRC32C over it all.
    #[divan::bench(args = ["check-in", "contact"])]
    fn frame_encode(bencher: Bencher, kind: &str) {
        let s = stored(kind);
        let e = &s.env;
        let mut out = Vec::with_capacity(1024);
        bencher.bench_local(|| {
            out.clear();
            encode_frame(
                &mut out,
                RecordHeader { flags: 1, batch: 1 },
                black_box(&s.canonical),
                &e.prev_hash,
                &e.hash,
                &e.stream_prev_hash,
                &e.stream_hash,
                &e.data,
            );
            black_box(out.len())
        });
    }

    /// A frame's payload read back: CRC32C check, then the envelope (what every read does after
    /// its `pread`).
    #[divan::bench(args = ["check-in", "contact"])]
    fn frame_decode(bencher: Bencher, kind: &str) {
        let (payload, crc) = stored(kind).payload_and_crc();
        bencher.bench_local(|| {
            assert!(crc_ok(black_box(payload), crc));
            decode_payload(payload).map(|r| r.envelope.position)
        });
    }

    /// One event by id from the log: index lookup, `pread` (page cache), CRC, decode. A history
    /// page does this once per item.
    #[divan::bench(args = ["check-in", "contact"])]
    fn read_event(bencher: Bencher, kind: &str) {
        let f = fx();
        let id = stored(kind).env.event_id;
        bencher.bench_local(|| f.log.read_event(black_box(id)).map(|e| e.map(|e| e.position)));
    }

    /// The JSON form of `/events`, `/record` and exports.
    #[divan::bench(args = ["check-in", "contact"])]
    fn to_json(bencher: Bencher, kind: &str) {
        let e = &stored(kind).env;
        bencher.bench_local(|| serde_json::to_vec(&black_box(e).to_json()).map(|v| v.len()));
    }
}

/// SHA-256 and CRC32C per event.
mod hashing {
    use super::*;

    /// The data's digest, which enters the canonical bytes.
    #[divan::bench(args = ["check-in", "contact"])]
    fn data_sha256(bencher: Bencher, kind: &str) {
        let data = &stored(kind).env.data;
        bencher.bench_local(|| Hash::of(black_box(data)));
    }

    /// The chain step of one event: `SHA-256(prev ‖ canonical)` for the log and for the stream.
    #[divan::bench(args = ["check-in", "contact"])]
    fn chain_step(bencher: Bencher, kind: &str) {
        let s = stored(kind);
        bencher.bench_local(|| {
            let h = Hash::chain(black_box(&s.env.prev_hash), &s.canonical);
            let sh = Hash::chain(black_box(&s.env.stream_prev_hash), &s.canonical);
            (h, sh)
        });
    }

    #[divan::bench(args = ["check-in", "contact"])]
    fn crc32c_frame(bencher: Bencher, kind: &str) {
        let (payload, _) = stored(kind).payload_and_crc();
        bencher.bench_local(|| crc32c::crc32c(black_box(payload)));
    }

    /// The writer's CPU work per event, without I/O: data JSON check, digest, canonical bytes,
    /// both chains, the frame.
    #[divan::bench(args = ["check-in", "contact"])]
    fn append_cpu_per_event(bencher: Bencher, kind: &str) {
        let e = &stored(kind).env;
        let (mut scratch, mut out) = (Vec::with_capacity(256), Vec::with_capacity(1024));
        bencher.bench_local(|| {
            let data = black_box(&e.data);
            assert!(serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok());
            let digest = Hash::of(data);
            let mut fields = e.canonical_fields();
            fields.data_sha256 = digest;
            scratch.clear();
            fields.encode(&mut scratch);
            let hash = Hash::chain(&e.prev_hash, &scratch);
            let stream_hash = Hash::chain(&e.stream_prev_hash, &scratch);
            out.clear();
            let header = RecordHeader { flags: 1, batch: 1 };
            encode_frame(&mut out, header, &scratch, &e.prev_hash, &hash, &e.stream_prev_hash, &stream_hash, data);
            out.len()
        });
    }
}

/// The write path's domain work on a course with HISTORY events.
mod decision {
    use super::*;

    #[divan::bench]
    fn decide_check_in(bencher: Bencher) {
        let f = fx();
        let ctx = f.ctx(&f.mentor);
        bencher.bench_local(|| decide(black_box(&f.state), black_box(&f.check_in_cmd), &ctx).map(|e| e.len()));
    }

    #[divan::bench]
    fn decide_contact(bencher: Bencher) {
        let f = fx();
        let ctx = f.ctx(&f.caseworker);
        bencher.bench_local(|| decide(black_box(&f.state), black_box(&f.contact_cmd), &ctx).map(|e| e.len()));
    }

    /// The decided event's payload as stored (`CourseEvent::to_data`).
    #[divan::bench(args = ["check-in", "contact"])]
    fn event_to_data(bencher: Bencher, kind: &str) {
        let event = &stored(kind).event;
        bencher.bench_local(|| black_box(event).to_data());
    }

    /// The decision cache catching up with a stored event: decode its data and metadata.
    #[divan::bench(args = ["check-in", "contact"])]
    fn decode_course_event(bencher: Bencher, kind: &str) {
        let env = &stored(kind).env;
        bencher.bench_local(|| decode_course(black_box(env)).map(|(_, m)| m.stream_version));
    }

    /// `apply` of one event to the state of the course (cloned per iteration, not timed).
    #[divan::bench(args = ["check-in", "contact"])]
    fn apply_event(bencher: Bencher, kind: &str) {
        let f = fx();
        let s = stored(kind);
        bencher.with_inputs(|| f.state.clone()).bench_local_refs(|state| apply(state, &s.event, &s.meta));
    }

    /// A cold decision cache: read nothing, but decode and apply all HISTORY events.
    #[divan::bench]
    fn fold_history(bencher: Bencher) {
        let f = fx();
        bencher.bench_local(|| {
            let mut state = CourseState::default();
            for env in black_box(&f.envelopes) {
                if let Ok((ev, meta)) = decode_course(env) {
                    apply(&mut state, &ev, &meta);
                }
            }
            state.version
        });
    }
}

/// The projections: the per-course fold and the reads served from it.
mod projection {
    use super::*;

    #[divan::bench(args = ["check-in", "contact"])]
    fn decode_envelope(bencher: Bencher, kind: &str) {
        let env = &stored(kind).env;
        bencher.bench_local(|| vivirk::projections::decode_envelope(black_box(env)).map(|(_, r, _)| r.position));
    }

    /// `CourseView::apply` of one event to a course with HISTORY events (cloned per iteration,
    /// not timed, with room for one more observation as a long-lived view has: a clone's
    /// vectors are full, and growing one would be timed).
    #[divan::bench(args = ["check-in", "contact"])]
    fn apply_event(bencher: Bencher, kind: &str) {
        let f = fx();
        let s = stored(kind);
        let input = || {
            let mut v = f.view.clone();
            v.observations.reserve(1);
            v
        };
        bencher.with_inputs(input).bench_local_refs(|view| view.apply(&s.rec, &s.event));
    }

    /// Rebuilding one course's view from its envelopes (as-of and rebuilds).
    #[divan::bench]
    fn fold_history(bencher: Bencher) {
        let f = fx();
        bencher.bench_local(|| fold_envelopes(f.course, black_box(&f.envelopes), AsOf::Head).2);
    }

    /// A 50-item history page from the view alone, before the payloads are read.
    #[divan::bench]
    fn history_page_from_view(bencher: Bencher) {
        let f = fx();
        let filter = HistoryFilter::default();
        bencher.bench_local(|| views::history_page(black_box(&f.view), &filter, None, PAGE).0.len());
    }

    /// `GET /v1/courses/{id}/contacts`' read: the page plus each item's payload from the log.
    #[divan::bench]
    fn history_page_50(bencher: Bencher) {
        let f = fx();
        let filter = HistoryFilter::default();
        bencher.bench_local(|| {
            f.projections.contact_history(black_box(f.course), &filter, None, PAGE).map(|p| p.is_some())
        });
    }

    /// The page as JSON (what the HTTP layer sends; 50 items with payloads).
    #[divan::bench]
    fn history_page_50_json(bencher: Bencher) {
        let page = history_page();
        bencher.bench_local(|| serde_json::to_vec(black_box(&page)).map(|v| v.len()));
    }

    /// One item's `detail`: the effective event embedded as `{event_type, schema_version, data}`
    /// (50 per page).
    #[divan::bench(args = ["check-in", "contact"])]
    fn history_detail_json(bencher: Bencher, kind: &str) {
        let event = &stored(kind).event;
        bencher.bench_local(|| serde_json::to_vec(black_box(event)).map(|v| v.len()));
    }

    /// The page as the handler answers it: a version ETag, the JSON, the response.
    #[divan::bench]
    fn history_page_50_response(bencher: Bencher) {
        let page = history_page();
        let req = actix_web::test::TestRequest::get().uri("/v1/courses/x/contacts?limit=50").to_http_request();
        bencher.bench_local(|| {
            let tag = version_tag(&[b"contacts", &page.course_version.to_be_bytes(), req.query_string().as_bytes()]);
            tagged_json(&req, tag, black_box(&page), page.json_size_hint()).map(|r| r.status())
        });
    }

    /// A small JSON response with an ETag over its bytes (course status and the other reads).
    #[divan::bench]
    fn course_status_response(bencher: Bencher) {
        let f = fx();
        let status = f.projections.course_status(f.course);
        let req = actix_web::test::TestRequest::get().to_http_request();
        bencher.bench_local(|| etag_json(&req, black_box(&status)).map(|r| r.status()));
    }

    /// `GET /v1/courses/{id}`' read.
    #[divan::bench]
    fn course_status(bencher: Bencher) {
        let f = fx();
        bencher.bench_local(|| f.projections.course_status(black_box(f.course)).map(|s| s.version));
    }

    #[divan::bench]
    fn course_status_json(bencher: Bencher) {
        let f = fx();
        let status = f.projections.course_status(f.course);
        bencher.bench_local(|| serde_json::to_vec(black_box(&status)).map(|v| v.len()));
    }

    #[divan::bench]
    fn contact_frequency(bencher: Bencher) {
        let f = fx();
        bencher.bench_local(|| f.projections.contact_frequency(black_box(f.course)).is_some());
    }

    fn history_page() -> vivirk::projections::views::HistoryPage {
        let f = fx();
        match f.projections.contact_history(f.course, &HistoryFilter::default(), None, PAGE) {
            Ok(Some(p)) => p,
            other => panic!("history page: {other:?}"),
        }
    }
}

/// What every request pays before its handler: the bearer token and the access checks.
mod auth {
    use super::*;

    /// A token seen before (every request after a client's first): the remembered verification
    /// and the times.
    #[divan::bench]
    fn jwt_verify(bencher: Bencher) {
        let f = fx();
        bencher.bench_local(|| f.tokens.verify(black_box(&f.mentor_token), f.now).map(|(id, _)| id));
    }

    /// A token's first use: issuer peek, header, Ed25519 signature, claims, times (each
    /// iteration gets a token never seen, issued outside the timing).
    #[divan::bench]
    fn jwt_verify_first_use(bencher: Bencher) {
        let f = fx();
        bencher
            .with_inputs(|| f.tokens.issue(Uuid::new_v4(), Role::Mentor, f.now).unwrap_or_default())
            .bench_local_refs(|t| f.tokens.verify(black_box(t), f.now).map(|(id, _)| id));
    }

    /// The floor under `jwt_verify`: the Ed25519 signature check alone (ed25519-dalek).
    #[divan::bench]
    fn ed25519_signature_only(bencher: Bencher) {
        use base64::Engine;
        let f = fx();
        let key = VerifyingKey::from(&ed25519_dalek::SigningKey::from_bytes(&JWT_SEED));
        let (message, sig) = f.mentor_token.rsplit_once('.').unwrap_or_default();
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).unwrap_or_default();
        let sig = Signature::from_slice(&sig).unwrap_or_else(|e| panic!("signature: {e}"));
        assert!(key.verify(message.as_bytes(), &sig).is_ok());
        bencher.bench_local(|| key.verify(black_box(message.as_bytes()), &sig).is_ok());
    }

    /// `Auth::verify_access`: the token plus the registry (exists, enabled, same role, not
    /// issued before a password change).
    #[divan::bench]
    fn verify_access(bencher: Bencher) {
        let f = fx();
        bencher.bench_local(|| f.auth.verify_access(black_box(&f.admin_token)).map(|p| p.account_id));
    }

    #[divan::bench]
    fn require_permission(bencher: Bencher) {
        let f = fx();
        bencher.bench_local(|| access::require(black_box(&f.mentor), black_box(Permission::LogCheckIn)).is_ok());
    }

    #[divan::bench]
    fn can_see_course(bencher: Bencher) {
        let f = fx();
        bencher.bench_local(|| access::can_see_course(black_box(&f.mentor), &f.state));
    }

    /// Every course read and write starts here: the course's lock, its decision state caught up
    /// with the log (nothing new: one index probe), visibility.
    #[divan::bench]
    fn check_course_visible(bencher: Bencher) {
        let f = fx();
        bencher.bench_local(|| f.rt.block_on(f.app.check_course_visible(black_box(&f.mentor), f.course)).is_ok());
    }
}

/// The HTTP edges: a write body to a command, an error to a problem document.
mod http {
    use super::*;

    #[divan::bench]
    fn parse_check_in(bencher: Bencher) {
        let f = fx();
        let req = write_request();
        bencher.bench_local(|| {
            parse_write::<CheckInLogged>(&req, black_box(&f.check_in_body)).map(|(c, _)| CourseCommand::LogCheckIn(c))
        });
    }

    #[divan::bench]
    fn parse_contact(bencher: Bencher) {
        let f = fx();
        let req = write_request();
        bencher.bench_local(|| {
            parse_write::<ContactLogged>(&req, black_box(&f.contact_body)).map(|(c, _)| CourseCommand::LogContact(c))
        });
    }

    /// A refusal as `application/problem+json`.
    #[divan::bench]
    fn problem_response(bencher: Bencher) {
        bencher.bench_local(|| {
            let e = ApiError::App(AppError::Domain(black_box(DomainError::NotCourseMentor)));
            e.error_response().status()
        });
    }

    /// A write's `201` body.
    #[divan::bench]
    fn written_json(bencher: Bencher) {
        let w = vivirk::app::Written {
            event_id: Uuid::from_u128(1),
            position: 1_234_567,
            version: HISTORY + 1,
            duplicate: false,
            id: None,
        };
        bencher.bench_local(|| serde_json::to_vec(black_box(&w)).map(|v| v.len()));
    }
}

fn stored(kind: &str) -> &'static Stored {
    match kind {
        "check-in" => &fx().check_in,
        _ => &fx().contact,
    }
}
