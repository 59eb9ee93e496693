//! Namespaces (docs/security.md): chains, runs, hooks, worker sessions and
//! queues belong to one; backends, pools and models are shared.
//!
//! Chains, hooks and runs carry their namespace in a column of their own.
//! A queue is known inside the server by its *queue key*, `namespace/queue`,
//! so every place that keys work by queue (the ready index, claims, caps,
//! pauses, eager offers, metrics) keeps namespaces apart without knowing
//! them; the api turns names into keys on the way in and back on the way
//! out. The internal queue, served by the server itself for every
//! namespace, is its own key. Tenant caps count a run's tenant by the same
//! kind of key, `namespace/tenant`.

use crate::kernel::INTERNAL_QUEUE;

/// The namespace every install has, and that a call naming none uses.
pub const DEFAULT: &str = "default";

/// Lowercase letters, digits and `-`, 1 to 63 characters: no `/`, so a
/// queue key splits at its first `/`.
pub fn is_valid(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The key of `queue` in `namespace`.
pub fn queue_key(namespace: &str, queue: &str) -> String {
    if queue == INTERNAL_QUEUE {
        return queue.to_string();
    }
    format!("{namespace}/{queue}")
}

/// The queue's name if `key` is a queue of `namespace`.
pub fn queue_in<'k>(namespace: &str, key: &'k str) -> Option<&'k str> {
    if key == INTERNAL_QUEUE {
        return Some(key);
    }
    key.strip_prefix(namespace)?.strip_prefix('/')
}

/// The name in a key (`namespace/name`: a queue, or a tenant as caps count
/// it) without its namespace.
pub fn unqualified(key: &str) -> &str {
    key.split_once('/').map_or(key, |(_, queue)| queue)
}

/// The namespace of a queue key; `None` for the internal queue.
pub fn of_queue_key(key: &str) -> Option<&str> {
    key.split_once('/').map(|(namespace, _)| namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_round_trip_and_stay_apart() {
        let key = queue_key("team-a", "gpu/large");
        assert_eq!(key, "team-a/gpu/large");
        assert_eq!(queue_in("team-a", &key), Some("gpu/large"));
        assert_eq!(queue_in("team", &key), None);
        assert_eq!(queue_in("team-b", &key), None);
        assert_eq!(unqualified(&key), "gpu/large");
        assert_eq!(of_queue_key(&key), Some("team-a"));
        assert_eq!(queue_key("team-a", INTERNAL_QUEUE), INTERNAL_QUEUE);
        assert_eq!(of_queue_key(INTERNAL_QUEUE), None);
    }

    #[test]
    fn names_are_checked() {
        for good in ["default", "a", "team-1", &"x".repeat(63)] {
            assert!(is_valid(good), "{good}");
        }
        for bad in ["", "Team", "a_b", "a.b", "a/b", "a b", &"x".repeat(64), "é"] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
