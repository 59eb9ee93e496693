//! The one retry loop of the PostgreSQL store: a transaction that failed as
//! a whole on a deadlock, a serialization failure or a row lock taken with
//! `NOWAIT` runs again, after a jittered, doubling pause.

use std::future::Future;
use std::time::Duration;

use super::database_error;
use crate::store::{StoreError, StoreResult};

/// How often a transaction is tried.
const MAX_TRIES: u32 = 5;

/// Runs `transaction` until it succeeds, fails for another reason, or has
/// been tried [`MAX_TRIES`] times. Each try must be a whole transaction.
pub(super) async fn retrying<T, F, Fut>(mut transaction: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = StoreResult<T>>,
{
    let mut tries = 1;
    loop {
        match transaction().await {
            Err(err) if tries < MAX_TRIES && is_retryable(&err) => {
                back_off(tries).await;
                tries += 1;
            }
            outcome => return outcome,
        }
    }
}

/// A deadlock (40P01), serialization failure (40001) or a row lock taken
/// with `NOWAIT` that another transaction holds (55P03).
fn is_retryable(err: &StoreError) -> bool {
    match err {
        StoreError::Database(err) => database_error(err)
            .and_then(|db| db.code())
            .is_some_and(|code| matches!(code.as_ref(), "40P01" | "40001" | "55P03")),
        _ => false,
    }
}

/// Sleeps before try `tries + 1`, so the transactions that collided do not
/// collide again in lockstep.
async fn back_off(tries: u32) {
    let ceiling_us = 1_000u64 << tries.min(6);
    let delay_us = rand::random_range(ceiling_us / 4..=ceiling_us);
    tokio::time::sleep(Duration::from_micros(delay_us)).await;
}
