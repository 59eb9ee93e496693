//! DeleteRun and run retention against a real server process, on SQLite
//! and PostgreSQL: what is deleted (the run with its attempts, events and
//! keys, audited in the same transaction), what is refused, and what the
//! retention loop removes and keeps.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::chains::{noop_chain, worker_chain};
use common::{TestServer, assert_invalid, error_reason};
use sqlx::Connection;
use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::ServerProcess;
use tonic::Code;
use tonic::transport::Channel;

/// A server whose database the test can read too.
struct Served {
    server: TestServer,
    database: Database,
    _dir: Option<tempfile::TempDir>,
}

enum Database {
    Sqlite(String),
    Postgres(String),
}

#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

async fn serve(backend: Backend, args: &[&str]) -> Served {
    serve_on(backend, None, args).await
}

/// A server on `url` (another server's database), or on a fresh one.
async fn serve_on(backend: Backend, url: Option<String>, args: &[&str]) -> Served {
    let (url, dir) = match (backend, url) {
        (_, Some(url)) => (url, None),
        (Backend::Sqlite, None) => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("taskloom.db").display().to_string();
            (path, Some(dir))
        }
        (Backend::Postgres, None) => (
            tokio::task::spawn_blocking(taskloom_testkit::fresh_postgres_database)
                .await
                .unwrap()
                .unwrap(),
            None,
        ),
    };
    let database = match backend {
        Backend::Sqlite => Database::Sqlite(url.clone()),
        Backend::Postgres => Database::Postgres(url.clone()),
    };
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let binary = Path::new(env!("CARGO_BIN_EXE_taskloom"));
    let process = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ServerProcess::start(binary, Some(&url), &args).expect("start taskloom")
    })
    .await
    .unwrap();
    let channel = Channel::from_shared(process.addr.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    Served {
        server: TestServer { process, channel },
        database,
        _dir: dir,
    }
}

impl Database {
    /// `sql` (with one `$1`/`?` parameter) as a count.
    async fn count(&self, sql: &str, bind: &str) -> i64 {
        match self {
            Database::Sqlite(path) => {
                let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .unwrap();
                sqlx::query_scalar(&sql.replace("$1", "?"))
                    .bind(bind)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap()
            }
            Database::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(sql)
                    .bind(bind)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap()
            }
        }
    }

    /// Rows of the run in each table that holds something of a run.
    async fn rows_of(&self, run_id: &str) -> [i64; 3] {
        [
            self.count("SELECT count(*) FROM runs WHERE id = $1", run_id)
                .await,
            self.count("SELECT count(*) FROM attempts WHERE run_id = $1", run_id)
                .await,
            self.count("SELECT count(*) FROM run_events WHERE run_id = $1", run_id)
                .await,
        ]
    }
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_replicas_share_the_retention_work() {
    let first = serve(Backend::Postgres, &["--run-retention", "1s"]).await;
    let Database::Postgres(url) = &first.database else {
        unreachable!()
    };
    let second = serve_on(
        Backend::Postgres,
        Some(url.clone()),
        &["--run-retention", "1s"],
    )
    .await;
    let servers = [&first.server, &second.server];
    create_chain(servers[0], noop_chain("shared", 1)).await;
    let mut runs = Vec::new();
    for index in 0..60 {
        runs.push(start(servers[index % 2], "shared").await);
    }
    let started = Instant::now();
    for (index, run) in runs.iter().enumerate() {
        let server = servers[index % 2];
        loop {
            match get(server, &run.id).await {
                Err(status) if status.code() == Code::NotFound => break,
                Err(status) => panic!("{status:?}"),
                Ok(found) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "run {} outlived its retention: {found:?}",
                        run.id
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    assert_eq!(
        first
            .database
            .count("SELECT count(*) FROM runs WHERE chain_id = $1", "shared")
            .await,
        0
    );
    for table in ["attempts", "run_events"] {
        let orphans = first
            .database
            .count(
                &format!("SELECT count(*) FROM {table} WHERE run_id <> $1"),
                "",
            )
            .await;
        assert_eq!(orphans, 0, "{table}");
    }
    // Both replicas still serve.
    for server in servers {
        assert!(get(server, &runs[0].id).await.is_err());
        server
            .chains()
            .get_chain(pb::GetChainRequest {
                id: "shared".into(),
                ..Default::default()
            })
            .await
            .expect("the replica serves");
    }
}

both_stores!(
    delete_run_deletes_a_finished_run_once,
    delete_run_refuses_what_it_cannot_delete,
    chain_run_retention_is_validated_and_kept,
    retention_deletes_expired_finished_runs_only,
);

fn text(value: &str) -> Option<pb::start_run_request::RunInput> {
    Some(pb::start_run_request::RunInput::TypedInput(pb::Value {
        kind: Some(pb::value::Kind::Text(value.into())),
    }))
}

async fn create_chain(server: &TestServer, chain: pb::Chain) {
    server
        .chains()
        .create_chain(pb::CreateChainRequest {
            chain: Some(chain),
            request_id: String::new(),
        })
        .await
        .expect("create chain");
}

async fn start(server: &TestServer, chain_id: &str) -> pb::Run {
    server
        .runs()
        .start_run(pb::StartRunRequest {
            chain_id: chain_id.into(),
            run_input: text("hello"),
            ..Default::default()
        })
        .await
        .expect("start run")
        .into_inner()
}

async fn wait_status(server: &TestServer, run_id: &str, status: pb::RunStatus) {
    for _ in 0..400 {
        let run = server
            .runs()
            .get_run(pb::GetRunRequest { id: run_id.into() })
            .await
            .unwrap()
            .into_inner();
        if run.status == status as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("run {run_id} never reached {status:?}");
}

async fn delete(server: &TestServer, id: &str, request_id: &str) -> Result<(), tonic::Status> {
    server
        .runs()
        .delete_run(pb::DeleteRunRequest {
            id: id.into(),
            request_id: request_id.into(),
        })
        .await
        .map(|_| ())
}

async fn get(server: &TestServer, id: &str) -> Result<pb::Run, tonic::Status> {
    server
        .runs()
        .get_run(pb::GetRunRequest { id: id.into() })
        .await
        .map(tonic::Response::into_inner)
}

async fn delete_run_deletes_a_finished_run_once(backend: Backend) {
    let served = serve(backend, &[]).await;
    let server = &served.server;
    create_chain(server, noop_chain("two", 2)).await;
    let gone = start(server, "two").await;
    let kept = start(server, "two").await;
    wait_status(server, &gone.id, pb::RunStatus::Succeeded).await;
    wait_status(server, &kept.id, pb::RunStatus::Succeeded).await;
    let before = served.database.rows_of(&kept.id).await;
    assert_eq!(served.database.rows_of(&gone.id).await, before);
    assert!(before[1] >= 2 && before[2] >= 4, "{before:?}");

    delete(server, &gone.id, "delete-1").await.expect("delete");
    assert_eq!(served.database.rows_of(&gone.id).await, [0, 0, 0]);
    assert_eq!(served.database.rows_of(&kept.id).await, before);
    let missing = get(server, &gone.id).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let events = server
        .runs()
        .list_run_events(pb::ListRunEventsRequest {
            run_id: gone.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(events.code(), Code::NotFound, "{events:?}");
    let watch = server
        .runs()
        .watch_run(pb::WatchRunRequest {
            run_id: gone.id.clone(),
            after_seq: 0,
            include_deltas: false,
        })
        .await;
    match watch {
        Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
        Ok(stream) => {
            let status = stream.into_inner().message().await.unwrap_err();
            assert_eq!(status.code(), Code::NotFound, "{status:?}");
        }
    }

    // A retry of the delete answers as the delete did.
    delete(server, &gone.id, "delete-1")
        .await
        .expect("retried delete");
    // Another delete of the gone run does not find it.
    let again = delete(server, &gone.id, "").await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
    let again = delete(server, &gone.id, "delete-2").await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
    // The request id now belongs to the first delete.
    let reused = delete(server, &kept.id, "delete-1").await.unwrap_err();
    assert_eq!(reused.code(), Code::FailedPrecondition, "{reused:?}");
    assert_eq!(error_reason(&reused), "REQUEST_ID_REUSED");
    assert!(get(server, &kept.id).await.is_ok());

    // One audit row, of the delete that happened.
    let audited = served
        .database
        .count(
            "SELECT count(*) FROM audit_events WHERE action = 'DeleteRun' \
             AND resource_type = 'run' AND outcome = 'OK' AND request_id = 'delete-1' \
             AND actor = 'local' AND resource_id = $1",
            &gone.id,
        )
        .await;
    assert_eq!(audited, 1);
}

async fn delete_run_refuses_what_it_cannot_delete(backend: Backend) {
    let served = serve(backend, &[]).await;
    let server = &served.server;
    // Nobody serves the queue: the run waits.
    create_chain(server, worker_chain("waits", "nobody-serves-this")).await;
    let waiting = start(server, "waits").await;
    let mut watch = server
        .runs()
        .watch_run(pb::WatchRunRequest {
            run_id: waiting.id.clone(),
            after_seq: 0,
            include_deltas: false,
        })
        .await
        .unwrap()
        .into_inner();

    let refused = delete(server, &waiting.id, "del-w").await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("only finished runs"),
        "{refused:?}"
    );
    assert_eq!(error_reason(&refused), "WRONG_RUN_STATE");
    assert!(get(server, &waiting.id).await.is_ok());
    assert_eq!(served.database.rows_of(&waiting.id).await[0], 1);

    let unknown = delete(server, "0190f0c4-0000-7000-8000-000000000000", "")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert_invalid(delete(server, "", "").await.unwrap_err(), &["id"]);
    assert_invalid(
        delete(server, &waiting.id, &"x".repeat(200))
            .await
            .unwrap_err(),
        &["request_id"],
    );

    // Once cancelled it can go, and the refused request id was not kept.
    server
        .runs()
        .cancel_run(pb::CancelRunRequest {
            id: waiting.id.clone(),
            reason: "test".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    // The watcher ends with the run's last event.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(_event) = watch.message().await.expect("watch") {}
    })
    .await;
    assert!(ended.is_ok(), "the watch did not end");
    delete(server, &waiting.id, "del-w")
        .await
        .expect("delete cancelled run");
    assert_eq!(served.database.rows_of(&waiting.id).await, [0, 0, 0]);
}

async fn chain_run_retention_is_validated_and_kept(backend: Backend) {
    let served = serve(backend, &[]).await;
    let server = &served.server;
    for bad in ["forever", "-1d", "1.5d", "36501d", "30"] {
        let mut chain = noop_chain("bad", 1);
        chain.run_retention = bad.into();
        let status = server
            .chains()
            .create_chain(pb::CreateChainRequest {
                chain: Some(chain),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_invalid(status, &["chain.run_retention"]);
    }
    for (id, retention) in [("keep", "0s"), ("month", "30d"), ("mixed", "1d12h")] {
        let mut chain = noop_chain(id, 1);
        chain.run_retention = retention.into();
        create_chain(server, chain).await;
        let stored = server
            .chains()
            .get_chain(pb::GetChainRequest {
                id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stored.run_retention, retention);
    }
}

async fn retention_deletes_expired_finished_runs_only(backend: Backend) {
    let served = serve(backend, &["--run-retention", "2s"]).await;
    let server = &served.server;
    create_chain(server, noop_chain("default", 1)).await;
    let mut keep = noop_chain("keep", 1);
    keep.run_retention = "0s".into();
    create_chain(server, keep).await;
    let mut hour = noop_chain("hour", 1);
    hour.run_retention = "1h".into();
    create_chain(server, hour).await;
    create_chain(server, worker_chain("waits", "nobody-serves-this")).await;

    let expiring: Vec<pb::Run> =
        futures::future::join_all((0..3).map(|_| start(server, "default"))).await;
    let forever = start(server, "keep").await;
    let hourly = start(server, "hour").await;
    let waiting = start(server, "waits").await;
    for run in expiring.iter().chain([&forever, &hourly]) {
        wait_status(server, &run.id, pb::RunStatus::Succeeded).await;
    }

    let started = Instant::now();
    for run in &expiring {
        loop {
            match get(server, &run.id).await {
                Err(status) if status.code() == Code::NotFound => break,
                Err(status) => panic!("{status:?}"),
                Ok(_) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(30),
                        "run {} outlived its retention",
                        run.id
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        assert_eq!(served.database.rows_of(&run.id).await, [0, 0, 0]);
    }
    // A few sweeps later the others are all still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(get(server, &forever.id).await.is_ok());
    assert!(get(server, &hourly.id).await.is_ok());
    let waiting = get(server, &waiting.id)
        .await
        .expect("an unfinished run stays");
    assert_ne!(waiting.status, pb::RunStatus::Succeeded as i32);
    // Retention is not an audited action.
    assert_eq!(
        served
            .database
            .count(
                "SELECT count(*) FROM audit_events WHERE action = $1",
                "DeleteRun"
            )
            .await,
        0
    );
}
