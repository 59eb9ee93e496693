import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { ChainSchema, ChainService } from "./gen/taskloom/v1/chain_pb.js";
import type { Chain, ValidateChainResponse } from "./gen/taskloom/v1/chain_pb.js";
/** A chain as a message or as the init object `create(ChainSchema, …)` takes. */
export type ChainInput = MessageInitShape<typeof ChainSchema>;
/**
 * Reads a chain definition from a `.json`, `.yaml` or `.yml` file holding
 * either the chain itself or `{ "chain": … }` (the shape of contenox's
 * request files). Field names may be camelCase or snake_case.
 */
export declare function loadChain(path: string): Promise<Chain>;
/** Options of calls that accept an idempotency key. */
export interface RequestIdOption {
    /** Idempotency key; a fresh UUID when omitted. */
    requestId?: string;
}
/** Options of calls guarded by optimistic concurrency. */
export interface EtagOption {
    /** Only apply the change if the chain's etag still matches (else ABORTED). */
    etag?: string;
}
export interface PageOptions {
    pageSize?: number;
    pageToken?: string;
}
/** ChainService helpers: `client.chains`. */
export declare class ChainsClient {
    private readonly service;
    constructor(service: Client<typeof ChainService>);
    /** Creates a chain at version 1 (ALREADY_EXISTS when the id is taken). */
    create(chain: ChainInput, options?: RequestIdOption): Promise<Chain>;
    /** The latest version of a chain, or `version`. */
    get(id: string, options?: {
        version?: number | bigint;
    }): Promise<Chain>;
    /** One page of the latest version of every chain, ordered by id. */
    list(options?: PageOptions): Promise<{
        chains: Chain[];
        nextPageToken: string;
    }>;
    /** One page of a chain's versions, newest first. */
    versions(id: string, options?: PageOptions): Promise<{
        chains: Chain[];
        nextPageToken: string;
    }>;
    /** Replaces a chain's definition (`chain.id` names it), creating the next version. */
    update(chain: ChainInput, options?: EtagOption & RequestIdOption): Promise<Chain>;
    /** Deletes a chain; versions pinned by runs stay readable by them. */
    delete(id: string, options?: EtagOption): Promise<void>;
    /** Checks a definition without storing it; every problem at once. */
    validate(chain: ChainInput): Promise<ValidateChainResponse>;
}
//# sourceMappingURL=chains.d.ts.map