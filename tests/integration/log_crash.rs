//! SIGKILL at random moments while a child appends concurrently: every event it reported as
//! acknowledged must be there after the restart, at the position it was given, and the chains
//! must verify.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use uuid::Uuid;
use vivirk::log::{EventLog, LogConfig, verify};

/// A small deterministic generator; the seed is printed so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let cycles: usize = std::env::var("VIVIRK_CRASH_CYCLES").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let seed: u64 = std::env::var("VIVIRK_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1
    });
    println!("crash test: {cycles} cycles, VIVIRK_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let mut acked: Vec<(usize, usize, Uuid, u64)> = Vec::new();
    let mut ready_ms = Vec::new();
    for cycle in 0..cycles {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vivirk"))
            .args(["debug", "append-loop", "--tasks", "8", "--segment-size", "262144", "--data-dir"])
            .arg(tmp.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn vivirk");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("child said nothing").unwrap();
        assert!(first.starts_with("ready "), "cycle {cycle}: {first}");
        ready_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let target = 1 + rng.next() % 400;
        let mut seen = 0;
        let parse = |line: &str, acked: &mut Vec<(usize, usize, Uuid, u64)>| {
            let mut parts = line.split(' ');
            assert_eq!(parts.next(), Some("ack"), "{line}");
            let task = parts.next().unwrap().parse().unwrap();
            let id = Uuid::parse_str(parts.next().unwrap()).unwrap();
            let pos = parts.next().unwrap().parse().unwrap();
            acked.push((cycle, task, id, pos));
        };
        for line in lines.by_ref() {
            parse(&line.unwrap(), &mut acked);
            seen += 1;
            if seen >= target {
                break;
            }
        }
        child.kill().expect("SIGKILL");
        // Whatever was printed before the kill was acknowledged too.
        for line in lines {
            match line {
                Ok(l) if l.starts_with("ack ") && l.split(' ').count() == 4 => parse(&l, &mut acked),
                _ => break,
            }
        }
        child.wait().unwrap();

        let (log, _) = EventLog::open(LogConfig::new(tmp.path())).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        let mut last_by_task: HashMap<(usize, usize), u64> = HashMap::new();
        for (c, task, id, pos) in &acked {
            let e = log.read_event(*id).unwrap().unwrap_or_else(|| panic!("cycle {cycle}: acknowledged {id} lost"));
            assert_eq!(e.position, *pos, "cycle {cycle}: {id} moved");
            // Each task appends one at a time, so its acknowledgements are in log order.
            let prev = last_by_task.insert((*c, *task), *pos);
            assert!(prev.is_none_or(|p| p < *pos), "cycle {c}: task {task} acknowledged out of log order");
        }
        drop(log);
        let report = verify::verify_dir(tmp.path(), None).unwrap_or_else(|f| panic!("cycle {cycle}: verify: {f}"));
        assert!(report.events as usize >= acked.len());
    }
    ready_ms.sort_by(f64::total_cmp);
    println!(
        "crash test: {} acknowledged events checked over {cycles} SIGKILLs; restart-to-ready median {:.1} ms, max {:.1} ms",
        acked.len(),
        ready_ms[ready_ms.len() / 2],
        ready_ms[ready_ms.len() - 1]
    );
    assert!(acked.len() >= cycles, "the children must have acknowledged something");
}
