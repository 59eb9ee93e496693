// Timing helpers shared by the reconnecting watch and the worker.

/** Capped exponential backoff with full jitter ("0.1 s doubling to 10 s"). */
export interface BackoffOptions {
  /** First delay bound, in milliseconds. */
  initialMs: number;
  /** Cap on the delay bound, in milliseconds. */
  maxMs: number;
}

export class Backoff {
  private failures = 0;

  constructor(private readonly options: BackoffOptions) {
    if (!(options.initialMs > 0) || !(options.maxMs >= options.initialMs)) {
      throw new RangeError(
        `backoff: need 0 < initialMs <= maxMs, got initialMs=${options.initialMs} maxMs=${options.maxMs}`,
      );
    }
  }

  /** The next delay: uniform in [0, min(max, initial * 2^failures)). */
  next(): number {
    const bound = Math.min(this.options.maxMs, this.options.initialMs * 2 ** this.failures);
    this.failures = Math.min(this.failures + 1, 30);
    return Math.random() * bound;
  }

  reset(): void {
    this.failures = 0;
  }
}

/** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}
