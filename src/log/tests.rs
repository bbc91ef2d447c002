use std::sync::Arc;

use time::macros::datetime;
use uuid::Uuid;

use super::*;
use crate::clock::ManualClock;

fn config(dir: &Path) -> LogConfig {
    let mut c = LogConfig::new(dir);
    c.clock = Arc::new(ManualClock::new(datetime!(2026-11-27 08:00 UTC)));
    c
}

fn ev(n: u32) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "CheckInLogged".into(),
        schema_version: 1,
        occurred_at: datetime!(2026-11-27 07:30 UTC),
        actor: LogActor { account_id: Uuid::from_u128(7), role: "mentor".into() },
        metadata: Metadata {
            correlation_id: Some(Uuid::from_u128(9)),
            causation_id: None,
            device_id: Some("phone-1".into()),
        },
        data: format!(r#"{{"wellbeing":{},"tasks":["sorting"]}}"#, n % 5 + 1).into_bytes(),
    }
}

fn course() -> StreamId {
    StreamId::for_entity("course", Uuid::new_v4())
}

fn open(dir: &Path) -> EventLog {
    EventLog::open(config(dir)).expect("open").0
}

#[test]
fn appends_are_readable_in_order_and_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let s = course();
    let other = course();
    let (ids, r) = {
        let log = open(tmp.path());
        let a = log.append_blocking(&s, ExpectedVersion::NoStream, vec![ev(1), ev(2)]).unwrap();
        assert_eq!((a.first_position, a.last_position, a.version, a.duplicate), (1, 2, 2, false));
        let b = log.append_blocking(&other, ExpectedVersion::Any, vec![ev(3)]).unwrap();
        assert_eq!((b.first_position, b.version), (3, 1));
        let events = vec![ev(4)];
        let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
        let c = log.append_blocking(&s, ExpectedVersion::Exact(2), events).unwrap();
        assert_eq!((c.first_position, c.version), (4, 3));
        (ids, log.head())
    };
    let log = open(tmp.path());
    assert_eq!(log.head(), r);
    let stream = log.read_stream(&s, 1, false, 100).unwrap();
    assert_eq!(stream.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(stream.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2, 4]);
    assert_eq!(stream[2].event_id, ids[0]);
    assert_eq!(stream[0].recorded_at, datetime!(2026-11-27 08:00 UTC));
    assert_eq!(stream[0].metadata.device_id.as_deref(), Some("phone-1"));
    let back = log.read_stream(&s, u64::MAX, true, 2).unwrap();
    assert_eq!(back.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![3, 2]);
    let all = log.read_all(1, 100).unwrap();
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(log.read_all(3, 1).unwrap()[0].stream, other);
    // Chains: global links, per-stream links.
    for w in all.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
    }
    assert_eq!(stream[2].stream_prev_hash, stream[1].stream_hash);
    assert_eq!(log.stream_head(&s).unwrap().unwrap().stream_hash, stream[2].stream_hash);
    let report = verify::verify_dir(tmp.path(), None).unwrap();
    assert_eq!(report.events, 4);
    assert_eq!(report.head, Some(r));
}

#[test]
fn wrong_expected_version_carries_the_actual_version_and_appends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let s = course();
    log.append_blocking(&s, ExpectedVersion::NoStream, vec![ev(1)]).unwrap();
    let err = log.append_blocking(&s, ExpectedVersion::NoStream, vec![ev(2)]).unwrap_err();
    assert_eq!(
        err,
        AppendError::WrongExpectedVersion { stream: s.clone(), expected: ExpectedVersion::NoStream, actual: 1 }
    );
    let err = log.append_blocking(&s, ExpectedVersion::Exact(5), vec![ev(2)]).unwrap_err();
    assert!(matches!(err, AppendError::WrongExpectedVersion { actual: 1, .. }));
    assert_eq!(log.head().0, 1);
}

#[test]
fn idempotent_retry_returns_the_original_and_different_content_conflicts() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let s = course();
    let e = ev(1);
    let first = log.append_blocking(&s, ExpectedVersion::NoStream, vec![e.clone()]).unwrap();
    log.append_blocking(&s, ExpectedVersion::Any, vec![ev(2)]).unwrap();
    // The retry's expected version is stale now; it still gets the original answer.
    let again = log.append_blocking(&s, ExpectedVersion::NoStream, vec![e.clone()]).unwrap();
    assert_eq!((again.first_position, again.version, again.duplicate), (first.first_position, first.version, true));
    let mut changed = e.clone();
    changed.data = br#"{"wellbeing":5}"#.to_vec();
    assert_eq!(
        log.append_blocking(&s, ExpectedVersion::Any, vec![changed]).unwrap_err(),
        AppendError::EventIdConflict { event_id: e.event_id }
    );
    // Half-known appends are conflicts too, and write nothing.
    let err = log.append_blocking(&s, ExpectedVersion::Any, vec![ev(3), e.clone()]).unwrap_err();
    assert!(matches!(err, AppendError::EventIdConflict { .. }));
    assert_eq!(log.head().0, 2);
}

#[test]
fn invalid_events_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let s = course();
    let mut bad = ev(1);
    bad.data = b"{not json".to_vec();
    assert!(matches!(log.append_blocking(&s, ExpectedVersion::Any, vec![bad]), Err(AppendError::Invalid(_))));
    let mut bad = ev(1);
    bad.event_type = "has space".into();
    assert!(matches!(log.append_blocking(&s, ExpectedVersion::Any, vec![bad]), Err(AppendError::Invalid(_))));
    assert!(matches!(log.append_blocking(&s, ExpectedVersion::Any, vec![]), Err(AppendError::Invalid(_))));
    let e = ev(1);
    assert!(matches!(log.append_blocking(&s, ExpectedVersion::Any, vec![e.clone(), e]), Err(AppendError::Invalid(_))));
    assert_eq!(log.head().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_exact_appends_have_one_winner_per_version() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let s = course();
    let tasks = 16;
    let rounds = 20;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let log = log.clone();
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            let mut conflicts = 0;
            for _ in 0..rounds {
                let current = log.stream_head(&s).unwrap().map_or(0, |h| h.version);
                let expected = if current == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(current) };
                match log.append(&s, expected, vec![ev(1)]).await {
                    Ok(r) => wins.push(r.version),
                    Err(AppendError::WrongExpectedVersion { actual, .. }) => {
                        assert!(actual > current, "conflict must report a newer version");
                        conflicts += 1;
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            (wins, conflicts)
        }));
    }
    let mut all_wins = Vec::new();
    let mut conflicts = 0;
    for h in handles {
        let (w, c) = h.await.unwrap();
        all_wins.extend(w);
        conflicts += c;
    }
    all_wins.sort();
    let n = all_wins.len() as u64;
    assert_eq!(all_wins, (1..=n).collect::<Vec<_>>(), "each version won exactly once");
    assert_eq!(n + conflicts, (tasks * rounds) as u64);
    assert!(conflicts > 0, "the test must actually race");
    assert_eq!(log.stream_head(&s).unwrap().unwrap().version, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_idempotent_retries_append_once() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let s = course();
    let events: Vec<NewEvent> = (0..10).map(ev).collect();
    let mut handles = Vec::new();
    for _ in 0..8 {
        for e in &events {
            let (log, s, e) = (log.clone(), s.clone(), e.clone());
            handles.push(tokio::spawn(async move { log.append(&s, ExpectedVersion::Any, vec![e]).await.unwrap() }));
        }
    }
    let mut fresh = 0;
    for h in handles {
        if !h.await.unwrap().duplicate {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 10);
    assert_eq!(log.head().0, 10);
    assert_eq!(log.read_stream(&s, 1, false, 100).unwrap().len(), 10);
}

#[test]
fn segments_roll_and_reads_cross_them() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.segment_size = 4096;
    let s = course();
    {
        let (log, _) = EventLog::open(cfg.clone()).unwrap();
        for i in 0..200 {
            log.append_blocking(&s, ExpectedVersion::Any, vec![ev(i)]).unwrap();
        }
    }
    let segs = segment::list_segments(&tmp.path().join("log")).unwrap();
    assert!(segs.len() > 5, "expected many segments, got {}", segs.len());
    let (log, _) = EventLog::open(cfg).unwrap();
    let all: Vec<_> = log.iter_from(1).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), 200);
    assert_eq!(log.read_all(150, 3).unwrap().iter().map(|e| e.position).collect::<Vec<_>>(), vec![150, 151, 152]);
    assert_eq!(log.read_stream(&s, 199, false, 5).unwrap().len(), 2);
    log.append_blocking(&s, ExpectedVersion::Exact(200), vec![ev(1)]).unwrap();
    assert_eq!(verify::verify_dir(tmp.path(), None).unwrap().events, 201);
    assert_eq!(verify::verify_dir(tmp.path(), Some(s.as_str())).unwrap().events, 201);
}

#[tokio::test]
async fn subscribers_wake_on_new_durable_events() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let mut rx = log.subscribe();
    assert_eq!(*rx.borrow_and_update(), 0);
    let l2 = log.clone();
    let waiter = tokio::spawn(async move {
        l2.wait_for(2).await;
        l2.read_all(1, 10).unwrap().len()
    });
    log.append(&course(), ExpectedVersion::Any, vec![ev(1), ev(2)]).await.unwrap();
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow(), 2);
    assert_eq!(waiter.await.unwrap(), 2);
}

fn active_segment(dir: &Path) -> PathBuf {
    segment::list_segments(&dir.join("log")).unwrap().last().unwrap().1.clone()
}

/// The logical end of the active segment and the offsets of its records.
fn record_offsets(path: &Path) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut off = segment::HEADER_LEN as usize;
    while off + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        out.push((off as u64, (off + 8 + len) as u64));
        off += 8 + len;
    }
    out
}

#[test]
fn a_torn_tail_is_cut_back_to_the_last_whole_append() {
    let tmp = tempfile::tempdir().unwrap();
    let s = course();
    {
        let log = open(tmp.path());
        log.append_blocking(&s, ExpectedVersion::Any, vec![ev(1)]).unwrap();
        log.append_blocking(&s, ExpectedVersion::Any, vec![ev(2), ev(3), ev(4)]).unwrap();
    }
    // Tear the three-event append in its last record: zero its second half, as a crash that
    // kept only part of the write would.
    let path = active_segment(tmp.path());
    let recs = record_offsets(&path);
    assert_eq!(recs.len(), 4);
    let (start, end) = recs[3];
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = (start + end) as usize / 2;
    bytes[mid..end as usize].fill(0);
    std::fs::write(&path, &bytes).unwrap();

    let (log, report) = EventLog::open(config(tmp.path())).unwrap();
    let (_, offset, _) = report.torn_tail.expect("torn tail reported");
    assert_eq!(offset, start, "the warning names the first bad byte offset");
    assert_eq!(log.head().0, 1, "the whole atomic append is gone, the acknowledged one stays");
    // The log goes on from there, and its index agrees.
    let r = log.append_blocking(&s, ExpectedVersion::Exact(1), vec![ev(5)]).unwrap();
    assert_eq!(r.first_position, 2);
    drop(log);
    assert_eq!(verify::verify_dir(tmp.path(), None).unwrap().events, 2);
}

#[test]
fn damage_before_the_tail_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let log = open(tmp.path());
        for i in 0..5 {
            log.append_blocking(&course(), ExpectedVersion::Any, vec![ev(i)]).unwrap();
        }
    }
    let path = active_segment(tmp.path());
    let recs = record_offsets(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip a byte in the second record without fixing its CRC; later group commits follow it.
    let (start, _) = recs[1];
    bytes[start as usize + 40] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let err = EventLog::open(config(tmp.path())).err().expect("must refuse");
    let msg = err.to_string();
    assert!(msg.contains(&format!("offset {start}")), "{msg}");
    assert!(msg.contains("refusing to open"), "{msg}");
}

/// Rewrites one byte of the canonical part of a stored event and fixes the CRC, so only the
/// hash chain can tell.
fn tamper(path: &Path, record_start: u64, byte_in_payload: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let start = record_start as usize;
    let len = u32::from_le_bytes(bytes[start..start + 4].try_into().unwrap()) as usize;
    let payload = start + 8..start + 8 + len;
    bytes[payload.start + byte_in_payload] ^= 0x01;
    let crc = crc32c::crc32c(&bytes[payload]);
    bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, &bytes).unwrap();
}

#[test]
fn tampering_with_a_sealed_segment_is_named_by_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.segment_size = 2048;
    {
        let (log, _) = EventLog::open(cfg.clone()).unwrap();
        for i in 0..40 {
            log.append_blocking(&course(), ExpectedVersion::Any, vec![ev(i)]).unwrap();
        }
    }
    let segs = segment::list_segments(&tmp.path().join("log")).unwrap();
    let (first, path) = &segs[1];
    let recs = record_offsets(path);
    // The third record of the second segment; byte 9+1+8+20 lands inside the stream name.
    tamper(path, recs[2].0, 9 + 1 + 8 + 2 + 10);
    let err = verify::verify_dir(tmp.path(), None).unwrap_err();
    assert_eq!(err.position, first + 2, "{err}");
    // Tampering with the data instead is caught by its digest.
    let tmp2 = tempfile::tempdir().unwrap();
    {
        let (log, _) = EventLog::open(config(tmp2.path())).unwrap();
        for i in 0..3 {
            log.append_blocking(&course(), ExpectedVersion::Any, vec![ev(i)]).unwrap();
        }
    }
    let path = active_segment(tmp2.path());
    let recs = record_offsets(&path);
    let len = (recs[1].1 - recs[1].0 - 8) as usize;
    tamper(&path, recs[1].0, len - 3);
    let err = verify::verify_dir(tmp2.path(), None).unwrap_err();
    assert_eq!(err.position, 2);
    assert!(err.reason.contains("data"), "{err}");
    // And the log refuses to serve the damaged active segment.
    assert!(EventLog::open(config(tmp2.path())).is_err());
}

#[test]
fn the_index_is_rebuilt_when_missing_or_damaged_and_caught_up_when_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let s = course();
    {
        let log = open(tmp.path());
        for i in 0..100 {
            log.append_blocking(&s, ExpectedVersion::Any, vec![ev(i)]).unwrap();
        }
    }
    std::fs::remove_dir_all(tmp.path().join("index")).unwrap();
    {
        let (log, report) = EventLog::open(config(tmp.path())).unwrap();
        assert_eq!(report.index_caught_up, 100);
        assert_eq!(log.read_stream(&s, 1, false, 1000).unwrap().len(), 100);
        assert_eq!(log.stream_head(&s).unwrap().unwrap().version, 100);
    }
    // Garbage in sled's files: rebuilt, not trusted.
    for entry in std::fs::read_dir(tmp.path().join("index")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::write(&p, b"garbage garbage garbage").unwrap();
        }
    }
    let (log, report) = EventLog::open(config(tmp.path())).unwrap();
    assert!(report.index_rebuilt.is_some() || report.index_caught_up == 100, "{report:?}");
    assert_eq!(log.read_stream(&s, 1, false, 1000).unwrap().len(), 100);
    let r = log.append_blocking(&s, ExpectedVersion::Exact(100), vec![ev(1)]).unwrap();
    assert_eq!(r.version, 101);
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let _log = open(tmp.path());
    assert!(matches!(EventLog::open(config(tmp.path())), Err(OpenError::Locked(_))));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_persisted_index_reloads_and_an_old_one_catches_up_across_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let streams: Vec<StreamId> = (0..50).map(|_| course()).collect();
    let write = |log: &EventLog, rounds: usize| {
        for r in 0..rounds {
            let events: Vec<_> = (0..100).map(|i| ev(i + r as u32)).collect();
            log.append_blocking(&streams[r % streams.len()], ExpectedVersion::Any, events).unwrap();
        }
    };
    {
        let log = open(tmp.path());
        write(&log, 50); // 5,000 events: more than one 4,096-position block
    }
    let backup = tmp.path().join("index-backup");
    copy_dir(&tmp.path().join("index"), &backup);
    {
        let (log, report) = EventLog::open(config(tmp.path())).unwrap();
        assert_eq!(report.index_caught_up, 0, "the index was persisted at shutdown");
        assert_eq!(log.read_stream(&streams[3], 1, false, 10_000).unwrap().len(), 100);
        write(&log, 80);
    }
    // Put the older index back: it is behind the log and must catch up, not be trusted as is.
    std::fs::remove_dir_all(tmp.path().join("index")).unwrap();
    std::fs::rename(&backup, tmp.path().join("index")).unwrap();
    let (log, report) = EventLog::open(config(tmp.path())).unwrap();
    assert_eq!(report.index_caught_up, 8_000);
    assert_eq!(log.head().0, 13_000);
    for (i, s) in streams.iter().enumerate() {
        let n = (0..130).filter(|r| r % 50 == i).count() as u64 * 100;
        let events = log.read_stream(s, 1, false, 100_000).unwrap();
        assert_eq!(events.len() as u64, n, "stream {i}");
        assert_eq!(log.stream_head(s).unwrap().map_or(0, |h| h.version), n);
        if let Some(last) = events.last() {
            assert_eq!(log.stream_head(s).unwrap().unwrap().stream_hash, last.stream_hash);
        }
    }
    let any = log.read_all(12_345, 1).unwrap();
    assert_eq!(log.read_event(any[0].event_id).unwrap().unwrap().position, 12_345);
    let at = log.read_position(12_345).unwrap().unwrap();
    assert_eq!((at.position, at.event_id), (12_345, any[0].event_id));
    assert_eq!(log.read_position(13_000).unwrap().unwrap().position, 13_000);
    assert!(log.read_position(0).unwrap().is_none());
    assert!(log.read_position(13_001).unwrap().is_none(), "past the head");
}

/// An index persisted by a version that kept its entries in sled (`c` keys of 4,096 entries)
/// has them moved into `entries.idx` at open, without a rebuild or a catch-up; a flipped byte in
/// the file afterwards fails its block's checksum and the index is rebuilt from the log.
#[test]
fn entries_kept_in_sled_move_to_their_file_and_a_damaged_file_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let streams: Vec<StreamId> = (0..30).map(|_| course()).collect();
    {
        let log = open(tmp.path());
        for r in 0..90 {
            let events: Vec<_> = (0..100).map(|i| ev(i + r as u32)).collect();
            log.append_blocking(&streams[r % streams.len()], ExpectedVersion::Any, events).unwrap();
        }
    }
    let dir = tmp.path().join("index");
    let file = dir.join("entries.idx");
    let written = std::fs::read(&file).unwrap();
    assert_eq!(written.len(), 9_000 * 24);
    // Back to the old layout: the slots as `c` block keys, no checksums, no file.
    {
        let db = sled::open(&dir).unwrap();
        let tree = db.open_tree("index").unwrap();
        for (block, slots) in written.chunks(4096 * 24).enumerate() {
            tree.insert([&[b'c'][..], &(block as u64).to_be_bytes()].concat(), slots).unwrap();
            tree.remove([&[b'k'][..], &(block as u64).to_be_bytes()].concat()).unwrap();
        }
        db.flush().unwrap();
    }
    std::fs::remove_file(&file).unwrap();
    let read_back = |log: &EventLog| {
        for s in &streams {
            let events = log.read_stream(s, 1, false, 100_000).unwrap();
            assert_eq!(events.len(), 300);
            assert_eq!(log.stream_head(s).unwrap().unwrap().stream_hash, events.last().unwrap().stream_hash);
            for e in events.iter().step_by(41) {
                assert_eq!(log.read_event(e.event_id).unwrap().unwrap().position, e.position);
            }
        }
    };
    {
        let (log, report) = EventLog::open(config(tmp.path())).unwrap();
        assert_eq!((report.index_rebuilt.as_deref(), report.index_caught_up), (None, 0), "{report:?}");
        read_back(&log);
    }
    assert_eq!(std::fs::read(&file).unwrap(), written, "the same slots, in their file");
    {
        let db = sled::open(&dir).unwrap();
        let tree = db.open_tree("index").unwrap();
        assert_eq!(tree.scan_prefix(b"c").count(), 0, "the old keys are gone");
        assert_eq!(tree.scan_prefix(b"k").count(), 3);
    }
    let mut damaged = written.clone();
    damaged[5_000 * 24 + 20] ^= 0x40; // an offset in the second block
    std::fs::write(&file, &damaged).unwrap();
    let (log, report) = EventLog::open(config(tmp.path())).unwrap();
    assert!(report.index_rebuilt.as_deref().is_some_and(|r| r.contains("checksum")), "{report:?}");
    read_back(&log);
}

/// A persist writes its keys one at a time, the checkpoint last; a crash may keep any prefix of
/// them. The worst prefix is everything but the checkpoint: chunks, new stream numbers and heads
/// ahead of it. Putting an older checkpoint back over a full persist makes exactly that state.
#[test]
fn an_index_persisted_ahead_of_its_checkpoint_catches_up_without_a_rebuild() {
    let tmp = tempfile::tempdir().unwrap();
    let streams: Vec<StreamId> = (0..60).map(|_| course()).collect();
    let write = |log: &EventLog, rounds: std::ops::Range<usize>, of: usize| {
        for r in rounds {
            let events: Vec<_> = (0..100).map(|i| ev(i + r as u32)).collect();
            log.append_blocking(&streams[r % of], ExpectedVersion::Any, events).unwrap();
        }
    };
    {
        let log = open(tmp.path());
        write(&log, 0..50, 50); // 5,000 events on the first 50 streams
    }
    {
        let log = open(tmp.path());
        write(&log, 50..130, 60); // 8,000 more, 10 new streams among them, across blocks
    }
    {
        let db = sled::open(tmp.path().join("index")).unwrap();
        let tree = db.open_tree("index").unwrap();
        assert_eq!(tree.get(b"m:checkpoint").unwrap().unwrap().as_ref(), &13_000u64.to_le_bytes()[..]);
        tree.insert(b"m:checkpoint", &5_000u64.to_le_bytes()).unwrap();
        db.flush().unwrap();
    }
    let (log, report) = EventLog::open(config(tmp.path())).unwrap();
    assert_eq!((report.index_rebuilt.as_deref(), report.index_caught_up), (None, 8_000), "{report:?}");
    for (i, s) in streams.iter().enumerate() {
        let n = (0..50).filter(|r| r % 50 == i).count() as u64 * 100
            + (50..130).filter(|r| r % 60 == i).count() as u64 * 100;
        let events = log.read_stream(s, 1, false, 100_000).unwrap();
        assert_eq!(events.len() as u64, n, "stream {i}");
        let head = log.stream_head(s).unwrap().unwrap();
        assert_eq!((head.version, head.stream_hash), (n, events.last().unwrap().stream_hash), "stream {i}");
        for e in events.iter().step_by(37) {
            assert_eq!(log.read_event(e.event_id).unwrap().unwrap().position, e.position);
        }
    }
    // And it goes on from there: the next append continues the chains.
    let r = log
        .append_blocking(
            &streams[55],
            ExpectedVersion::Exact(log.stream_head(&streams[55]).unwrap().unwrap().version),
            vec![ev(1)],
        )
        .unwrap();
    assert_eq!(r.first_position, 13_001);
    drop(log);
    assert_eq!(verify::verify_dir(tmp.path(), None).unwrap().events, 13_001, "both chains hold");
}

#[test]
fn an_empty_last_segment_left_by_a_roll_keeps_the_head() {
    // A roll creates the next segment (header, preallocated zeros) before the batch that needed
    // it is written: a crash in between leaves an empty last segment.
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.segment_size = 4096;
    let s = course();
    let head = {
        let (log, _) = EventLog::open(cfg.clone()).unwrap();
        for i in 0..20 {
            log.append_blocking(&s, ExpectedVersion::Any, vec![ev(i)]).unwrap();
        }
        log.head()
    };
    segment::create(&tmp.path().join("log"), head.0 + 1, cfg.segment_size).unwrap();
    let (log, _) = EventLog::open(cfg).unwrap();
    assert_eq!(log.head(), head);
    let r = log.append_blocking(&s, ExpectedVersion::Exact(20), vec![ev(1)]).unwrap();
    assert_eq!(r.first_position, head.0 + 1);
    assert_eq!(verify::verify_dir(tmp.path(), None).unwrap().events, 21);
}

#[test]
fn appends_only_data_an_export_carries_byte_for_byte() {
    // An export embeds the data raw, so the verifier hashes exactly these bytes: data that is
    // not UTF-8, or has whitespace around it, would be dropped or changed on the way.
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    for bad in [&b"{\"a\":\"\xf0\"}"[..], b" {}", b"{}\n", b"", b"{"] {
        let e = NewEvent { data: bad.to_vec(), ..ev(1) };
        let r = log.append_blocking(&course(), ExpectedVersion::Any, vec![e]);
        assert!(matches!(r, Err(AppendError::Invalid(_))), "{bad:?}: {r:?}");
    }
    let e = NewEvent { data: br#"{"a":[1, 2]}"#.to_vec(), ..ev(1) };
    log.append_blocking(&course(), ExpectedVersion::Any, vec![e]).unwrap();
}

/// A point read in place sees what a full read sees, for small records, one larger than the
/// first read's 1,024 bytes (a second read fetches the rest), and one after it again (the
/// thread's buffer keeps no stale bytes); past the head it is `None`; a record damaged on disk
/// is an error, not a wrong answer.
/// A reader that kept a record's offset ([`LogIter::next_payload_into`]) reads the event there;
/// an offset that does not hold that position (stale, or another record's) falls back to the
/// index, and never yields another event.
#[test]
fn an_event_is_read_at_a_kept_offset_and_a_wrong_offset_falls_back_to_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let s = course();
    let log = open(tmp.path());
    for n in 0..6 {
        log.append_blocking(&s, ExpectedVersion::Any, vec![ev(n)]).unwrap();
    }
    let mut it = log.iter_from(1).unwrap();
    let mut bytes = Vec::new();
    let mut offsets = Vec::new();
    while let Some(r) = it.next_payload_into(&mut bytes) {
        offsets.push(r.unwrap().1);
    }
    assert_eq!(offsets.len(), 6);
    assert!(offsets.windows(2).all(|w| w[0] < w[1]) && offsets[0] > 0, "{offsets:?}");
    let id_at = |p: u64| log.read_position(p).unwrap().unwrap().event_id;
    for p in 1..=6u64 {
        let right = offsets[p as usize - 1];
        // The kept offset, another record's, one inside a record, and "unknown".
        for offset in [right, offsets[(p as usize) % 6], right + 3, 0] {
            let seen = log.with_event_near(p, offset, |e| (e.position, e.event_id)).unwrap();
            assert_eq!(seen, Some((p, id_at(p))), "position {p} at offset {offset}");
        }
    }
    assert_eq!(log.with_event_near(7, offsets[0], |e| e.position).unwrap(), None, "not committed");
}

#[test]
fn an_event_read_in_place_agrees_with_the_envelope() {
    let tmp = tempfile::tempdir().unwrap();
    let s = course();
    let log = open(tmp.path());
    let mut big = ev(1);
    big.data = format!(r#"{{"note":"{}"}}"#, "x".repeat(5000)).into_bytes();
    for batch in [vec![ev(1), ev(2)], vec![big], vec![ev(3)]] {
        log.append_blocking(&s, ExpectedVersion::Any, batch).unwrap();
    }
    for p in 1..=4 {
        let env = log.read_position(p).unwrap().unwrap();
        let seen = log
            .with_event_at(p, |e| (e.position, e.event_id, e.event_type.to_owned(), e.schema_version, e.data.to_vec()))
            .unwrap()
            .unwrap();
        assert_eq!(seen, (env.position, env.event_id, env.event_type.clone(), env.schema_version, env.data.clone()));
    }
    assert!(log.with_event_at(5, |_| ()).unwrap().is_none());
    assert!(log.with_event_at(0, |_| ()).unwrap().is_none());
    drop(log);
    // A damaged CRC: the frame is refused.
    let path = active_segment(tmp.path());
    let recs = record_offsets(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[recs[0].0 as usize + 4] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    // Opening refuses a damaged record before the tail, so read the frame directly.
    let file = std::fs::File::open(&path).unwrap();
    let err = segment::read_frame_with(&file, recs[0].0, |_| ()).unwrap_err();
    assert!(err.contains("checksum"), "{err}");
    assert!(segment::read_frame_with(&file, recs[1].0, |p| p.len()).unwrap().is_some());
}

/// The borrowed canonical fields are both what is encoded and what is decoded in place: for every
/// stored event (with and without metadata), decoding its canonical bytes and encoding the result
/// gives the same bytes, and the owned form equals the envelope read back.
#[test]
fn canonical_fields_decoded_in_place_encode_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path());
    let mut bare = ev(2);
    bare.metadata = Metadata::default();
    log.append_blocking(&course(), ExpectedVersion::Any, vec![ev(1), bare]).unwrap();
    for env in log.read_all(1, 10).unwrap() {
        let bytes = env.canonical_fields().to_vec();
        let mut r = envelope::Reader::new(&bytes);
        let fields = envelope::decode_canonical_ref(&mut r).unwrap();
        assert_eq!(r.remaining(), 0);
        assert_eq!(fields.to_vec(), bytes);
        let owned = fields.into_owned().unwrap();
        assert_eq!((owned.event_id, &owned.actor, &owned.metadata), (env.event_id, &env.actor, &env.metadata));
        assert_eq!(
            (owned.occurred_at, owned.recorded_at, owned.stream),
            (env.occurred_at, env.recorded_at, env.stream)
        );
    }
}
