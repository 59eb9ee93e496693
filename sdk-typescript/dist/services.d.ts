import type { DescService } from "@bufbuild/protobuf";
import type { Client, Transport } from "@connectrpc/connect";
/** How often and how patiently idempotent calls are retried on UNAVAILABLE. */
export interface RetryOptions {
    /** Retries after the first try (default 4). */
    maxRetries: number;
    /** Delay before the first retry, doubled each time (default 100 ms). */
    initialDelayMs: number;
    /** Cap on the delay (default 2 s). */
    maxDelayMs: number;
}
export declare const defaultRetryOptions: RetryOptions;
/** A Connect client of `service` with typed errors and idempotent retries. */
export declare function createServiceClient<S extends DescService>(service: S, transport: Transport, retry?: RetryOptions): Client<S>;
//# sourceMappingURL=services.d.ts.map