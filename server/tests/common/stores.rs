//! Stores on fresh databases, for the suites that test a store (or the
//! kernel over one) without a server, and [`store_tests!`](crate::store_tests)
//! to stamp each check out once per backend.

use sqlx::Connection;
use taskloom_server::secrets::SecretBox;
use taskloom_server::store::{self, DynStore};
use tempfile::TempDir;

use super::Backend;

/// One fixed key for every store the tests open: stores reopened in a test
/// read what they sealed.
pub fn test_secrets() -> SecretBox {
    SecretBox::from_key([7; 32])
}

impl Backend {
    /// The name the store reports as its kind.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A migrated store on a fresh database, plus whatever must outlive it.
pub struct StoreHarness {
    pub backend: Backend,
    pub store: DynStore,
    pub database: RawDatabase,
    /// Holds the SQLite file's directory until the test ends.
    _dir: Option<TempDir>,
}

impl StoreHarness {
    /// SQLite in a fresh temp file, or a fresh database on the testkit's
    /// throwaway PostgreSQL server.
    pub async fn open(backend: Backend) -> StoreHarness {
        let (url, dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("taskloom.db");
                (path.to_str().unwrap().to_string(), Some(dir))
            }
            // Creating the database shells out to psql (and may start a
            // server).
            Backend::Postgres => (
                tokio::task::spawn_blocking(taskloom_testkit::fresh_postgres_database)
                    .await
                    .unwrap()
                    .unwrap(),
                None,
            ),
        };
        let store = store::open(&url, test_secrets()).await.unwrap();
        store.migrate().await.unwrap();
        let database = match backend {
            Backend::Sqlite => RawDatabase::Sqlite(url),
            Backend::Postgres => RawDatabase::Postgres(url),
        };
        StoreHarness {
            backend,
            store,
            database,
            _dir: dir,
        }
    }
}

/// Direct access to the database under a store, to plant rows the store
/// itself would never write.
#[derive(Clone)]
pub enum RawDatabase {
    Sqlite(String),
    Postgres(String),
}

impl RawDatabase {
    pub async fn execute(&self, sql: &str) {
        match self {
            RawDatabase::Sqlite(path) => {
                let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
                let mut conn = sqlx::SqliteConnection::connect_with(&options)
                    .await
                    .unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            RawDatabase::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }
}

/// Stamps out each listed check as one `#[tokio::test]` per backend, in
/// modules `sqlite` and `postgres` (so `cargo test --test NAME sqlite` runs
/// the SQLite half), each on a fresh [`StoreHarness`]. Checks are grouped by
/// what they take, written as arguments over the harness the caller names:
///
/// ```ignore
/// store_tests!(harness;
///     (harness.store.clone()) => [creates_a_run, lists_runs],
///     (harness.store.clone(), harness.database.clone()) => [reads_bad_rows],
/// );
/// ```
#[macro_export]
macro_rules! store_tests {
    ($harness:ident; $($args:tt => [$($check:ident),* $(,)?]),* $(,)?) => {
        mod sqlite {
            $($crate::store_tests!(@checks Sqlite, $harness, $args, $($check),*);)*
        }
        mod postgres {
            $($crate::store_tests!(@checks Postgres, $harness, $args, $($check),*);)*
        }
    };
    (@checks $backend:ident, $harness:ident, $args:tt, $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let $harness = $crate::common::stores::StoreHarness::open(
                    $crate::common::Backend::$backend,
                )
                .await;
                super::$check $args.await;
            }
        )*
    };
}

/// An audit record for a store write made directly by a test (each call
/// a fresh id, as the API makes them).
pub fn audit() -> store::AuditRecord {
    audit_of("TestWrite", "test", "")
}

/// An audit record of the action `action` on the resource `kind`/`id`.
pub fn audit_of(action: &str, kind: &str, id: &str) -> store::AuditRecord {
    store::AuditRecord {
        id: uuid::Uuid::now_v7().to_string(),
        at: chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6),
        actor: "test".to_string(),
        action: action.to_string(),
        resource_type: kind.to_string(),
        resource_id: id.to_string(),
        request_id: String::new(),
        outcome: store::AuditRecord::OK.to_string(),
        error_message: String::new(),
        replica: "test-replica".to_string(),
        namespace: "default".to_string(),
    }
}
