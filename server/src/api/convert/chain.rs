//! Chain definitions.

use prost::Message;

use crate::api::request::{Violations, timestamp};
use crate::api::{ApiError, ApiResult};
use crate::chain;
use crate::proto::taskloom::v1 as pb;
use crate::store::ChainRecord;

/// Largest accepted chain definition (encoded).
const MAX_CHAIN_BYTES: usize = 1024 * 1024;

/// Decodes a stored version and fills in its output-only fields.
pub fn chain_message(record: ChainRecord) -> ApiResult<pb::Chain> {
    let mut chain = pb::Chain::decode(record.definition.as_slice()).map_err(|error| {
        ApiError::Internal(format!(
            "stored chain {} version {} does not decode: {error}",
            record.id, record.version
        ))
    })?;
    chain.version = record.version;
    chain.etag = record.version.to_string();
    chain.create_time = Some(timestamp(record.created_at));
    chain.update_time = Some(timestamp(record.updated_at));
    Ok(chain)
}

/// Rejects definitions over [`MAX_CHAIN_BYTES`] before any deeper check.
fn check_size(chain: &pb::Chain) -> ApiResult<()> {
    let size = chain.encoded_len();
    if size > MAX_CHAIN_BYTES {
        return Err(ApiError::invalid(
            "chain",
            format!("is {size} bytes encoded; at most {MAX_CHAIN_BYTES} are accepted"),
        ));
    }
    Ok(())
}

/// Validates a definition (every problem at once, paths under `chain.`) and
/// returns its id and the bytes to store: the message without its
/// output-only fields.
pub fn definition_bytes(chain: Option<&pb::Chain>) -> ApiResult<(String, Vec<u8>)> {
    let Some(chain) = chain else {
        return Err(ApiError::invalid("chain", "is required"));
    };
    let mut definition = chain.clone();
    definition.version = 0;
    definition.etag.clear();
    definition.create_time = None;
    definition.update_time = None;
    check_size(&definition)?;
    let bytes = definition.encode_to_vec();
    let mut violations = Violations::new();
    for violation in chain::validate(&definition) {
        violations.add_with_reason(
            format!("chain.{}", violation.field),
            violation.description,
            violation.reason,
        );
    }
    violations.finish()?;
    Ok((definition.id, bytes))
}

/// A `ValidateChain` answer: every problem of the definition, as data.
pub fn validation(chain: Option<&pb::Chain>) -> ApiResult<pb::ValidateChainResponse> {
    let Some(chain) = chain else {
        return Err(ApiError::invalid("chain", "is required"));
    };
    check_size(chain)?;
    let violations: Vec<pb::FieldViolation> = chain::validate(chain)
        .into_iter()
        .map(|v| pb::FieldViolation {
            field: format!("chain.{}", v.field),
            description: v.description,
            reason: v.reason.to_string(),
        })
        .collect();
    Ok(pb::ValidateChainResponse {
        valid: violations.is_empty(),
        violations,
    })
}

/// The version a `GetChain` asks for (`None`: the latest).
pub fn requested_version(version: i64) -> ApiResult<Option<i64>> {
    if version < 0 {
        return Err(ApiError::invalid(
            "version",
            "must be positive, or 0 for the latest",
        ));
    }
    Ok((version > 0).then_some(version))
}
