// Chains: the stored chains, one chain's versions with a line diff between
// any two, and a draft checked with ValidateChain (nothing is stored).

import { fromJson, toJson } from "@bufbuild/protobuf";
import type { JsonValue } from "@bufbuild/protobuf";
import { diffLines } from "diff";
import { useState } from "preact/hooks";
import { chains } from "../api.js";
import { time } from "../format.js";
import { ChainSchema } from "../gen/taskloom/v1/chain_pb.js";
import type { Chain, ValidateChainResponse } from "../gen/taskloom/v1/chain_pb.js";
import { ChainGraph } from "../graph.js";
import { Empty, ErrorBox, href, usePoll } from "../ui.js";

/** A version's definition as JSON, without the output-only fields that differ between any two versions. */
export function definitionJson(chain: Chain): string {
  const json = toJson(ChainSchema, chain) as Record<string, JsonValue>;
  for (const field of ["version", "etag", "createTime", "updateTime"]) delete json[field];
  return JSON.stringify(json, null, 2);
}

export function ChainsPage({ id }: { id?: string }) {
  const [tokensStack, setTokensStack] = useState<string[]>([""]);
  const pageToken = tokensStack[tokensStack.length - 1];
  const list = usePoll(() => chains.listChains({ pageSize: 100, pageToken }), [pageToken]);
  return (
    <section class="chains-page">
      <h1>Chains</h1>
      <div class="split">
        <div class="card chain-list">
          <ErrorBox error={list.error} />
          {list.data && list.data.chains.length === 0 && <Empty>No chains.</Empty>}
          <ul>
            {list.data?.chains.map((c) => (
              <li key={c.id} class={c.id === id ? "active" : ""}>
                <a href={href("chains", c.id)}>{c.id}</a> <span class="muted">v{c.version.toString()}</span>
                {c.description && <div class="muted">{c.description}</div>}
              </li>
            ))}
          </ul>
          <div class="pager">
            <button type="button" disabled={tokensStack.length <= 1} onClick={() => setTokensStack((t) => t.slice(0, -1))}>
              ←
            </button>
            <button
              type="button"
              disabled={!list.data?.nextPageToken}
              onClick={() => list.data?.nextPageToken && setTokensStack((t) => [...t, list.data?.nextPageToken ?? ""])}
            >
              →
            </button>
          </div>
        </div>
        <div class="chain-main">
          {id ? <ChainVersions key={id} id={id} /> : <Empty>Pick a chain to see its versions.</Empty>}
          <Validate />
        </div>
      </div>
    </section>
  );
}

function ChainVersions({ id }: { id: string }) {
  const versions = usePoll(async () => {
    const out: Chain[] = [];
    let pageToken = "";
    do {
      const page = await chains.listChainVersions({ id, pageSize: 1000, pageToken });
      out.push(...page.chains);
      pageToken = page.nextPageToken;
    } while (pageToken && out.length < 5000);
    return out;
  }, [id]);
  const [left, setLeft] = useState<string>("");
  const [right, setRight] = useState<string>("");
  const list = versions.data ?? [];
  const newest = list[0];
  const a = list.find((c) => c.version.toString() === left) ?? list[1] ?? newest;
  const b = list.find((c) => c.version.toString() === right) ?? newest;
  return (
    <div class="card" data-chain={id}>
      <h2>
        {id} <span class="muted">{list.length} versions</span>
      </h2>
      <ErrorBox error={versions.error} />
      {newest && (
        <div class="graph-box">
          <ChainGraph chain={b ?? newest} ran={new Set()} taken={new Set()} active={new Set()} failed={new Set()} />
        </div>
      )}
      {list.length > 0 && (
        <>
          <table class="versions">
            <thead>
              <tr>
                <th>Version</th>
                <th>Created</th>
                <th>Tasks</th>
                <th>Diff from</th>
                <th>Diff to</th>
              </tr>
            </thead>
            <tbody>
              {list.map((c) => (
                <tr key={c.version.toString()}>
                  <td>v{c.version.toString()}</td>
                  <td>{time(c.updateTime)}</td>
                  <td>{c.tasks.length}</td>
                  <td>
                    <input
                      type="radio"
                      name="diff-from"
                      checked={a?.version === c.version}
                      onChange={() => setLeft(c.version.toString())}
                    />
                  </td>
                  <td>
                    <input
                      type="radio"
                      name="diff-to"
                      checked={b?.version === c.version}
                      onChange={() => setRight(c.version.toString())}
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {a && b && <Diff from={a} to={b} />}
        </>
      )}
    </div>
  );
}

function Diff({ from, to }: { from: Chain; to: Chain }) {
  const parts = diffLines(definitionJson(from), definitionJson(to));
  const changed = parts.some((p) => p.added || p.removed);
  return (
    <div class="diff" data-from={from.version.toString()} data-to={to.version.toString()}>
      <div class="muted">
        v{from.version.toString()} → v{to.version.toString()}
        {changed ? "" : ": identical definitions"}
      </div>
      <pre>
        {parts.map((p, i) => {
          const lines = p.value.replace(/\n$/, "").split("\n");
          const sign = p.added ? "+" : p.removed ? "-" : " ";
          if (!p.added && !p.removed && lines.length > 6) {
            // Unchanged stretches are folded to their ends.
            const shown = [...lines.slice(0, 2), `… ${lines.length - 4} unchanged lines`, ...lines.slice(-2)];
            return (
              <span key={i} class="same">
                {shown.map((l) => `  ${l}\n`).join("")}
              </span>
            );
          }
          return (
            <span key={i} class={p.added ? "add" : p.removed ? "del" : "same"}>
              {lines.map((l) => `${sign} ${l}\n`).join("")}
            </span>
          );
        })}
      </pre>
    </div>
  );
}

const DRAFT = `{
  "id": "draft",
  "tasks": [
    { "id": "hello", "handler": "noop", "transition": { "branches": [{ "operator": "default", "goto": "end" }] } }
  ]
}`;

function Validate() {
  const [text, setText] = useState(DRAFT);
  const [result, setResult] = useState<ValidateChainResponse | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [parseError, setParseError] = useState("");
  const check = async (e: Event) => {
    e.preventDefault();
    setResult(undefined);
    setError(undefined);
    let chain: Chain;
    try {
      chain = fromJson(ChainSchema, JSON.parse(text) as JsonValue);
      setParseError("");
    } catch (err) {
      setParseError(String(err));
      return;
    }
    try {
      setResult(await chains.validateChain({ chain }));
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form class="card validate" onSubmit={check}>
      <h2>Validate a draft</h2>
      <p class="muted">A chain as JSON (snake_case or camelCase); it is checked, not stored.</p>
      <textarea name="draft" rows={10} spellcheck={false} value={text} onInput={(e) => setText(e.currentTarget.value)} />
      <div class="row">
        <button type="submit" name="validate">
          Validate
        </button>
      </div>
      {parseError && <div class="error">{parseError}</div>}
      <ErrorBox error={error} />
      {result && result.valid && <div class="ok" data-valid="true">Valid.</div>}
      {result && !result.valid && (
        <ul class="violations" data-valid="false">
          {result.violations.map((v, i) => (
            <li key={i}>
              <code>{v.field}</code> {v.description} <span class="muted">{v.reason}</span>
            </li>
          ))}
        </ul>
      )}
    </form>
  );
}
