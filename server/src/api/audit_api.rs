//! AuditService: reads the audit log, newest first.

use prost::Message;
use sha2::{Digest, Sha256};

use super::page::{ListRequest, ListResponse, list_page};
use super::request::{Violations, timestamp};
use super::{ApiContext, ApiResult};
use crate::proto::taskloom::v1::{self as pb, audit_service_server::AuditService};
use crate::store::{AuditFilter, AuditRecord};

/// Longest text filter accepted.
const MAX_FILTER_LEN: usize = 256;

pub struct AuditApi {
    context: ApiContext,
}

impl AuditApi {
    pub fn new(context: ApiContext) -> Self {
        AuditApi { context }
    }
}

service! {
    impl AuditService for AuditApi {
        fn list_audit_events(pb::ListAuditEventsRequest) -> pb::ListAuditEventsResponse = AuditRead;
    }
}

impl AuditApi {
    async fn list_audit_events(
        &self,
        request: pb::ListAuditEventsRequest,
    ) -> ApiResult<pb::ListAuditEventsResponse> {
        let filter = audit_filter(&request)?;
        let scope = list_scope(&request);
        let fetch = |query| self.context.store().list_audit_events(&filter, query);
        list_page(&request, &scope, fetch, |record| Ok(audit_event(record))).await
    }
}

impl ListRequest for pb::ListAuditEventsRequest {
    fn page_size(&self) -> i32 {
        self.page_size
    }
    fn page_token(&self) -> &str {
        &self.page_token
    }
}

impl ListResponse for pb::ListAuditEventsResponse {
    type Item = pb::AuditEvent;
    fn page(events: Vec<pb::AuditEvent>, next_page_token: String) -> Self {
        pb::ListAuditEventsResponse {
            events,
            next_page_token,
        }
    }
}

/// The request's filters, checked: text bounded, times valid and in
/// order, a resource id only with its type.
fn audit_filter(request: &pb::ListAuditEventsRequest) -> ApiResult<AuditFilter> {
    let mut violations = Violations::new();
    let mut text = |field: &str, value: &str| {
        violations.check_text(field, value, MAX_FILTER_LEN);
        (!value.is_empty()).then(|| value.to_string())
    };
    let mut filter = AuditFilter {
        // A listing shows the caller's namespace only.
        namespace: Some(super::call_namespace()),
        actor: text("actor", &request.actor),
        action: text("action", &request.action),
        resource_type: text("resource_type", &request.resource_type),
        resource_id: text("resource_id", &request.resource_id),
        start: None,
        end: None,
    };
    if filter.resource_id.is_some() && filter.resource_type.is_none() {
        violations.add("resource_type", "is required with resource_id");
    }
    filter.start = time(&mut violations, "start_time", request.start_time.as_ref());
    filter.end = time(&mut violations, "end_time", request.end_time.as_ref());
    if let (Some(start), Some(end)) = (filter.start, filter.end)
        && end <= start
    {
        violations.add("end_time", "must be after start_time");
    }
    violations.finish()?;
    Ok(filter)
}

/// A filter time, if given and valid.
fn time(
    violations: &mut Violations,
    field: &str,
    given: Option<&prost_types::Timestamp>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let given = given?;
    let nanos = u32::try_from(given.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000);
    let parsed = nanos.and_then(|nanos| chrono::DateTime::from_timestamp(given.seconds, nanos));
    if parsed.is_none() {
        violations.add(field, "is not a valid timestamp");
    }
    parsed
}

/// A page token's scope: the request's filters.
fn list_scope(request: &pb::ListAuditEventsRequest) -> String {
    let mut filters = request.clone();
    filters.page_size = 0;
    filters.page_token.clear();
    format!(
        "ListAuditEvents/{:x}",
        Sha256::digest(filters.encode_to_vec())
    )
}

fn audit_event(record: AuditRecord) -> pb::AuditEvent {
    pb::AuditEvent {
        id: record.id,
        time: Some(timestamp(record.at)),
        actor: record.actor,
        action: record.action,
        resource_type: record.resource_type,
        resource_id: record.resource_id,
        request_id: record.request_id,
        outcome: record.outcome,
        error_message: record.error_message,
        replica: record.replica,
        namespace: record.namespace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApiError;

    fn field_of(error: ApiError) -> String {
        format!("{error:?}")
    }

    #[test]
    fn filters_are_checked_with_their_field() {
        let bad_time = pb::ListAuditEventsRequest {
            start_time: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            ..Default::default()
        };
        let error = audit_filter(&bad_time).expect_err("negative nanos");
        assert!(field_of(error).contains("start_time"));
        let reversed = pb::ListAuditEventsRequest {
            start_time: Some(prost_types::Timestamp {
                seconds: 100,
                nanos: 0,
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: 50,
                nanos: 0,
            }),
            ..Default::default()
        };
        let error = audit_filter(&reversed).expect_err("end before start");
        assert!(field_of(error).contains("end_time"));
        let orphan_id = pb::ListAuditEventsRequest {
            resource_id: "c".into(),
            ..Default::default()
        };
        assert!(audit_filter(&orphan_id).is_err());
        let good = pb::ListAuditEventsRequest {
            actor: "local".into(),
            resource_type: "chain".into(),
            resource_id: "c".into(),
            ..Default::default()
        };
        let filter = audit_filter(&good).expect("valid filters");
        assert_eq!(filter.actor.as_deref(), Some("local"));
        assert_eq!(filter.action, None);
    }
}
