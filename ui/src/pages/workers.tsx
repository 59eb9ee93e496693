// Workers and queues: connected worker sessions (slots, leases held),
// queue depths, and attempts that failed for good (dead letters).

import { useState } from "preact/hooks";
import { operations, workers } from "../api.js";
import { ago, attemptStatusName, duration, millis, shorten, time } from "../format.js";
import { Empty, ErrorBox, href, usePoll } from "../ui.js";

export function WorkersPage() {
  const now = Date.now();
  const sessions = usePoll(() => workers.listWorkers({ pageSize: 200 }), [], 3000);
  const queues = usePoll(() => operations.listQueues({}), [], 3000);
  const [dlqTokens, setDlqTokens] = useState<string[]>([""]);
  const dlqToken = dlqTokens[dlqTokens.length - 1];
  const dead = usePoll(() => workers.listDeadLetters({ pageSize: 50, pageToken: dlqToken }), [dlqToken], 5000);
  return (
    <section>
      <h1>Workers &amp; queues</h1>
      <div class="card">
        <h2>Worker sessions</h2>
        <ErrorBox error={sessions.error} />
        {sessions.data && sessions.data.workers.length === 0 && <Empty>No worker is connected.</Empty>}
        {sessions.data && sessions.data.workers.length > 0 && (
          <table class="workers">
            <thead>
              <tr>
                <th>Worker</th>
                <th>Queues</th>
                <th>Slots</th>
                <th>Leases</th>
                <th>Replica</th>
                <th>Connected</th>
                <th>Heartbeat</th>
                <th>SDK</th>
              </tr>
            </thead>
            <tbody>
              {sessions.data.workers.map((w) => (
                <tr key={w.sessionId} data-worker={w.workerId}>
                  <td>
                    <b>{w.name || w.workerId}</b>
                    <div class="muted mono">{w.sessionId}</div>
                  </td>
                  <td>{w.queues.join(", ")}</td>
                  <td>{w.slots}</td>
                  <td>
                    <span class="meter">
                      <span style={{ width: `${w.slots ? Math.min(100, (w.leasesHeld / w.slots) * 100) : 0}%` }} />
                    </span>{" "}
                    {w.leasesHeld}/{w.slots}
                  </td>
                  <td class="mono">{w.replica}</td>
                  <td title={time(w.connectTime)}>{ago(w.connectTime, now)}</td>
                  <td>{ago(w.lastHeartbeatTime, now)}</td>
                  <td>{w.sdkVersion}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      <div class="card">
        <h2>Queues</h2>
        <ErrorBox error={queues.error} />
        {queues.data && queues.data.queues.length === 0 && <Empty>No queue has work.</Empty>}
        {queues.data && queues.data.queues.length > 0 && (
          <table class="queues">
            <thead>
              <tr>
                <th>Queue</th>
                <th>Ready</th>
                <th>Oldest ready</th>
                <th>Leased</th>
                <th>Scheduled</th>
                <th>Cap</th>
                <th>State</th>
              </tr>
            </thead>
            <tbody>
              {queues.data.queues.map((q) => (
                <tr key={q.name} data-queue={q.name}>
                  <td>
                    <b>{q.name}</b>
                  </td>
                  <td>{q.ready.toString()}</td>
                  <td>
                    {q.oldestReadyAge
                      ? duration(Number(q.oldestReadyAge.seconds) * 1000 + q.oldestReadyAge.nanos / 1e6)
                      : ""}
                  </td>
                  <td>{q.leased.toString()}</td>
                  <td>{q.scheduled.toString()}</td>
                  <td>{q.concurrencyCap || ""}</td>
                  <td>
                    {q.paused ? (
                      <span class="badge s-paused" title={`by ${q.pausedBy} at ${time(q.pauseTime)}`}>
                        paused
                      </span>
                    ) : (
                      <span class="badge s-running">active</span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
      <div class="card">
        <h2>Dead letters</h2>
        <ErrorBox error={dead.error} />
        {dead.data && dead.data.attempts.length === 0 && <Empty>No dead letters.</Empty>}
        {dead.data && dead.data.attempts.length > 0 && (
          <table class="dead">
            <thead>
              <tr>
                <th>Run</th>
                <th>Task</th>
                <th>Attempt</th>
                <th>Queue</th>
                <th>Status</th>
                <th>Ended</th>
                <th>Error</th>
              </tr>
            </thead>
            <tbody>
              {dead.data.attempts.map((a) => (
                <tr key={a.id}>
                  <td class="mono">
                    <a href={href("runs", a.runId)}>{a.runId}</a>
                  </td>
                  <td>{a.taskId}</td>
                  <td>{a.attempt}</td>
                  <td>{a.queue}</td>
                  <td>{attemptStatusName(a.status)}</td>
                  <td title={time(a.endTime)}>{millis(a.endTime) ? ago(a.endTime, now) : ""}</td>
                  <td title={a.error}>{shorten(a.error, 80)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <div class="pager">
          <button type="button" disabled={dlqTokens.length <= 1} onClick={() => setDlqTokens((t) => t.slice(0, -1))}>
            ← Newer
          </button>
          <button
            type="button"
            disabled={!dead.data?.nextPageToken}
            onClick={() => dead.data?.nextPageToken && setDlqTokens((t) => [...t, dead.data?.nextPageToken ?? ""])}
          >
            Older →
          </button>
        </div>
      </div>
    </section>
  );
}
