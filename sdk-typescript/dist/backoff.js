// Timing helpers shared by the reconnecting watch and the worker.
export class Backoff {
    options;
    failures = 0;
    constructor(options) {
        this.options = options;
        if (!(options.initialMs > 0) || !(options.maxMs >= options.initialMs)) {
            throw new RangeError(`backoff: need 0 < initialMs <= maxMs, got initialMs=${options.initialMs} maxMs=${options.maxMs}`);
        }
    }
    /** The next delay: uniform in [0, min(max, initial * 2^failures)). */
    next() {
        const bound = Math.min(this.options.maxMs, this.options.initialMs * 2 ** this.failures);
        this.failures = Math.min(this.failures + 1, 30);
        return Math.random() * bound;
    }
    reset() {
        this.failures = 0;
    }
}
/** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
export function sleep(ms, signal) {
    return new Promise((resolve) => {
        if (signal?.aborted) {
            resolve();
            return;
        }
        const timer = setTimeout(done, ms);
        signal?.addEventListener("abort", done, { once: true });
        function done() {
            clearTimeout(timer);
            signal?.removeEventListener("abort", done);
            resolve();
        }
    });
}
//# sourceMappingURL=backoff.js.map