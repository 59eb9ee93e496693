// Approvals: every run waiting for human input (ListRuns filtered on
// WAITING_INPUT, paged on the server), each answerable inline.

import { useState } from "preact/hooks";
import { runs } from "../api.js";
import { AnswerForm } from "../answer.js";
import { ago, time } from "../format.js";
import { RunStatus } from "../gen/taskloom/v1/run_pb.js";
import { Empty, ErrorBox, href, usePoll } from "../ui.js";

export function ApprovalsPage() {
  const [tokensStack, setTokensStack] = useState<string[]>([""]);
  const pageToken = tokensStack[tokensStack.length - 1];
  const { data, error, reload } = usePoll(
    // Each listed run carries what it waits for (its input request).
    () => runs.listRuns({ pageSize: 25, pageToken, statuses: [RunStatus.WAITING_INPUT] }),
    [pageToken],
    3000,
  );
  const now = Date.now();
  return (
    <section>
      <h1>Approvals</h1>
      <p class="muted">Runs waiting for a human answer, newest first.</p>
      <ErrorBox error={error} />
      {data && data.runs.length === 0 && <Empty>Nothing is waiting for input.</Empty>}
      <div class="approvals">
        {data?.runs.map((run) => (
          <div key={run.id} class="card approval" data-run={run.id}>
            <div>
              <a class="mono" href={href("runs", run.id)}>
                {run.id}
              </a>{" "}
              · <a href={href("chains", run.chainId)}>{run.chainId}</a> · task <b>{run.inputRequest?.taskId}</b> ·{" "}
              <span title={time(run.updateTime)}>asked {ago(run.updateTime, now)}</span>
            </div>
            <AnswerForm run={run} onAnswered={reload} />
          </div>
        ))}
      </div>
      <div class="pager">
        <button type="button" disabled={tokensStack.length <= 1} onClick={() => setTokensStack((t) => t.slice(0, -1))}>
          ← Newer
        </button>
        <span>page {tokensStack.length}</span>
        <button
          type="button"
          disabled={!data?.nextPageToken}
          onClick={() => data?.nextPageToken && setTokensStack((t) => [...t, data.nextPageToken])}
        >
          Older →
        </button>
      </div>
    </section>
  );
}
