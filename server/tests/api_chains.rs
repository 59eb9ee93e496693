//! ChainService against a real server process, on SQLite and Postgres.

mod common;

use common::chains::{branch, goto};

use common::{TestServer, assert_invalid, error_reason};
use taskloom_server::proto::taskloom::v1 as pb;
use tonic::Code;

api_tests!(
    chain_versions_lifecycle,
    chain_validation_reports_every_problem,
    chain_idempotency_under_concurrency,
    chain_pagination,
);

fn two_step_chain(id: &str) -> pb::Chain {
    pb::Chain {
        id: id.into(),
        description: "classify then answer".into(),
        tasks: vec![
            pb::Task {
                id: "classify".into(),
                handler: "condition_key".into(),
                prompt_template: "Is this a question? {{ input }}".into(),
                valid_conditions: [("yes".to_string(), true), ("no".to_string(), true)].into(),
                transition: Some(pb::Transition {
                    on_failure: String::new(),
                    branches: vec![
                        branch("equals", "yes", goto("answer")),
                        branch("default", "", goto("end")),
                    ],
                }),
                ..Default::default()
            },
            pb::Task {
                id: "answer".into(),
                handler: "raw_string".into(),
                system_instruction: "Answer briefly.".into(),
                transition: Some(pb::Transition {
                    on_failure: String::new(),
                    branches: vec![branch("default", "", goto("end"))],
                }),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

async fn chain_versions_lifecycle(server: TestServer) {
    let mut client = server.chains();
    let v1 = client
        .create_chain(pb::CreateChainRequest {
            chain: Some(two_step_chain("qa")),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v1.version, 1);
    assert_eq!(v1.etag, "1");
    assert_eq!(v1.tasks.len(), 2);
    assert!(v1.create_time.is_some());

    let error = client
        .create_chain(pb::CreateChainRequest {
            chain: Some(two_step_chain("qa")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);

    let mut changed = two_step_chain("qa");
    changed.description = "second version".into();
    let v2 = client
        .update_chain(pb::UpdateChainRequest {
            chain: Some(changed.clone()),
            etag: v1.etag.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.description, "second version");
    assert_eq!(v2.create_time, v1.create_time);

    let stale = client
        .update_chain(pb::UpdateChainRequest {
            chain: Some(changed),
            etag: v1.etag.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(error_reason(&stale), "ETAG_MISMATCH");

    let latest = client
        .get_chain(pb::GetChainRequest {
            id: "qa".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest, v2);
    let first = client
        .get_chain(pb::GetChainRequest {
            id: "qa".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, v1);
    let error = client
        .get_chain(pb::GetChainRequest {
            id: "qa".into(),
            version: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    let error = client
        .get_chain(pb::GetChainRequest {
            id: "qa".into(),
            version: -1,
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["version"]);

    let versions = client
        .list_chain_versions(pb::ListChainVersionsRequest {
            id: "qa".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .chains;
    assert_eq!(
        versions.iter().map(|c| c.version).collect::<Vec<_>>(),
        vec![2, 1]
    );

    let error = client
        .delete_chain(pb::DeleteChainRequest {
            id: "qa".into(),
            etag: "1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Aborted);
    client
        .delete_chain(pb::DeleteChainRequest {
            id: "qa".into(),
            etag: "2".into(),
        })
        .await
        .unwrap();
    let error = client
        .get_chain(pb::GetChainRequest {
            id: "qa".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    let error = client
        .update_chain(pb::UpdateChainRequest {
            chain: Some(two_step_chain("qa")),
            etag: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);

    // The id can be reused; numbering continues so pinned versions stay unique.
    let again = client
        .create_chain(pb::CreateChainRequest {
            chain: Some(two_step_chain("qa")),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.version, 3);
}

async fn chain_validation_reports_every_problem(server: TestServer) {
    let mut client = server.chains();
    let mut chain = two_step_chain("bad");
    chain.tasks[0].handler = "telepathy".into();
    chain.tasks[1].id = "end".into();
    chain.tasks[0].transition.as_mut().unwrap().branches[0].operator = "resembles".into();
    chain.tasks.push(pb::Task {
        id: "orphan".into(),
        handler: "worker".into(),
        timeout: "soon".into(),
        prompt_template: "{{ unclosed".into(),
        ..Default::default()
    });

    let response = client
        .validate_chain(pb::ValidateChainRequest {
            chain: Some(chain.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!response.valid);
    let fields: Vec<&str> = response
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    for expected in [
        "chain.tasks[0].handler",
        "chain.tasks[1].id",
        "chain.tasks[0].transition.branches[0].operator",
        "chain.tasks[2].timeout",
        "chain.tasks[2].prompt_template",
        "chain.tasks[2].queue",
    ] {
        assert!(
            fields.contains(&expected),
            "{expected} missing from {fields:?}"
        );
    }
    assert!(
        response
            .violations
            .iter()
            .all(|v| !v.reason.is_empty() && !v.description.is_empty())
    );

    let error = client
        .create_chain(pb::CreateChainRequest {
            chain: Some(chain),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let violated = common::violated_fields(&error);
    assert!(violated.len() >= 6, "{violated:?}");
    assert!(violated.contains(&"chain.tasks[0].handler".to_string()));

    let ok = client
        .validate_chain(pb::ValidateChainRequest {
            chain: Some(two_step_chain("fine")),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.valid, "{:?}", ok.violations);

    let error = client
        .validate_chain(pb::ValidateChainRequest { chain: None })
        .await
        .unwrap_err();
    assert_invalid(error, &["chain"]);

    // Oversize definitions are refused before validation.
    let mut huge = two_step_chain("huge");
    huge.description = "x".repeat(1024 * 1024 + 1);
    let error = client
        .create_chain(pb::CreateChainRequest {
            chain: Some(huge.clone()),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(error, &["chain"]);
    let error = client
        .validate_chain(pb::ValidateChainRequest { chain: Some(huge) })
        .await
        .unwrap_err();
    assert_invalid(error, &["chain"]);

    // Rejected chains leave nothing behind.
    let listed = client
        .list_chains(pb::ListChainsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.chains.is_empty());
}

async fn chain_idempotency_under_concurrency(server: TestServer) {
    let mut handles = Vec::new();
    for _ in 0..20 {
        let mut client = server.chains();
        handles.push(tokio::spawn(async move {
            client
                .create_chain(pb::CreateChainRequest {
                    chain: Some(two_step_chain("once")),
                    request_id: "create-once".into(),
                })
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.unwrap().expect("duplicates all succeed"));
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    let mut client = server.chains();
    let versions = client
        .list_chain_versions(pb::ListChainVersionsRequest {
            id: "once".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .chains;
    assert_eq!(versions.len(), 1);

    let mut other = two_step_chain("once-other");
    other.description = "different payload".into();
    let error = client
        .create_chain(pb::CreateChainRequest {
            chain: Some(other),
            request_id: "create-once".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
}

async fn chain_pagination(server: TestServer) {
    let mut client = server.chains();
    for i in 0..5 {
        client
            .create_chain(pb::CreateChainRequest {
                chain: Some(two_step_chain(&format!("chain-{i}"))),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    let first = client
        .list_chains(pb::ListChainsRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first
            .chains
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        vec!["chain-0", "chain-1"]
    );
    let second = client
        .list_chains(pb::ListChainsRequest {
            page_size: 2,
            page_token: first.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        second
            .chains
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>(),
        vec!["chain-2", "chain-3"]
    );
    let third = client
        .list_chains(pb::ListChainsRequest {
            page_size: 2,
            page_token: second.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(third.chains.len(), 1);
    assert!(third.next_page_token.is_empty());
}
