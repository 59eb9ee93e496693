//! Live token streams lose nothing: whoever watches a run with token
//! deltas, whenever they join (before the first chunk, in the middle of
//! the answer, on another PostgreSQL replica, or reconnecting after a
//! dropped stream), reconstructs exactly the provider's text from the
//! deltas, with no gap and no repetition (each delta's `delta_offset` is
//! checked against the text so far), and the stored output once the task
//! succeeded (on another replica than the call's, the completion may come
//! before the last deltas: see [`Reconstruction::check`]). Real
//! `taskloom serve` processes, real gRPC clients, a fake OpenAI-compatible
//! provider; both stores.

mod common;
use common::replica;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::chains::text_value;
use common::{Backend, TestServer};
use taskloom_server::proto::taskloom::v1 as pb;
use taskloom_testkit::fake_llm::{FakeLlm, Reply};
use tonic::transport::Channel;

const MODEL: &str = "fake-model";
/// Runs in a row, at each concurrency.
const RUNS: usize = 100;
/// Chunks of the slow provider's answer, and the pause before each.
const SLOW_CHUNKS: usize = 24;
const SLOW_CHUNK_DELAY: Duration = Duration::from_millis(6);
/// Late watchers join once the first watcher saw this many chunks.
const JOIN_AFTER_CHUNKS: usize = 10;
const WAIT: Duration = Duration::from_secs(30);

/// The provider's answer: multi-byte characters, so offsets (UTF-8 bytes)
/// and characters differ.
fn answer_chunks(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("wörd{i}·🙂 ")).collect()
}

fn instant_reply() -> (Reply, String) {
    let chunks = answer_chunks(12);
    let text = chunks.concat();
    (Reply::chunks(chunks).usage(5, 12), text)
}

fn slow_reply() -> (Reply, String) {
    let chunks = answer_chunks(SLOW_CHUNKS);
    let text = chunks.concat();
    (
        Reply::chunks(chunks)
            .usage(5, SLOW_CHUNKS as u64)
            .chunk_delay(SLOW_CHUNK_DELAY),
        text,
    )
}

/// A one-task chain asking the fake model; `stream` makes the call stream
/// whoever watches (a call started with no delta watcher does not).
fn ask_chain(stream: bool) -> pb::Chain {
    let mut ask = common::chains::task("ask", "raw_string", vec![]);
    ask.prompt_template = "Say something.".into();
    ask.execute_config = Some(pb::ExecuteConfig {
        model: MODEL.into(),
        stream,
        ..Default::default()
    });
    common::chains::chain("ask", vec![ask])
}

fn start_request(stream: bool) -> pb::StartRunRequest {
    pb::StartRunRequest {
        chain: Some(ask_chain(stream)),
        run_input: Some(pb::start_run_request::RunInput::TypedInput(text_value(
            "go",
        ))),
        ..Default::default()
    }
}

/// What one watcher made of a run, as a client reconstructs it: per
/// attempt, the catch-up replaces the text so far (it holds all of it),
/// and every other delta must start exactly where the text ends.
#[derive(Default)]
struct Reconstruction {
    run_id: String,
    last_seq: i64,
    text: String,
    attempt_id: String,
    deltas: usize,
    catch_ups: usize,
    output: Option<String>,
    ended: bool,
}

impl Reconstruction {
    fn take(&mut self, event: &pb::RunEvent) {
        self.run_id.clone_from(&event.run_id);
        if event.r#type == pb::RunEventType::TokenDelta as i32 {
            if self.attempt_id.is_empty() {
                self.attempt_id.clone_from(&event.attempt_id);
            }
            assert_eq!(event.attempt_id, self.attempt_id, "one attempt");
            if event.catch_up {
                assert_eq!(event.delta_offset, 0, "a catch-up starts at 0");
                assert!(
                    event.delta.starts_with(&self.text),
                    "a catch-up extends what was seen"
                );
                self.text.clone_from(&event.delta);
                self.catch_ups += 1;
            } else {
                assert_eq!(
                    event.delta_offset as usize,
                    self.text.len(),
                    "delta {:?} continues the text {:?}",
                    event.delta,
                    self.text
                );
                self.text.push_str(&event.delta);
            }
            self.deltas += 1;
            return;
        }
        assert!(event.seq > self.last_seq, "stored events in order, once");
        self.last_seq = event.seq;
        if event.r#type == pb::RunEventType::TaskSucceeded as i32
            && let Some(pb::value::Kind::Text(text)) =
                event.output.as_ref().and_then(|v| v.kind.as_ref())
        {
            self.output = Some(text.clone());
        }
        if event.r#type == pb::RunEventType::RunSucceeded as i32 {
            self.ended = true;
        }
    }

    /// Reads `stream` until the run ends, or until `until` says stop.
    async fn follow(
        &mut self,
        stream: &mut tonic::Streaming<pb::RunEvent>,
        mut until: impl FnMut(&Reconstruction) -> bool,
    ) {
        while !until(self) {
            let Some(event) = tokio::time::timeout(WAIT, stream.message())
                .await
                .expect("an event within the wait")
                .expect("the watch streams")
            else {
                assert!(self.ended, "the stream ends after the run");
                return;
            };
            self.take(&event);
        }
    }

    /// The whole answer, checked: the stored output is the provider's
    /// text, and the deltas (contiguous, checked as they came) are a prefix
    /// of it. `whole_deltas`: a watcher on the replica running the call
    /// gets every delta before the completion, so the deltas alone are the
    /// whole text. On another replica deltas travel through the database
    /// (coalesced for 20 ms) while the completion is a stored event: one
    /// reading history may see the completion first, and the stored output
    /// is then the rest of the answer (what `AnswerText` does in the SDKs).
    fn check(&self, expected: &str, who: &str, whole_deltas: bool) {
        assert!(self.ended, "{who}: the run succeeded");
        assert_eq!(self.output.as_deref(), Some(expected), "{who}: stored");
        assert!(
            expected.starts_with(&self.text),
            "{who}: deltas are a prefix"
        );
        if whole_deltas && self.deltas > 0 {
            assert_eq!(self.text, expected, "{who}: reconstructed from deltas");
        }
    }

    /// As [`Reconstruction::check`], for a watcher that reconnected after
    /// `deltas_before` deltas: when the call ended while it was away (no
    /// delta came after), the stored output is the whole answer.
    fn check_reconnected(&self, expected: &str, who: &str, deltas_before: usize) {
        self.check(expected, who, self.deltas > deltas_before);
    }
}

async fn watch(channel: Channel, run_id: &str, after_seq: i64) -> tonic::Streaming<pb::RunEvent> {
    pb::run_service_client::RunServiceClient::new(channel)
        .watch_run(pb::WatchRunRequest {
            run_id: run_id.into(),
            after_seq,
            include_deltas: true,
        })
        .await
        .expect("watch")
        .into_inner()
}

async fn start_and_watch(channel: Channel, stream: bool) -> tonic::Streaming<pb::RunEvent> {
    pb::run_service_client::RunServiceClient::new(channel)
        .start_and_watch_run(pb::StartAndWatchRunRequest {
            start: Some(start_request(stream)),
            after_seq: 0,
            include_deltas: true,
        })
        .await
        .expect("start and watch")
        .into_inner()
}

/// Runs `one(index)` `RUNS` times with `concurrency` at a time.
async fn runs<F, Fut>(concurrency: usize, one: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let one = Arc::new(one);
    let next = Arc::new(AtomicUsize::new(0));
    let lanes: Vec<_> = (0..concurrency)
        .map(|_| {
            let (one, next) = (one.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= RUNS {
                        return;
                    }
                    one(index).await;
                }
            })
        })
        .collect();
    for lane in lanes {
        lane.await.expect("a run's checks");
    }
}

/// A provider that answers at once, and a client that starts and watches
/// in one call: its first token cannot be missed, though the call was
/// started by the start itself (the task does not ask to stream: the
/// watch's wish for deltas, registered before the run existed, does).
async fn instant_answers_are_whole_from_the_first_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let fake = FakeLlm::start().await;
    let (reply, expected) = instant_reply();
    fake.set_default_reply(reply);
    server.add_fake_backend(&fake.url()).await;
    let expected = Arc::new(expected);
    for concurrency in [1, 8] {
        let (channel, expected) = (server.channel.clone(), expected.clone());
        runs(concurrency, move |index| {
            let (channel, expected) = (channel.clone(), expected.clone());
            async move {
                let mut stream = start_and_watch(channel, false).await;
                let mut seen = Reconstruction::default();
                seen.follow(&mut stream, |_| false).await;
                seen.check(&expected, &format!("run {index} at {concurrency}"), true);
                // Tokens arrive before the task's completion.
                assert!(seen.deltas > 0, "the call streamed to its starter");
            }
        })
        .await;
    }
}

/// A slowly streaming provider. Per run: the starter watches from before
/// the first chunk; after ten chunks a second client joins, and the starter
/// drops its stream and reconnects with `after_seq`. All three end with
/// exactly the provider's text. `late` is where the late client connects
/// (`remote`: another replica than the one running the call).
async fn slow_answers_are_whole_whenever_a_watcher_joins(
    starter: Channel,
    late: Channel,
    label: &'static str,
    remote: bool,
) {
    // Catch-ups the late joiners and the reconnecting starters got.
    let caught_up = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let (_, expected) = slow_reply();
    let expected = Arc::new(expected);
    for concurrency in [1, 8] {
        let before = caught_up
            .each_ref()
            .map(|count| count.load(Ordering::Relaxed));
        let (starter, late, expected, counter) = (
            starter.clone(),
            late.clone(),
            expected.clone(),
            caught_up.clone(),
        );
        runs(concurrency, move |index| {
            let (starter, late, expected, counter) = (
                starter.clone(),
                late.clone(),
                expected.clone(),
                counter.clone(),
            );
            async move {
                let who = format!("{label} run {index} at {concurrency}");
                let mut first = start_and_watch(starter.clone(), true).await;
                let mut seen = Reconstruction::default();
                let ten = answer_chunks(JOIN_AFTER_CHUNKS).concat().len();
                seen.follow(&mut first, |seen| seen.text.len() >= ten || seen.ended)
                    .await;
                // Joins now, while the call streams.
                let mut joined = watch(late, &seen.run_id, 0).await;
                // The starter's stream drops; it reconnects where it was.
                drop(first);
                let deltas_before = seen.deltas;
                let mut again = watch(starter, &seen.run_id, seen.last_seq).await;
                let mut joiner = Reconstruction::default();
                let (_, ()) = tokio::join!(
                    seen.follow(&mut again, |_| false),
                    joiner.follow(&mut joined, |_| false),
                );
                seen.check_reconnected(&expected, &format!("{who}: starter"), deltas_before);
                joiner.check(&expected, &format!("{who}: joiner"), !remote);
                assert!(seen.deltas > 0, "{who}: the starter saw deltas");
                counter[0].fetch_add(joiner.catch_ups, Ordering::Relaxed);
                counter[1].fetch_add(seen.catch_ups, Ordering::Relaxed);
            }
        })
        .await;
        let [joiners, starters] = [0, 1].map(|i| caught_up[i].load(Ordering::Relaxed) - before[i]);
        println!(
            "{label}: {RUNS} runs at {concurrency}: catch-ups of {joiners} joiners, {starters} reconnected starters"
        );
        // The joins happen mid-call: catch-ups were taken and used (a run
        // whose call ended before the join shows its stored output only;
        // the starters reconnect last, so on a loaded machine fewer of
        // theirs find the call still streaming).
        assert!(
            joiners > RUNS / 4,
            "{label}: joiners' catch-ups at {concurrency}"
        );
        assert!(
            starters > 0,
            "{label}: starters' catch-ups at {concurrency}"
        );
    }
}

async fn slow_on_one_server(backend: Backend) {
    let server = TestServer::start(backend).await;
    let fake = FakeLlm::start().await;
    fake.set_default_reply(slow_reply().0);
    server.add_fake_backend(&fake.url()).await;
    let label = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    slow_answers_are_whole_whenever_a_watcher_joins(
        server.channel.clone(),
        server.channel.clone(),
        label,
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_answers_sqlite() {
    instant_answers_are_whole_from_the_first_token(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_answers_postgres() {
    instant_answers_are_whole_from_the_first_token(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_and_reconnecting_watchers_sqlite() {
    slow_on_one_server(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_and_reconnecting_watchers_postgres() {
    slow_on_one_server(Backend::Postgres).await;
}

/// The late watcher joins on another replica than the one running the
/// call: its catch-up comes through the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_watchers_on_another_postgres_replica() {
    let url = taskloom_testkit::fresh_postgres_database().unwrap();
    let (a, channel_a) = replica(&url).await;
    let (_b, channel_b) = replica(&url).await;
    let fake = FakeLlm::start().await;
    fake.set_default_reply(slow_reply().0);
    let a = TestServer {
        process: a,
        channel: channel_a.clone(),
    };
    a.add_fake_backend(&fake.url()).await;
    // Started on A (whose runner takes it: eager dispatch), joined on B.
    slow_answers_are_whole_whenever_a_watcher_joins(channel_a, channel_b, "replicas", true).await;
}

/// A `request_id` already used starts nothing: the stream watches the run
/// it started, from `after_seq`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_watch_keeps_start_runs_idempotency() {
    let server = TestServer::start(Backend::Sqlite).await;
    let fake = FakeLlm::start().await;
    let (reply, expected) = instant_reply();
    fake.set_default_reply(reply);
    server.add_fake_backend(&fake.url()).await;
    let request = |after_seq| pb::StartAndWatchRunRequest {
        start: Some(pb::StartRunRequest {
            request_id: "4b1f0c52-5f0e-4a57-9d0c-3c1f3b0e8a11".into(),
            ..start_request(false)
        }),
        after_seq,
        include_deltas: true,
    };
    let mut runs = server.runs();
    let mut first = Reconstruction::default();
    let mut stream = runs
        .start_and_watch_run(request(0))
        .await
        .unwrap()
        .into_inner();
    first.follow(&mut stream, |_| false).await;
    first.check(&expected, "first", true);
    let mut again = Reconstruction::default();
    let mut stream = runs
        .start_and_watch_run(request(0))
        .await
        .unwrap()
        .into_inner();
    again.follow(&mut stream, |_| false).await;
    assert_eq!(again.run_id, first.run_id, "the same run");
    assert_eq!(again.last_seq, first.last_seq, "its whole history");
    again.check(&expected, "again", true);
    let listed = runs
        .list_runs(pb::ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.runs.len(), 1, "one run started");
    // Without a start there is nothing to watch.
    let status = runs
        .start_and_watch_run(pb::StartAndWatchRunRequest::default())
        .await
        .unwrap_err();
    common::assert_invalid(status, &["start"]);
}
