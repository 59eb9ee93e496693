// Chains: loading definitions from files and the ChainService helpers.
import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { create, fromJson } from "@bufbuild/protobuf";
import { parse as parseYaml } from "yaml";
import { ChainSchema } from "./gen/taskloom/v1/chain_pb.js";
/**
 * Reads a chain definition from a `.json`, `.yaml` or `.yml` file holding
 * either the chain itself or `{ "chain": … }` (the shape of contenox's
 * request files). Field names may be camelCase or snake_case.
 */
export async function loadChain(path) {
    const extension = extname(path).toLowerCase();
    const text = await readFile(path, "utf8");
    let document;
    try {
        if (extension === ".json") {
            document = JSON.parse(text);
        }
        else if (extension === ".yaml" || extension === ".yml") {
            document = parseYaml(text);
        }
        else {
            throw new Error(`expected a .json, .yaml or .yml file`);
        }
    }
    catch (error) {
        throw new Error(`loadChain(${path}): ${error.message}`, { cause: error });
    }
    if (document === null || typeof document !== "object" || Array.isArray(document)) {
        throw new Error(`loadChain(${path}): expected an object holding a chain`);
    }
    const record = document;
    const chain = "chain" in record && !("tasks" in record) ? record.chain : record;
    try {
        // ignoreUnknownFields: contenox files carry fields taskloom ignores.
        return fromJson(ChainSchema, chain, { ignoreUnknownFields: true });
    }
    catch (error) {
        throw new Error(`loadChain(${path}): not a valid chain: ${error.message}`, {
            cause: error,
        });
    }
}
/** ChainService helpers: `client.chains`. */
export class ChainsClient {
    service;
    constructor(service) {
        this.service = service;
    }
    /** Creates a chain at version 1 (ALREADY_EXISTS when the id is taken). */
    create(chain, options = {}) {
        return this.service.createChain({ chain, requestId: options.requestId });
    }
    /** The latest version of a chain, or `version`. */
    get(id, options = {}) {
        return this.service.getChain({ id, version: BigInt(options.version ?? 0) });
    }
    /** One page of the latest version of every chain, ordered by id. */
    async list(options = {}) {
        const { chains, nextPageToken } = await this.service.listChains(options);
        return { chains, nextPageToken };
    }
    /** One page of a chain's versions, newest first. */
    async versions(id, options = {}) {
        const { chains, nextPageToken } = await this.service.listChainVersions({ id, ...options });
        return { chains, nextPageToken };
    }
    /** Replaces a chain's definition (`chain.id` names it), creating the next version. */
    update(chain, options = {}) {
        return this.service.updateChain({ chain, etag: options.etag, requestId: options.requestId });
    }
    /** Deletes a chain; versions pinned by runs stay readable by them. */
    async delete(id, options = {}) {
        await this.service.deleteChain({ id, etag: options.etag });
    }
    /** Checks a definition without storing it; every problem at once. */
    validate(chain) {
        return this.service.validateChain({ chain: create(ChainSchema, chain) });
    }
}
//# sourceMappingURL=chains.js.map