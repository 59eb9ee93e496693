// Runs: one server page at a time (ListRuns page_size/page_token), filtered
// on the server by status, chain, labels and creation time, the visible
// page polled every 2 s for live status. Nothing here grows with the store.

import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useEffect, useState } from "preact/hooks";
import { runs } from "../api.js";
import { ago, duration, millis, RUN_STATUSES, runStatusName, time, tokens } from "../format.js";
import { RunStatus } from "../gen/taskloom/v1/run_pb.js";
import type { Run } from "../gen/taskloom/v1/run_pb.js";
import { Empty, ErrorBox, href, Status, usePoll } from "../ui.js";

const PAGE_SIZE = 50;

export interface RunFilter {
  statuses: RunStatus[];
  chainId: string;
  labels: string;
  after: string;
  before: string;
}

/** `a=1, b=2` → {a: "1", b: "2"}; malformed parts are reported. */
export function parseLabels(text: string): { labels: Record<string, string>; error?: string } {
  const labels: Record<string, string> = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf("=");
    if (eq <= 0) return { labels, error: `label filter "${part}" is not key=value` };
    labels[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return { labels };
}

function localTime(text: string) {
  if (!text) return undefined;
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? undefined : timestampFromDate(d);
}

export function RunTable({ list, now }: { list: Run[]; now: number }) {
  return (
    <table class="runs">
      <thead>
        <tr>
          <th>Run</th>
          <th>Chain</th>
          <th>Status</th>
          <th>Created</th>
          <th>Took</th>
          <th>Steps</th>
          <th>Tokens</th>
          <th>Labels</th>
        </tr>
      </thead>
      <tbody>
        {list.map((run) => {
          const start = millis(run.createTime);
          const end = millis(run.endTime) ?? now;
          return (
            <tr key={run.id} data-run={run.id} data-status={runStatusName(run.status)}>
              <td class="mono">
                <a href={href("runs", run.id)}>{run.id}</a>
              </td>
              <td>
                <a href={href("chains", run.chainId)}>{run.chainId}</a>
                <span class="muted"> v{run.chainVersion.toString()}</span>
              </td>
              <td>
                <Status status={run.status} />
                {run.activeTasks.length > 0 && <span class="muted"> {run.activeTasks.join(", ")}</span>}
              </td>
              <td title={time(run.createTime)}>{ago(run.createTime, now)}</td>
              <td>{start !== undefined ? duration(end - start) : ""}</td>
              <td>{run.steps}</td>
              <td>{tokens(run.usage?.inputTokens, run.usage?.outputTokens)}</td>
              <td class="labels">
                {Object.entries(run.labels).map(([k, v]) => (
                  <span key={k} class="label">
                    {k}={v}
                  </span>
                ))}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

const EMPTY: RunFilter = { statuses: [], chainId: "", labels: "", after: "", before: "" };

/** The filter kept in the address (`#/runs?status=failed&chain=x`), so a filtered list can be shared. */
function filterFromHash(): RunFilter {
  const query = new URLSearchParams(location.hash.split("?")[1] ?? "");
  const byName = new Map(RUN_STATUSES.map((s) => [runStatusName(s), s]));
  return {
    statuses: (query.get("status") ?? "")
      .split(",")
      .map((name) => byName.get(name))
      .filter((s): s is RunStatus => s !== undefined),
    chainId: query.get("chain") ?? "",
    labels: query.get("labels") ?? "",
    after: query.get("after") ?? "",
    before: query.get("before") ?? "",
  };
}

function filterToHash(filter: RunFilter): void {
  const query = new URLSearchParams();
  if (filter.statuses.length) query.set("status", filter.statuses.map(runStatusName).join(","));
  if (filter.chainId) query.set("chain", filter.chainId);
  if (filter.labels) query.set("labels", filter.labels);
  if (filter.after) query.set("after", filter.after);
  if (filter.before) query.set("before", filter.before);
  const text = query.toString();
  // replaceState: no hashchange, no new history entry per click.
  history.replaceState(null, "", `#/runs${text ? `?${text}` : ""}`);
}

export function RunsPage() {
  const [filter, setFilter] = useState<RunFilter>(filterFromHash);
  const [draft, setDraft] = useState(filter);
  // Tokens of the pages before the current one ("" = the first page).
  const [tokensStack, setTokensStack] = useState<string[]>([""]);
  const pageToken = tokensStack[tokensStack.length - 1];
  const parsed = parseLabels(filter.labels);
  const { data, error, loading } = usePoll(
    () =>
      runs.listRuns({
        pageSize: PAGE_SIZE,
        pageToken,
        statuses: filter.statuses,
        chainId: filter.chainId.trim(),
        labels: parsed.labels,
        createTimeAfter: localTime(filter.after),
        createTimeBefore: localTime(filter.before),
      }),
    [filter, pageToken],
    2000,
  );
  const apply = (next: RunFilter) => {
    filterToHash(next);
    setFilter(next);
    setDraft(next);
    setTokensStack([""]);
  };
  // A link to a filtered list (or the plain Runs tab) while this page is open.
  useEffect(() => {
    const follow = () => {
      if (!location.hash.startsWith("#/runs") || location.hash.startsWith("#/runs/")) return;
      const next = filterFromHash();
      setFilter(next);
      setDraft(next);
      setTokensStack([""]);
    };
    window.addEventListener("hashchange", follow);
    return () => window.removeEventListener("hashchange", follow);
  }, []);
  const toggle = (s: RunStatus) => {
    const statuses = filter.statuses.includes(s)
      ? filter.statuses.filter((x) => x !== s)
      : [...filter.statuses, s];
    apply({ ...draft, statuses });
  };
  const now = Date.now();
  return (
    <section>
      <h1>Runs</h1>
      <div class="filters">
        <div class="chips" role="group" aria-label="status filter">
          {RUN_STATUSES.map((s) => (
            <label key={s} class={`chip ${filter.statuses.includes(s) ? "on" : ""}`}>
              <input
                type="checkbox"
                name={`status-${runStatusName(s)}`}
                checked={filter.statuses.includes(s)}
                onChange={() => toggle(s)}
              />
              {runStatusName(s).replace("_", " ")}
            </label>
          ))}
        </div>
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            apply({ ...draft, statuses: filter.statuses });
          }}
        >
          <input
            name="chain"
            placeholder="chain id"
            value={draft.chainId}
            onInput={(e) => setDraft({ ...draft, chainId: e.currentTarget.value })}
          />
          <input
            name="labels"
            placeholder="label k=v, k2=v2"
            value={draft.labels}
            onInput={(e) => setDraft({ ...draft, labels: e.currentTarget.value })}
          />
          <label class="inline">
            after
            <input
              type="datetime-local"
              name="after"
              value={draft.after}
              onInput={(e) => setDraft({ ...draft, after: e.currentTarget.value })}
            />
          </label>
          <label class="inline">
            before
            <input
              type="datetime-local"
              name="before"
              value={draft.before}
              onInput={(e) => setDraft({ ...draft, before: e.currentTarget.value })}
            />
          </label>
          <button type="submit">Filter</button>
          <button
            type="button"
            class="secondary"
            onClick={() => apply(EMPTY)}
          >
            Clear
          </button>
        </form>
      </div>
      {parsed.error && <div class="error">{parsed.error}</div>}
      <ErrorBox error={error} />
      {data && data.runs.length === 0 && <Empty>No runs match.</Empty>}
      {data && data.runs.length > 0 && <RunTable list={data.runs} now={now} />}
      <div class="pager" data-loading={loading ? "true" : "false"}>
        <button type="button" disabled={tokensStack.length <= 1} onClick={() => setTokensStack((t) => t.slice(0, -1))}>
          ← Newer
        </button>
        <span>
          page {tokensStack.length}
          {data ? ` · ${data.runs.length} runs` : ""}
        </span>
        <button
          type="button"
          name="next-page"
          disabled={!data?.nextPageToken}
          onClick={() => data?.nextPageToken && setTokensStack((t) => [...t, data.nextPageToken])}
        >
          Older →
        </button>
      </div>
    </section>
  );
}
