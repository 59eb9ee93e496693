//! Change signals between replicas that share one database. A replica
//! announces the runs its transitions changed; the others wake their
//! watchers and runners instead of waiting for their next poll. Signals are
//! hints: everything they point at is read from the store, and every loop
//! also polls slowly, so a lost signal only costs latency.
//!
//! Token deltas of streaming model calls travel the same way, so a watcher
//! on any replica sees them live; they are never stored.
//!
//! PostgreSQL: `NOTIFY` on two channels (changes, deltas), sent outside the
//! write transactions and coalesced by the caller (see docs/postgres.md: a
//! NOTIFY inside the write transaction serializes commits). SQLite: one
//! process, no signals.

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::StoreResult;

/// The PostgreSQL notification channel of changed runs.
pub(super) const CHANNEL: &str = "taskloom_runs";
/// The PostgreSQL notification channel of token deltas.
pub(super) const DELTA_CHANNEL: &str = "taskloom_deltas";
/// NOTIFY payloads must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7900;

/// An announcement: which replica, which runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub origin: String,
    pub run_ids: Vec<String>,
}

/// A token delta of a streaming model call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delta {
    pub run_id: String,
    pub task_id: String,
    pub attempt_id: String,
    pub text: String,
    /// UTF-8 bytes of the attempt's text before `text`.
    #[serde(default)]
    pub offset: u64,
    /// A catch-up: the attempt's text so far, from offset 0, sent when a
    /// watcher joined elsewhere (see `kernel/signals.rs`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub catch_up: bool,
}

/// Deltas from one replica, in the order it saw them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeltaBatch {
    pub origin: String,
    pub deltas: Vec<Delta>,
}

/// What another replica said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    Changed(Announcement),
    Deltas(DeltaBatch),
    /// Listening was interrupted (a lost connection, a database restart)
    /// and is back: signals sent meanwhile were missed, so everything that
    /// waits for one should look at the store.
    Resync,
}

#[async_trait]
pub trait Signals: Send + Sync {
    /// Tells the other replicas that `run_ids` changed.
    async fn announce(&self, origin: &str, run_ids: &[String]) -> StoreResult<()>;

    /// Sends token deltas to the other replicas' watchers.
    async fn announce_deltas(&self, batch: &DeltaBatch) -> StoreResult<()>;

    /// Signals sent by any replica (including this one: filter by origin).
    /// `None` for a single-process store.
    async fn listen(&self) -> StoreResult<Option<mpsc::Receiver<Signal>>>;
}

/// Splits run ids into payloads `origin|id,id,…` under the size limit.
pub(super) fn payloads(origin: &str, run_ids: &[String]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = format!("{origin}|");
    let mut empty = true;
    for id in run_ids {
        if !empty && current.len() + id.len() + 1 > MAX_PAYLOAD {
            payloads.push(std::mem::replace(&mut current, format!("{origin}|")));
            empty = true;
        }
        if !empty {
            current.push(',');
        }
        current.push_str(id);
        empty = false;
    }
    if !empty {
        payloads.push(current);
    }
    payloads
}

/// Splits a batch of deltas into JSON payloads under the size limit; a
/// delta too long for one payload is cut at character boundaries.
pub(super) fn delta_payloads(batch: &DeltaBatch) -> Vec<String> {
    let encode = |deltas: &[Delta]| {
        serde_json::to_string(&DeltaBatch {
            origin: batch.origin.clone(),
            deltas: deltas.to_vec(),
        })
        .unwrap_or_default()
    };
    // Room for the envelope and JSON escaping (at most 6 bytes a char).
    let budget = MAX_PAYLOAD.saturating_sub(256 + batch.origin.len()) / 6;
    let mut pieces: Vec<Delta> = Vec::new();
    for delta in &batch.deltas {
        let ids = delta.run_id.len() + delta.task_id.len() + delta.attempt_id.len();
        let room = budget.saturating_sub(ids).max(1);
        let mut text = delta.text.as_str();
        let mut offset = delta.offset;
        loop {
            let mut cut = text.len().min(room);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            if cut == 0 && !text.is_empty() {
                cut = text.chars().next().map_or(text.len(), char::len_utf8);
            }
            let (head, tail) = text.split_at(cut);
            pieces.push(Delta {
                text: head.to_string(),
                offset,
                ..delta.clone()
            });
            offset += head.len() as u64;
            if tail.is_empty() {
                break;
            }
            text = tail;
        }
    }
    let mut payloads = Vec::new();
    let mut current: Vec<Delta> = Vec::new();
    for piece in pieces {
        current.push(piece);
        if current.len() > 1 && encode(&current).len() > MAX_PAYLOAD {
            let last = current.pop();
            payloads.push(encode(&current));
            current = last.into_iter().collect();
        }
    }
    if !current.is_empty() {
        payloads.push(encode(&current));
    }
    payloads
}

pub(super) fn parse(payload: &str) -> Option<Announcement> {
    let (origin, ids) = payload.split_once('|')?;
    Some(Announcement {
        origin: origin.to_string(),
        run_ids: ids
            .split(',')
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_stay_small_and_round_trip() {
        let ids: Vec<String> = (0..1000).map(|i| format!("run-{i:036}")).collect();
        let split = payloads("replica-a", &ids);
        assert!(split.len() > 1);
        assert!(split.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let mut back = Vec::new();
        for payload in &split {
            let announcement = parse(payload).unwrap();
            assert_eq!(announcement.origin, "replica-a");
            back.extend(announcement.run_ids);
        }
        assert_eq!(back, ids);
        assert!(payloads("a", &[]).is_empty());
    }

    #[test]
    fn delta_payloads_stay_small_and_keep_the_text() {
        let long = "é".repeat(5000) + &"x".repeat(9000);
        let batch = DeltaBatch {
            origin: "replica-a".into(),
            deltas: vec![
                Delta {
                    run_id: "run-1".into(),
                    task_id: "ask".into(),
                    attempt_id: "att-1".into(),
                    text: "Hel".into(),
                    offset: 0,
                    catch_up: false,
                },
                Delta {
                    run_id: "run-1".into(),
                    task_id: "ask".into(),
                    attempt_id: "att-1".into(),
                    text: long.clone(),
                    offset: 3,
                    catch_up: true,
                },
                Delta {
                    run_id: "run-2".into(),
                    task_id: "ask".into(),
                    attempt_id: "att-2".into(),
                    text: "\"quoted\"\n".into(),
                    offset: 0,
                    catch_up: false,
                },
            ],
        };
        let split = delta_payloads(&batch);
        assert!(split.len() > 1);
        assert!(split.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let mut texts: Vec<(String, String)> = Vec::new();
        let mut next_offset = 0;
        for payload in &split {
            let back: DeltaBatch = serde_json::from_str(payload).unwrap();
            assert_eq!(back.origin, "replica-a");
            for delta in back.deltas {
                if delta.run_id == "run-1" {
                    // Each piece says where it goes.
                    assert_eq!(delta.offset as usize, next_offset);
                    next_offset += delta.text.len();
                }
                match texts.last_mut() {
                    Some((run, text)) if *run == delta.run_id && delta.run_id == "run-1" => {
                        text.push_str(&delta.text)
                    }
                    _ => texts.push((delta.run_id, delta.text)),
                }
            }
        }
        assert_eq!(
            texts,
            vec![
                ("run-1".to_string(), format!("Hel{long}")),
                ("run-2".to_string(), "\"quoted\"\n".to_string()),
            ]
        );
    }
}
