//! Offers: a leased, committed attempt handed to a session (released at
//! once if it cannot be sent), and its `LeaseOffer` encoding.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Dispatcher, Held, ServerMsg};
use crate::chain::Handler;
use crate::kernel::{ClaimedAttempt, KernelError, value};
use crate::proto::taskloom::v1 as pb;

/// Rendered hook arguments (a JSON object of strings) as a map.
pub(super) fn hook_args(json: &str) -> BTreeMap<String, String> {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(json)
        .map(|object| {
            object
                .into_iter()
                .map(|(name, value)| match value {
                    serde_json::Value::String(text) => (name, text),
                    other => (name, other.to_string()),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn proto_time(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

impl Dispatcher {
    /// Hands a leased, committed attempt to a session: registers the lease
    /// and sends the offer; if the offer cannot be sent, releases the lease.
    pub(super) fn deliver(&self, session_id: String, claimed: ClaimedAttempt) {
        let attempt_id = claimed.attempt.id.clone();
        let run_id = claimed.attempt.run_id.clone();
        let token = claimed.attempt.lease_token.clone().unwrap_or_default();
        let superseded = {
            let mut state = self.state();
            if state.sessions.contains_key(&session_id) {
                state
                    .by_run
                    .entry(run_id.clone())
                    .or_default()
                    .insert(attempt_id.clone());
                let previous = state.held.insert(
                    attempt_id.clone(),
                    Held {
                        session_id: session_id.clone(),
                        run_id: run_id.clone(),
                        token: token.clone(),
                        chain: Some((
                            claimed.namespace.clone(),
                            claimed.chain_id.clone(),
                            claimed.chain_version,
                        )),
                    },
                );
                // An earlier lease on this attempt that the check of its
                // run has not caught yet: it is gone, and its slot with it.
                previous.inspect(|previous| {
                    if let Some(old) = state.sessions.get_mut(&previous.session_id) {
                        old.seat.give_back(1);
                    }
                })
            } else {
                None
            }
        };
        if let Some(previous) = superseded {
            self.send(
                &previous.session_id,
                ServerMsg::Cancel(pb::CancelLease {
                    lease: Some(pb::LeaseRef {
                        attempt_id: attempt_id.clone(),
                        lease_token: previous.token,
                    }),
                    reason: "lease expired".to_string(),
                }),
            );
        }
        let dispatcher = self.clone();
        tokio::spawn(async move {
            let offer = dispatcher.offer(&claimed).await;
            let sent = match offer {
                Ok(offer) => dispatcher.send(&session_id, ServerMsg::Lease(offer)),
                Err(error) => {
                    tracing::warn!(attempt_id = %attempt_id, error = %error, "cannot build a lease offer");
                    false
                }
            };
            if !sent {
                // Commit the lease, then send; a failed send releases it.
                dispatcher.forget(&attempt_id);
                if let Err(error) = dispatcher
                    .inner
                    .kernel
                    .release_lease(&run_id, &attempt_id, &token)
                    .await
                {
                    tracing::info!(attempt_id = %attempt_id, error = %error, "releasing an undelivered lease failed");
                }
            }
        });
    }

    /// The offer of a leased attempt.
    pub(super) async fn offer(
        &self,
        claimed: &ClaimedAttempt,
    ) -> Result<pb::LeaseOffer, KernelError> {
        let attempt = &claimed.attempt;
        let chain = self
            .inner
            .kernel
            .chain(&claimed.namespace, &claimed.chain_id, claimed.chain_version)
            .await?;
        let task = chain.task(&attempt.task_id);
        let input = value::decode(&attempt.input).map_err(KernelError::Corrupt)?;
        // A hook routed to a queue: its rendered arguments (kept as a JSON
        // object where other tasks keep their prompt) travel as `args`.
        let is_hook = task.is_some_and(|task| task.handler == Handler::Hook);
        let (prompt, args) = match (&attempt.prompt, is_hook) {
            (Some(json), true) => (String::new(), hook_args(json)),
            (prompt, _) => (prompt.clone().unwrap_or_default(), Default::default()),
        };
        Ok(pb::LeaseOffer {
            attempt_id: attempt.id.clone(),
            lease_token: attempt.lease_token.clone().unwrap_or_default(),
            task_id: attempt.task_id.clone(),
            run_id: attempt.run_id.clone(),
            chain_id: claimed.chain_id.clone(),
            chain_version: claimed.chain_version,
            handler: task
                .map(|task| task.handler.name().to_string())
                .unwrap_or_default(),
            queue: crate::namespace::unqualified(&attempt.queue).to_string(),
            input: Some(input),
            prompt,
            system_instruction: task
                .and_then(|task| task.system_instruction.clone())
                .unwrap_or_default(),
            args,
            lease_expire_time: attempt.lease_expires_at.map(proto_time),
            deadline: attempt.deadline.map(proto_time),
            attempt: attempt.attempt,
            traceparent: claimed.trace.traceparent(),
        })
    }
}
