// Turning API values into text: enum names, typed values, times, durations.

import { timestampDate, ValueSchema as JsonValueSchema } from "@bufbuild/protobuf/wkt";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { toJson } from "@bufbuild/protobuf";
import type { Value } from "./gen/taskloom/v1/common_pb.js";
import { RunStatus, AttemptStatus, RunEventType } from "./gen/taskloom/v1/run_pb.js";

/** `RUN_STATUS_WAITING_INPUT` → `waiting_input`. */
function enumName(table: Record<number, string>, value: number, prefix: string): string {
  const name = table[value];
  if (!name) return String(value);
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .toLowerCase()
    .replace(prefix, "");
}

export const runStatusName = (s: RunStatus): string => enumName(RunStatus, s, "");
export const attemptStatusName = (s: AttemptStatus): string => enumName(AttemptStatus, s, "");
export const eventTypeName = (t: RunEventType): string => enumName(RunEventType, t, "");

/** The run statuses a user can filter on, in lifecycle order. */
export const RUN_STATUSES: RunStatus[] = [
  RunStatus.QUEUED,
  RunStatus.RUNNING,
  RunStatus.WAITING_INPUT,
  RunStatus.PAUSED,
  RunStatus.SUCCEEDED,
  RunStatus.FAILED,
  RunStatus.CANCELLED,
];

export function isTerminal(s: RunStatus): boolean {
  return s === RunStatus.SUCCEEDED || s === RunStatus.FAILED || s === RunStatus.CANCELLED;
}

export function time(ts: Timestamp | undefined): string {
  if (!ts) return "";
  const d = timestampDate(ts);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(
    d.getMinutes(),
  )}:${pad(d.getSeconds())}`;
}

export function millis(ts: Timestamp | undefined): number | undefined {
  return ts ? timestampDate(ts).getTime() : undefined;
}

/** 1234 → `1.2s`, 61000 → `1m1s`. */
export function duration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const m = Math.floor(ms / 60_000);
  if (m < 60) return `${m}m${Math.round((ms % 60_000) / 1000)}s`;
  return `${Math.floor(m / 60)}h${m % 60}m`;
}

export function ago(ts: Timestamp | undefined, now = Date.now()): string {
  const at = millis(ts);
  return at === undefined ? "" : `${duration(now - at)} ago`;
}

/** A typed value as text: strings as they are, the rest as JSON. */
export function valueText(v: Value | undefined): string {
  if (!v) return "";
  switch (v.kind.case) {
    case "text":
      return v.kind.value;
    case "number":
    case "boolean":
      return String(v.kind.value);
    case "integer":
      return v.kind.value.toString();
    case "json":
      return JSON.stringify(toJson(JsonValueSchema, v.kind.value), null, 2);
    case "chatHistory":
      return v.kind.value.messages.map((m) => `[${m.role}] ${m.content}`).join("\n");
    case "vector": {
      const values = v.kind.value.values;
      const head = values.slice(0, 8).map((x) => x.toFixed(4));
      return `vector(${values.length}) [${head.join(", ")}${values.length > 8 ? ", …" : ""}]`;
    }
    default:
      return "";
  }
}

/** The kind of a typed value, for labels. */
export function valueKind(v: Value | undefined): string {
  return v?.kind.case ?? "";
}

export function shorten(text: string, max = 80): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

export function tokens(input: bigint | undefined, output: bigint | undefined): string {
  if (!input && !output) return "";
  return `${(input ?? 0n).toString()} in / ${(output ?? 0n).toString()} out`;
}
