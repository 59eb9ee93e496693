/** Capped exponential backoff with full jitter ("0.1 s doubling to 10 s"). */
export interface BackoffOptions {
    /** First delay bound, in milliseconds. */
    initialMs: number;
    /** Cap on the delay bound, in milliseconds. */
    maxMs: number;
}
export declare class Backoff {
    private readonly options;
    private failures;
    constructor(options: BackoffOptions);
    /** The next delay: uniform in [0, min(max, initial * 2^failures)). */
    next(): number;
    reset(): void;
}
/** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
export declare function sleep(ms: number, signal?: AbortSignal): Promise<void>;
//# sourceMappingURL=backoff.d.ts.map