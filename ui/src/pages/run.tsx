// One run: its chain as a graph with the path taken, a timeline of its
// attempts (retries, throttling, waits), each task's output, prompt and
// tokens, the event log, live updates and token stream through WatchRun
// (include_deltas), and the actions a run allows.

import type { JsonObject } from "@bufbuild/protobuf";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { chains, isAbort, isFinal, requestId, runs } from "../api.js";
import { AnswerForm } from "../answer.js";
import { ChainGraph } from "../graph.js";
import {
  attemptStatusName,
  duration,
  eventTypeName,
  isTerminal,
  millis,
  runStatusName,
  shorten,
  time,
  tokens,
  valueKind,
  valueText,
} from "../format.js";
import type { Chain } from "../gen/taskloom/v1/chain_pb.js";
import { AttemptStatus, RunEventType, RunStatus } from "../gen/taskloom/v1/run_pb.js";
import type { ReplayRunResponse, Run, RunEvent, TaskAttempt } from "../gen/taskloom/v1/run_pb.js";
import { Badge, Empty, ErrorBox, href, Pre, Status } from "../ui.js";

async function allAttempts(runId: string): Promise<TaskAttempt[]> {
  const out: TaskAttempt[] = [];
  let pageToken = "";
  do {
    const page = await runs.listRunAttempts({ runId, pageSize: 1000, pageToken });
    out.push(...page.attempts);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

/** What WatchRun delivered so far: stored events and streamed text per attempt. */
interface Live {
  events: RunEvent[];
  streams: Map<string, { taskId: string; text: string }>;
}

function useRunWatch(id: string, onStored: () => void) {
  const [live, setLive] = useState<Live>({ events: [], streams: new Map() });
  const [error, setError] = useState<unknown>(undefined);
  const [ended, setEnded] = useState(false);
  const onStoredRef = useRef(onStored);
  onStoredRef.current = onStored;
  useEffect(() => {
    const abort = new AbortController();
    const events: RunEvent[] = [];
    const streams = new Map<string, { taskId: string; text: string }>();
    let flushScheduled = false;
    // Batches what arrives within a frame into one render: a run's first
    // thousand events come in one burst.
    const flush = () => {
      flushScheduled = false;
      setLive({ events: events.slice(), streams: new Map(streams) });
    };
    const schedule = () => {
      if (!flushScheduled) {
        flushScheduled = true;
        requestAnimationFrame(flush);
      }
    };
    let lastSeq = 0n;
    const watch = async () => {
      for (;;) {
        try {
          for await (const event of runs.watchRun(
            { runId: id, afterSeq: lastSeq, includeDeltas: true },
            { signal: abort.signal },
          )) {
            if (event.type === RunEventType.TOKEN_DELTA) {
              const prior = streams.get(event.attemptId);
              const text = event.catchUp || !prior ? event.delta : prior.text + event.delta;
              streams.set(event.attemptId, { taskId: event.taskId, text });
            } else {
              if (event.seq <= lastSeq) continue;
              lastSeq = event.seq;
              events.push(event);
              onStoredRef.current();
            }
            schedule();
          }
          setEnded(true);
          setError(undefined);
          return;
        } catch (e) {
          if (abort.signal.aborted || isAbort(e)) return;
          setError(e);
          if (isFinal(e)) return;
          // Try again from the last event seen: the server may have restarted.
          await new Promise((r) => setTimeout(r, 2000));
          if (abort.signal.aborted) return;
        }
      }
    };
    void watch();
    return () => abort.abort();
  }, [id]);
  return { live, error, ended };
}

/** Calls `fn` at most once per `ms`, the last call always landing. */
function useThrottled(fn: () => void, ms: number): () => void {
  const state = useRef<{ timer?: ReturnType<typeof setTimeout>; last: number }>({ last: 0 });
  const fnRef = useRef(fn);
  fnRef.current = fn;
  useEffect(() => () => clearTimeout(state.current.timer), []);
  return () => {
    const s = state.current;
    if (s.timer) return;
    const wait = Math.max(0, s.last + ms - Date.now());
    s.timer = setTimeout(() => {
      s.timer = undefined;
      s.last = Date.now();
      fnRef.current();
    }, wait);
  };
}

export function RunPage({ id }: { id: string }) {
  const [run, setRun] = useState<Run | undefined>(undefined);
  const [chain, setChain] = useState<Chain | undefined>(undefined);
  const [attempts, setAttempts] = useState<TaskAttempt[] | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [initialSeq, setInitialSeq] = useState<bigint | undefined>(undefined);
  const refresh = async () => {
    try {
      const [r, a] = await Promise.all([runs.getRun({ id }), allAttempts(id)]);
      setRun(r);
      setAttempts(a);
      setError(undefined);
      return r;
    } catch (e) {
      setError(e);
      return undefined;
    }
  };
  const refreshSoon = useThrottled(() => void refresh(), 300);
  const { live, error: watchError, ended } = useRunWatch(id, refreshSoon);
  useEffect(() => {
    let stopped = false;
    void refresh().then(async (r) => {
      if (!r || stopped) return;
      setInitialSeq(r.lastEventSeq);
      try {
        const c = await chains.getChain({ id: r.chainId, version: r.chainVersion });
        if (!stopped) setChain(c);
      } catch (e) {
        if (!stopped) setError(e);
      }
    });
    return () => {
      stopped = true;
    };
  }, [id]);
  useEffect(() => {
    if (ended) void refresh();
  }, [ended]);

  const ready =
    run !== undefined &&
    chain !== undefined &&
    attempts !== undefined &&
    initialSeq !== undefined &&
    BigInt(live.events.length) >= initialSeq;

  if (!run) {
    return (
      <section>
        <h1 class="mono">Run {id}</h1>
        <ErrorBox error={error} />
        {!error && <Empty>Loading…</Empty>}
      </section>
    );
  }
  return (
    <section class="run" data-ready={ready ? "true" : "false"} data-status={runStatusName(run.status)}>
      <h1>
        <span class="mono">{run.id}</span> <Status status={run.status} />
      </h1>
      <ErrorBox error={error ?? watchError} />
      <div class="run-top">
        <div class="card">
          <Summary run={run} />
          <Actions run={run} onChange={(r) => setRun(r)} />
        </div>
        <div class="card">
          <h2>Chain</h2>
          {chain ? <RunGraph chain={chain} run={run} attempts={attempts ?? []} events={live.events} /> : <Empty>…</Empty>}
        </div>
      </div>
      {run.status === RunStatus.WAITING_INPUT && run.inputRequest && (
        <div class="card">
          <h2>Waiting for input: {run.inputRequest.taskId}</h2>
          <AnswerForm run={run} onAnswered={setRun} />
        </div>
      )}
      <div class="card">
        <h2>Timeline</h2>
        <Timeline run={run} attempts={attempts ?? []} events={live.events} />
      </div>
      <div class="card">
        <h2>Tasks</h2>
        <Tasks chain={chain} attempts={attempts ?? []} live={live} />
      </div>
      <div class="card">
        <h2>
          Events <span class="muted" data-count={live.events.length}>{live.events.length}</span>
        </h2>
        <EventLog events={live.events} />
      </div>
    </section>
  );
}

function Summary({ run }: { run: Run }) {
  const start = millis(run.createTime);
  const end = millis(run.endTime) ?? Date.now();
  return (
    <dl class="summary">
      <dt>Chain</dt>
      <dd>
        <a href={href("chains", run.chainId)}>{run.chainId}</a> v{run.chainVersion.toString()}
      </dd>
      <dt>Created</dt>
      <dd>{time(run.createTime)}</dd>
      <dt>Took</dt>
      <dd>{start !== undefined ? duration(end - start) : ""}</dd>
      <dt>Steps</dt>
      <dd>{run.steps}</dd>
      <dt>Tokens</dt>
      <dd>{tokens(run.usage?.inputTokens, run.usage?.outputTokens) || "0"}</dd>
      {Object.keys(run.labels).length > 0 && (
        <>
          <dt>Labels</dt>
          <dd>
            {Object.entries(run.labels).map(([k, v]) => (
              <span key={k} class="label">
                {k}={v}
              </span>
            ))}
          </dd>
        </>
      )}
      {run.activeTasks.length > 0 && (
        <>
          <dt>Active</dt>
          <dd>{run.activeTasks.join(", ")}</dd>
        </>
      )}
      <dt>Input</dt>
      <dd>
        <Pre text={valueText(run.input)} />
      </dd>
      {run.output && (
        <>
          <dt>Output</dt>
          <dd class="run-output">
            <Pre text={valueText(run.output)} />
          </dd>
        </>
      )}
      {run.error && (
        <>
          <dt>Error</dt>
          <dd class="run-error">
            <b>{run.error.reason}</b> {run.error.message}
            {run.error.taskId && <span class="muted"> (task {run.error.taskId})</span>}
          </dd>
        </>
      )}
    </dl>
  );
}

function Actions({ run, onChange }: { run: Run; onChange: (run: Run) => void }) {
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const [replay, setReplay] = useState<ReplayRunResponse | undefined>(undefined);
  const act = async (call: () => Promise<Run | ReplayRunResponse>) => {
    setBusy(true);
    try {
      const result = await call();
      if (result.$typeName === "taskloom.v1.Run") onChange(result);
      else setReplay(result);
      setError(undefined);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const s = run.status;
  const terminal = isTerminal(s);
  return (
    <div class="actions">
      <div class="row">
        {!terminal && (
          <button
            type="button"
            name="cancel"
            class="danger"
            disabled={busy}
            onClick={() => {
              if (confirm(`Cancel run ${run.id}?`)) {
                void act(() => runs.cancelRun({ id: run.id, reason: "cancelled from the web UI", requestId: requestId() }));
              }
            }}
          >
            Cancel
          </button>
        )}
        {!terminal && s !== RunStatus.PAUSED && (
          <button type="button" name="pause" disabled={busy} onClick={() => void act(() => runs.pauseRun({ id: run.id, requestId: requestId() }))}>
            Pause
          </button>
        )}
        {s === RunStatus.PAUSED && (
          <button type="button" name="resume" disabled={busy} onClick={() => void act(() => runs.resumeRun({ id: run.id, requestId: requestId() }))}>
            Resume
          </button>
        )}
        {s === RunStatus.FAILED && (
          <button type="button" name="retry" disabled={busy} onClick={() => void act(() => runs.retryRun({ id: run.id, requestId: requestId() }))}>
            Retry
          </button>
        )}
        <button type="button" name="replay" class="secondary" disabled={busy} onClick={() => void act(() => runs.replayRun({ id: run.id }))}>
          Replay
        </button>
      </div>
      <ErrorBox error={error} />
      {replay && (
        <div class={`replay ${replay.diverged ? "diverged" : "same"}`}>
          <div>
            Replay {replay.diverged ? <Badge kind="failed">diverged</Badge> : <Badge kind="succeeded">matches the record</Badge>}{" "}
            fingerprint <code class="fingerprint">{replay.fingerprint}</code>
          </div>
          <div class="muted">path: {replay.path.join(" → ") || "(empty)"}</div>
          {replay.divergences.length > 0 && (
            <table>
              <thead>
                <tr>
                  <th>Step</th>
                  <th>Task</th>
                  <th>Recorded</th>
                  <th>Replayed</th>
                </tr>
              </thead>
              <tbody>
                {replay.divergences.map((d) => (
                  <tr key={d.step}>
                    <td>{d.step}</td>
                    <td>{d.taskId}</td>
                    <td>{d.recorded}</td>
                    <td>{d.replayed}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </div>
      )}
    </div>
  );
}

function nextOf(event: RunEvent): string[] {
  const next = (event.data as JsonObject | undefined)?.["next"];
  if (Array.isArray(next)) return next.filter((t): t is string => typeof t === "string");
  return event.message ? event.message.split(",") : [];
}

/** Events that say their task ran (or, for human input, is being asked). */
const RAN_EVENTS = new Set<RunEventType>([
  RunEventType.TASK_STARTED,
  RunEventType.TASK_PROGRESS,
  RunEventType.TASK_SUCCEEDED,
  RunEventType.TASK_FAILED,
  RunEventType.TASK_TIMED_OUT,
  RunEventType.INPUT_REQUESTED,
  RunEventType.INPUT_RECEIVED,
]);

function RunGraph({ chain, run, attempts, events }: { chain: Chain; run: Run; attempts: TaskAttempt[]; events: RunEvent[] }) {
  const { ran, taken, failed } = useMemo(() => {
    const ran = new Set(attempts.filter((a) => a.status !== AttemptStatus.READY || a.attempt > 1).map((a) => a.taskId));
    const taken = new Set<string>();
    for (const e of events) {
      if (e.type === RunEventType.TRANSITION) {
        for (const to of nextOf(e)) taken.add(`${e.taskId}→${to}`);
      }
      if (e.taskId && RAN_EVENTS.has(e.type)) ran.add(e.taskId);
    }
    const last = new Map<string, TaskAttempt>();
    for (const a of attempts) last.set(a.taskId, a);
    const failed = new Set(
      [...last.values()]
        .filter((a) => a.status === AttemptStatus.FAILED || a.status === AttemptStatus.TIMED_OUT)
        .map((a) => a.taskId),
    );
    return { ran, taken, failed };
  }, [attempts, events]);
  const active = new Set(run.activeTasks);
  return (
    <div class="graph-box">
      <ChainGraph chain={chain} ran={ran} taken={taken} active={active} failed={failed} />
    </div>
  );
}

const ROW = 18;

function Timeline({ run, attempts, events }: { run: Run; attempts: TaskAttempt[]; events: RunEvent[] }) {
  const now = Date.now();
  const t0 = millis(run.createTime) ?? now;
  const t1 = Math.max(millis(run.endTime) ?? now, ...attempts.map((a) => millis(a.endTime) ?? now), t0 + 1);
  const span = t1 - t0;
  const width = 640;
  const x = (ms: number | undefined) => ((Math.min(Math.max(ms ?? now, t0), t1) - t0) / span) * width;
  // Waits of the whole run: human input and pauses.
  const bands: { from: number; to: number; kind: string }[] = [];
  let open: { at: number; kind: string } | undefined;
  const throttled = new Map<string, RunEvent[]>();
  for (const e of events) {
    const at = millis(e.time) ?? now;
    if (e.type === RunEventType.INPUT_REQUESTED) open = { at, kind: "waiting_input" };
    if (e.type === RunEventType.RUN_PAUSED) open = { at, kind: "paused" };
    if ((e.type === RunEventType.INPUT_RECEIVED || e.type === RunEventType.RUN_RESUMED || isEnd(e)) && open) {
      bands.push({ from: open.at, to: at, kind: open.kind });
      open = undefined;
    }
    if (e.type === RunEventType.TASK_THROTTLED) throttled.set(e.attemptId, [...(throttled.get(e.attemptId) ?? []), e]);
  }
  if (open) bands.push({ from: open.at, to: now, kind: open.kind });
  if (attempts.length === 0) return <Empty>No attempts yet.</Empty>;
  return (
    <div class="timeline">
      <div class="legend">
        <span class="lg wait" /> waiting to be leased <span class="lg s-succeeded" /> succeeded <span class="lg s-failed" /> failed
        <span class="lg s-leased" /> running <span class="lg band-waiting_input" /> waiting for input <span class="lg band-paused" /> paused
        <span class="lg throttle" /> throttled · span {duration(span)}
      </div>
      <div class="timeline-scroll">
        <table class="attempts">
          <tbody>
            {attempts.map((a) => {
              const created = millis(a.createTime);
              const started = millis(a.startTime);
              const endAt = millis(a.endTime);
              const status = attemptStatusName(a.status);
              const marks = throttled.get(a.id) ?? [];
              return (
                <tr key={a.id} data-task={a.taskId} data-attempt={a.attempt} data-status={status}>
                  <td class="who">
                    {a.taskId}
                    {a.attempt > 1 && <span class="retry">retry #{a.attempt - 1}</span>}
                  </td>
                  <td class="bar-cell">
                    <svg width={width} height={ROW - 4}>
                      {bands.map((b, i) => (
                        <rect key={i} class={`band band-${b.kind}`} x={x(b.from)} width={Math.max(1, x(b.to) - x(b.from))} y={0} height={ROW - 4} />
                      ))}
                      <rect class="wait" x={x(created)} width={Math.max(1, x(started ?? endAt ?? now) - x(created))} y={4} height={ROW - 12} />
                      {started !== undefined && (
                        <rect class={`run s-${status}`} x={x(started)} width={Math.max(2, x(endAt ?? now) - x(started))} y={1} height={ROW - 6} />
                      )}
                      {marks.map((m) => (
                        <line key={m.seq.toString()} class="throttle" x1={x(millis(m.time))} x2={x(millis(m.time))} y1={0} y2={ROW - 4}>
                          <title>{`throttled: ${m.message}`}</title>
                        </line>
                      ))}
                    </svg>
                  </td>
                  <td class="status">
                    <span class={`badge s-${status}`}>{status.replace("_", " ")}</span>
                  </td>
                  <td class="muted">
                    {started !== undefined && created !== undefined ? `waited ${duration(started - created)}` : ""}
                    {started !== undefined ? ` · ran ${duration((endAt ?? now) - started)}` : ""}
                    {a.leaseOwner ? ` · ${a.leaseOwner}` : ""}
                    {a.leaseExpiries > 0 ? ` · ${a.leaseExpiries} lease expiries` : ""}
                    {a.error ? ` · ${shorten(a.error, 60)}` : ""}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </div>
  );
}

function isEnd(e: RunEvent): boolean {
  return (
    e.type === RunEventType.RUN_SUCCEEDED || e.type === RunEventType.RUN_FAILED || e.type === RunEventType.RUN_CANCELLED
  );
}

function Tasks({ chain, attempts, live }: { chain: Chain | undefined; attempts: TaskAttempt[]; live: Live }) {
  // The latest attempt of each task, in the chain's order.
  const latest = new Map<string, TaskAttempt>();
  const count = new Map<string, number>();
  for (const a of attempts) {
    latest.set(a.taskId, a);
    count.set(a.taskId, (count.get(a.taskId) ?? 0) + 1);
  }
  const order = chain ? chain.tasks.map((t) => t.id).filter((t) => latest.has(t)) : [...latest.keys()];
  if (order.length === 0) return <Empty>No task has run yet.</Empty>;
  const tasks = new Map(chain?.tasks.map((t) => [t.id, t]) ?? []);
  return (
    <div class="tasks">
      {order.map((taskId) => {
        const a = latest.get(taskId) as TaskAttempt;
        const task = tasks.get(taskId);
        const stream = live.streams.get(a.id);
        const status = attemptStatusName(a.status);
        const streaming = stream && a.status !== AttemptStatus.SUCCEEDED;
        return (
          <details key={taskId} class="task" data-task={taskId} open={order.length <= 6 || Boolean(streaming)}>
            <summary>
              <b>{taskId}</b> <span class="muted">{task?.handler}</span> <span class={`badge s-${status}`}>{status}</span>
              {(count.get(taskId) ?? 0) > 1 && <span class="muted"> · {count.get(taskId)} attempts</span>}
              {a.model && <span class="muted"> · {a.model}</span>}
              {a.usage && (a.usage.inputTokens > 0n || a.usage.outputTokens > 0n) && (
                <span class="muted"> · {tokens(a.usage.inputTokens, a.usage.outputTokens)} tokens</span>
              )}
            </summary>
            {task?.systemInstruction && <Pre label="system instruction" text={task.systemInstruction} />}
            {a.input && <Pre label={`input (${valueKind(a.input)})`} text={valueText(a.input)} />}
            {a.prompt ? (
              <Pre label="rendered prompt" text={a.prompt} />
            ) : (
              task?.promptTemplate && <Pre label="prompt template" text={task.promptTemplate} />
            )}
            {streaming && (
              <div class="pre live-stream">
                <div class="pre-label">
                  streaming <span class="dot" />
                </div>
                <pre class="stream" data-attempt={a.id}>
                  {stream.text}
                </pre>
              </div>
            )}
            {a.output && <Output value={a.output} />}
            {a.error && <Pre label="error" text={a.error} />}
          </details>
        );
      })}
    </div>
  );
}

function Output({ value }: { value: NonNullable<TaskAttempt["output"]> }) {
  if (value.kind.case === "chatHistory") {
    // The conversation holds the rendered prompt (the user message) and the answer.
    return (
      <div class="chat output">
        {value.kind.value.messages.map((m, i) => (
          <div key={i} class={`msg role-${m.role}`}>
            <span class="role">{m.role === "user" ? "prompt (user)" : m.role}</span>
            <pre>{m.content}</pre>
          </div>
        ))}
      </div>
    );
  }
  return (
    <div class="output">
      <Pre label={`output (${valueKind(value)})`} text={valueText(value)} />
    </div>
  );
}

const EVENT_ROW = 24;
const EVENT_VIEW = 420;

/** The event log, windowed: only the rows in view are in the DOM. */
function EventLog({ events }: { events: RunEvent[] }) {
  const [top, setTop] = useState(0);
  const [selected, setSelected] = useState<RunEvent | undefined>(undefined);
  if (events.length === 0) return <Empty>No events yet.</Empty>;
  const first = Math.max(0, Math.floor(top / EVENT_ROW) - 5);
  const last = Math.min(events.length, Math.ceil((top + EVENT_VIEW) / EVENT_ROW) + 5);
  const rows = events.slice(first, last);
  return (
    <div class="events-wrap">
      <div class="events" style={{ height: `${Math.min(EVENT_VIEW, events.length * EVENT_ROW + 2)}px` }} onScroll={(e) => setTop(e.currentTarget.scrollTop)}>
        <div style={{ height: `${events.length * EVENT_ROW}px`, position: "relative" }}>
          {rows.map((e, i) => (
            <div
              key={e.seq.toString()}
              class={`event ${selected?.seq === e.seq ? "selected" : ""}`}
              style={{ top: `${(first + i) * EVENT_ROW}px` }}
              data-seq={e.seq.toString()}
              onClick={() => setSelected(e)}
            >
              <span class="seq">{e.seq.toString()}</span>
              <span class="time">{time(e.time).slice(11)}</span>
              <span class={`etype t-${eventTypeName(e.type)}`}>{eventTypeName(e.type)}</span>
              <span class="etask">
                {e.taskId}
                {e.attempt > 1 ? `#${e.attempt}` : ""}
              </span>
              <span class="emsg">{shorten(e.message || valueText(e.output), 100)}</span>
            </div>
          ))}
        </div>
      </div>
      {selected && <EventDetail event={selected} />}
    </div>
  );
}

function EventDetail({ event }: { event: RunEvent }) {
  return (
    <div class="event-detail">
      <div>
        <b>#{event.seq.toString()}</b> {eventTypeName(event.type)} {event.taskId && `· ${event.taskId}`}{" "}
        {event.attempt > 0 && `· attempt ${event.attempt}`} · {time(event.time)}
      </div>
      {event.message && <Pre label="message" text={event.message} />}
      {event.output && <Output value={event.output} />}
      {event.usage && <div>tokens: {tokens(event.usage.inputTokens, event.usage.outputTokens)}</div>}
      {event.data && <Pre label="data" text={JSON.stringify(event.data, null, 2)} />}
    </div>
  );
}
