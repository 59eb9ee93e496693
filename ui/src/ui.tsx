// Small shared pieces: the error box, status badges, polling and routing.

import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { describeError } from "./api.js";
import type { ShownError } from "./api.js";
import { runStatusName } from "./format.js";
import type { RunStatus } from "./gen/taskloom/v1/run_pb.js";

type KeyListener = () => void;
const keyListeners = new Set<KeyListener>();

/** Asks the shell to open the API key box (after an UNAUTHENTICATED error). */
export function askForKey(): void {
  for (const listener of keyListeners) listener();
}

export function onAskForKey(listener: KeyListener): () => void {
  keyListeners.add(listener);
  return () => keyListeners.delete(listener);
}

export function ErrorBox({ error }: { error: unknown }) {
  const shown: ShownError | undefined = error ? describeError(error) : undefined;
  useEffect(() => {
    if (shown?.unauthenticated) askForKey();
  }, [shown?.unauthenticated]);
  if (!shown) return null;
  return (
    <div class="error" role="alert" data-code={shown.code}>
      <b>{shown.code}</b> {shown.message}
      {shown.unauthenticated && (
        <button type="button" class="link" onClick={askForKey}>
          enter an API key
        </button>
      )}
    </div>
  );
}

export function Status({ status }: { status: RunStatus }) {
  const name = runStatusName(status);
  return <span class={`badge s-${name}`}>{name.replace("_", " ")}</span>;
}

export function Badge({ kind, children }: { kind: string; children: ComponentChildren }) {
  return <span class={`badge s-${kind}`}>{children}</span>;
}

/** The current hash route, split: `#/runs/abc` → ["runs", "abc"]. */
export function useRoute(): string[] {
  const read = () =>
    location.hash
      .replace(/^#\/?/, "")
      .split("?")[0]
      .split("/")
      .filter(Boolean)
      .map(decodeURIComponent);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const update = () => setRoute(read());
    window.addEventListener("hashchange", update);
    return () => window.removeEventListener("hashchange", update);
  }, []);
  return route;
}

export function href(...parts: string[]): string {
  return `#/${parts.map(encodeURIComponent).join("/")}`;
}

/**
 * Runs `load` now, whenever `deps` change, and every `everyMs` while the tab
 * is visible; the newest answer wins (an older one arriving late is dropped).
 */
export function usePoll<T>(
  load: () => Promise<T>,
  deps: unknown[],
  everyMs = 0,
): { data: T | undefined; error: unknown; loading: boolean; reload: () => void } {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [loading, setLoading] = useState(true);
  const generation = useRef(0);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const mine = ++generation.current;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    const run = (first: boolean) => {
      if (first) setLoading(true);
      load().then(
        (value) => {
          if (stopped || mine !== generation.current) return;
          setData(value);
          setError(undefined);
          setLoading(false);
          schedule();
        },
        (e: unknown) => {
          if (stopped || mine !== generation.current) return;
          setError(e);
          setLoading(false);
          schedule();
        },
      );
    };
    const schedule = () => {
      if (everyMs > 0 && !stopped) {
        timer = setTimeout(() => {
          if (document.visibilityState === "hidden") schedule();
          else run(false);
        }, everyMs);
      }
    };
    run(true);
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
  }, [...deps, tick]);
  return { data, error, loading, reload: () => setTick((t) => t + 1) };
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

/** Text that may be long: shown in a scrollable pre. */
export function Pre({ text, label }: { text: string; label?: string }) {
  if (!text) return null;
  return (
    <div class="pre">
      {label && <div class="pre-label">{label}</div>}
      <pre>{text}</pre>
    </div>
  );
}
