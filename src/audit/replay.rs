//! `vivirk replay`: a course's history, event by event, with the course's state after each —
//! folded with the same code the projections use (`decode_envelope` + `CourseView::apply`), so
//! what the auditor reads is what the API answered at that point.

use std::io::Write;

use crate::domain::CourseId;
use crate::log::{Envelope, OwnedEnvelopeJson, StreamId};
use crate::projections::views::{self, CourseStatus};
use crate::projections::{CourseView, Skip, decode_envelope};

/// Turns a parsed export line back into an envelope (data empty when it was redacted).
pub fn envelope_of(e: OwnedEnvelopeJson) -> Result<Envelope, String> {
    Ok(Envelope {
        position: e.position,
        stream: StreamId::parse(&e.stream).map_err(|err| format!("position {}: {err}", e.position))?,
        stream_version: e.stream_version,
        event_id: e.event_id,
        event_type: e.event_type,
        schema_version: e.schema_version,
        occurred_at: e.occurred_at,
        recorded_at: e.recorded_at,
        actor: e.actor,
        metadata: e.metadata,
        data_sha256: e.data_sha256,
        data: e.data.map(|d| d.get().as_bytes().to_vec()).unwrap_or_default(),
        prev_hash: e.prev_hash,
        hash: e.hash,
        stream_prev_hash: e.stream_prev_hash,
        stream_hash: e.stream_hash,
    })
}

/// One line of state: the things an auditor follows through a course's life.
fn summary(s: &CourseStatus) -> String {
    let name = |v: serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_else(|| "-".into());
    let phase = s.phase.map(|p| name(serde_json::to_value(p).unwrap_or_default())).unwrap_or_else(|| "-".into());
    let roles: Vec<&str> = s.participants.iter().map(|p| p.role.as_str()).collect();
    let goals: usize = s.goals.values().map(Vec::len).sum();
    format!(
        "{} phase={phase} participants=[{}] goals={goals} open_actions={} overdue={} placement={} support_needs={} warnings={}",
        if s.open { "open" } else { "not open" },
        roles.join(","),
        s.open_actions.len(),
        s.overdue_actions,
        if s.active_placement.is_some() { "active" } else { "none" },
        s.support_needs.len(),
        s.warnings.len(),
    )
}

/// Writes the replay of `envs` (one course, stream order). With `json`, one object per line:
/// `{"event": <envelope>, "state": <course status after it>}`.
pub fn write_replay(course: CourseId, envs: &[Envelope], json: bool, out: &mut impl Write) -> std::io::Result<()> {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    let mut view = CourseView::new(course);
    for e in envs {
        let skipped = match decode_envelope(e) {
            Ok((_, rec, event)) => {
                view.apply(&rec, &event);
                false
            }
            Err(Skip::NotACourse | Skip::Bad) => true,
        };
        // "Now" for read-time rules (overdue actions, contact gaps) is the event's own recording
        // time: the state as it stood right after it.
        let status = views::course_status(&view, e.recorded_at);
        if json {
            // Serialise first, then write: an I/O error (a closed pipe) keeps its kind.
            let mut line = serde_json::to_vec(&serde_json::json!({"event": e.to_json(), "state": status}))
                .map_err(std::io::Error::other)?;
            line.push(b'\n');
            out.write_all(&line)?;
            continue;
        }
        let at = |t: time::OffsetDateTime| t.to_offset(time::UtcOffset::UTC).format(&fmt).unwrap_or_default();
        writeln!(
            out,
            "v{} · position {} · {} · {} by {} {}{}",
            e.stream_version,
            e.position,
            at(e.recorded_at),
            e.event_type,
            e.actor.role,
            e.actor.account_id,
            if e.occurred_at != e.recorded_at { format!(" · occurred {}", at(e.occurred_at)) } else { String::new() },
        )?;
        match std::str::from_utf8(&e.data) {
            Ok(d) if !d.is_empty() => writeln!(out, "    data   {d}")?,
            _ => writeln!(out, "    data   (redacted; digest {})", e.data_sha256)?,
        }
        if skipped {
            writeln!(out, "    (not understood by this version: the state below does not include it)")?;
        }
        writeln!(out, "    state  {}", summary(&status))?;
    }
    Ok(())
}
