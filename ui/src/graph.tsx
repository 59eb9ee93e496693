// A chain as an SVG graph laid out by hand: tasks in columns by their
// distance from the entry, transitions as curves (dashed for on_failure),
// what the run did drawn solid and coloured. Chains are small state
// machines, so a layered layout is enough and needs no layout library.

import type { Chain } from "./gen/taskloom/v1/chain_pb.js";
import type { JsonValue } from "@bufbuild/protobuf";
import { toJson } from "@bufbuild/protobuf";
import { ValueSchema as JsonValueSchema } from "@bufbuild/protobuf/wkt";

export interface Edge {
  from: string;
  to: string;
  failure: boolean;
  label: string;
}

const END = "end";

function targets(goto: JsonValue): string[] {
  if (typeof goto === "string") return [goto];
  if (Array.isArray(goto)) return goto.filter((t): t is string => typeof t === "string");
  return [];
}

export function chainEdges(chain: Chain): Edge[] {
  const edges: Edge[] = [];
  for (const task of chain.tasks) {
    const branches = task.transition?.branches ?? [];
    for (const branch of branches) {
      const goto = branch.goto ? toJson(JsonValueSchema, branch.goto) : null;
      const label = branch.operator === "default" || !branch.operator ? "" : `${branch.operator} ${branch.when}`;
      for (const to of targets(goto)) edges.push({ from: task.id, to, failure: false, label });
    }
    if (branches.length === 0) {
      // No transition: the run ends after the task.
      edges.push({ from: task.id, to: END, failure: false, label: "" });
    }
    if (task.transition?.onFailure) {
      edges.push({ from: task.id, to: task.transition.onFailure, failure: true, label: "on failure" });
    }
  }
  return edges;
}

interface Placed {
  id: string;
  x: number;
  y: number;
  handler: string;
}

const W = 150;
const H = 34;
const GAP_X = 60;
const GAP_Y = 18;

export function layout(chain: Chain, edges: Edge[]): { nodes: Placed[]; width: number; height: number } {
  const entry = chain.entry || chain.tasks[0]?.id || "";
  const depth = new Map<string, number>();
  depth.set(entry, 0);
  const queue = [entry];
  const out = new Map<string, string[]>();
  for (const e of edges) out.set(e.from, [...(out.get(e.from) ?? []), e.to]);
  while (queue.length) {
    const id = queue.shift() as string;
    for (const to of out.get(id) ?? []) {
      if (to === END || depth.has(to)) continue;
      depth.set(to, (depth.get(id) ?? 0) + 1);
      queue.push(to);
    }
  }
  // Tasks not reachable from the entry (joins fed only by fan-outs are
  // reachable; these are dead or only reached through on_failure chains).
  let maxDepth = Math.max(0, ...depth.values());
  for (const task of chain.tasks) {
    if (!depth.has(task.id)) depth.set(task.id, maxDepth + 1);
  }
  maxDepth = Math.max(0, ...depth.values());
  const usesEnd = edges.some((e) => e.to === END);
  const columns: string[][] = [];
  for (const task of chain.tasks) {
    const d = depth.get(task.id) ?? 0;
    (columns[d] ??= []).push(task.id);
  }
  if (usesEnd) columns[maxDepth + 1] = [END];
  const tallest = Math.max(1, ...columns.map((c) => c?.length ?? 0));
  const height = tallest * (H + GAP_Y) + GAP_Y;
  const handlers = new Map(chain.tasks.map((t) => [t.id, t.handler]));
  const nodes: Placed[] = [];
  columns.forEach((column, d) => {
    if (!column) return;
    const top = (height - column.length * (H + GAP_Y) + GAP_Y) / 2;
    column.forEach((id, i) => {
      nodes.push({ id, x: 10 + d * (W + GAP_X), y: top + i * (H + GAP_Y), handler: handlers.get(id) ?? "" });
    });
  });
  const width = 20 + columns.length * (W + GAP_X) - GAP_X;
  return { nodes, width, height };
}

export function ChainGraph({
  chain,
  ran,
  taken,
  active,
  failed,
}: {
  chain: Chain;
  /** Tasks that ran at least once. */
  ran: Set<string>;
  /** `from→to` transitions the run took. */
  taken: Set<string>;
  /** Tasks ready or executing now. */
  active: Set<string>;
  /** Tasks whose last attempt failed. */
  failed: Set<string>;
}) {
  const edges = chainEdges(chain);
  const { nodes, width, height } = layout(chain, edges);
  const at = new Map(nodes.map((n) => [n.id, n]));
  return (
    <svg class="graph" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label="chain graph">
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
          <path d="M0,0 L10,5 L0,10 z" class="arrow" />
        </marker>
        <marker id="arrow-taken" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
          <path d="M0,0 L10,5 L0,10 z" class="arrow taken" />
        </marker>
      </defs>
      {edges.map((e, i) => {
        const a = at.get(e.from);
        const b = at.get(e.to);
        if (!a || !b) return null;
        const isTaken = taken.has(`${e.from}→${e.to}`);
        let d: string;
        if (b.x > a.x) {
          const x1 = a.x + W;
          const y1 = a.y + H / 2;
          const x2 = b.x;
          const y2 = b.y + H / 2;
          d = `M${x1},${y1} C${x1 + GAP_X / 2},${y1} ${x2 - GAP_X / 2},${y2} ${x2},${y2}`;
        } else {
          // Loops and edges back: an arc over the top.
          const x1 = a.x + W / 2 + 10;
          const x2 = b.x + W / 2 - 10;
          const lift = 26 + Math.abs(a.x - b.x) / 8;
          d = `M${x1},${a.y} C${x1},${a.y - lift} ${x2},${b.y - lift} ${x2},${b.y}`;
        }
        const cls = `edge${isTaken ? " taken" : ""}${e.failure ? " failure" : ""}`;
        return (
          <g key={i}>
            <path d={d} class={cls} marker-end={`url(#${isTaken ? "arrow-taken" : "arrow"})`}>
              <title>{`${e.from} → ${e.to}${e.label ? ` (${e.label})` : ""}`}</title>
            </path>
          </g>
        );
      })}
      {nodes.map((n) => {
        if (n.id === END) {
          const reached = [...taken].some((t) => t.endsWith(`→${END}`));
          return (
            <g key={n.id} class={`node end${reached ? " ran" : ""}`} data-task={END}>
              <circle cx={n.x + 20} cy={n.y + H / 2} r={14} />
              <text x={n.x + 20} y={n.y + H / 2 + 4} text-anchor="middle">
                end
              </text>
            </g>
          );
        }
        const cls = [
          "node",
          ran.has(n.id) ? "ran" : "",
          active.has(n.id) ? "active" : "",
          failed.has(n.id) ? "failed" : "",
        ].join(" ");
        return (
          <g key={n.id} class={cls} data-task={n.id} data-ran={ran.has(n.id) ? "true" : "false"}>
            <rect x={n.x} y={n.y} width={W} height={H} rx={6} />
            <text x={n.x + 8} y={n.y + 14} class="task-id">
              {n.id.length > 20 ? `${n.id.slice(0, 19)}…` : n.id}
            </text>
            <text x={n.x + 8} y={n.y + 27} class="handler">
              {n.handler}
            </text>
            <title>{`${n.id} (${n.handler})`}</title>
          </g>
        );
      })}
    </svg>
  );
}
