#!/usr/bin/env node
// A small local LLM server for Taskloom's real-model tests. It loads one
// GGUF model once (node-llama-cpp, prebuilt CPU binary, nothing downloaded
// or compiled) and serves it on 127.0.0.1 in both wire formats Taskloom
// speaks:
//
//   OpenAI-compatible  GET /v1/models, POST /v1/chat/completions (JSON, or
//                      SSE with `stream: true`), POST /v1/embeddings
//   Ollama             GET /api/tags, POST /api/chat (NDJSON stream by
//                      default, one JSON with `stream: false`),
//                      POST /api/embed, POST /api/embeddings
//
// Usage: node serve.mjs --model FILE.gguf [--port N] [--model-name NAME]
//          [--threads N] [--context-size N] [--max-tokens N] [--exit-with-stdin]
//        node serve.mjs --check    (loads the prebuilt llama.cpp binary, exits)
// Environment fallbacks: TASKLOOM_LLM_MODEL, TASKLOOM_LLM_PORT,
// TASKLOOM_LLM_MODEL_NAME, TASKLOOM_LLM_THREADS. Port 0 (the default) picks
// a free port. Prints `listening on http://127.0.0.1:PORT` once it serves.
//
// Messages are rendered with the model's own chat template; token counts
// are the model tokenizer's. Requests are served one at a time (a small CPU
// machine gains nothing from parallel decoding). Sampling is greedy unless
// the request sets a temperature, so answers are reproducible.

import http from "node:http";
import path from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";

// Never download or build llama.cpp: only the prebuilt binary may be used.
process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = "true";
const { getLlama, LlamaChat, LlamaLogLevel } = await import("node-llama-cpp");

const MAX_BODY_BYTES = 8 * 1024 * 1024;

function nonNegativeInt(name, text) {
    const value = Number(text);
    if (!Number.isInteger(value) || value < 0) {
        throw new Error(`--${name} must be a non-negative integer, got ${JSON.stringify(text)}`);
    }
    return value;
}

function readOptions() {
    const { values } = parseArgs({
        options: {
            model: { type: "string" },
            port: { type: "string" },
            "model-name": { type: "string" },
            threads: { type: "string" },
            "context-size": { type: "string" },
            "max-tokens": { type: "string" },
            "exit-with-stdin": { type: "boolean", default: false },
            check: { type: "boolean", default: false },
        },
        strict: true,
    });
    if (values.check) {
        return { check: true, threads: 1 };
    }
    const modelPath = values.model ?? process.env.TASKLOOM_LLM_MODEL;
    if (!modelPath) {
        throw new Error("no model: pass --model FILE.gguf or set TASKLOOM_LLM_MODEL");
    }
    return {
        modelPath: path.resolve(modelPath),
        port: nonNegativeInt("port", values.port ?? process.env.TASKLOOM_LLM_PORT ?? "0"),
        modelName:
            values["model-name"] ??
            process.env.TASKLOOM_LLM_MODEL_NAME ??
            path.basename(modelPath).replace(/\.gguf$/i, "").toLowerCase(),
        // One thread by default: with two cores shared with compilers and
        // test servers, llama.cpp's thread synchronisation made 2 threads
        // 10-25x slower than 1 in measurements on this kind of machine.
        threads: Math.max(1, nonNegativeInt("threads", values.threads ?? process.env.TASKLOOM_LLM_THREADS ?? "1")),
        contextSize: Math.max(256, nonNegativeInt("context-size", values["context-size"] ?? "2048")),
        // Completion cap when a request sets none: keeps test runs fast.
        defaultMaxTokens: Math.max(1, nonNegativeInt("max-tokens", values["max-tokens"] ?? "48")),
        exitWithStdin: values["exit-with-stdin"],
    };
}

/** An error answered with an HTTP status in the caller's wire format. */
class HttpError extends Error {
    constructor(status, message, code = undefined) {
        super(message);
        this.status = status;
        this.code = code;
    }
}

/** Runs jobs one at a time, in arrival order. */
class SerialQueue {
    #tail = Promise.resolve();

    run(job) {
        const result = this.#tail.then(job);
        this.#tail = result.catch(() => {});
        return result;
    }
}

/** llama.cpp from node-llama-cpp's prebuilt CPU binary; fails rather than download or build. */
function loadLlama(threads) {
    return getLlama({
        gpu: false,
        build: "never",
        usePrebuiltBinaries: true,
        skipDownload: true,
        progressLogs: false,
        maxThreads: threads,
        logLevel: LlamaLogLevel.error,
    });
}

class Model {
    static async load(options) {
        const llama = await loadLlama(options.threads);
        const model = await llama.loadModel({ modelPath: options.modelPath, gpuLayers: 0 });
        const context = await model.createContext({
            contextSize: Math.min(options.contextSize, model.trainContextSize),
            threads: options.threads,
            sequences: 1,
        });
        return new Model(options, llama, model, context);
    }

    constructor(options, llama, model, context) {
        this.options = options;
        this.name = options.modelName;
        this.llama = llama;
        this.model = model;
        this.context = context;
        this.chat = new LlamaChat({ contextSequence: context.getSequence(), autoDisposeSequence: false });
        this.queue = new SerialQueue();
        this.embeddingContext = null;
        this.created = Math.floor(Date.now() / 1000);
    }

    get chatTemplate() {
        return this.chat.chatWrapper.wrapperName;
    }

    /** Whether a requested model name means this model (Ollama adds `:latest`). */
    serves(requested) {
        return requested === this.name || requested === `${this.name}:latest`;
    }

    /** The GGUF metadata clients may want (llama.cpp's server reports the same). */
    meta() {
        return {
            n_ctx_train: this.model.trainContextSize,
            n_ctx: this.context.contextSize,
            n_embd: this.model.embeddingVectorSize,
            size: this.model.size,
            chat_template: this.chatTemplate,
        };
    }

    architecture() {
        return this.model.fileInfo?.metadata?.general?.architecture ?? "unknown";
    }

    /**
     * Generates a reply to OpenAI-style `messages` ({role, content}).
     * `onText` receives text pieces as they are decoded. An aborted `signal`
     * stops decoding and returns what was generated so far.
     */
    generate(messages, { maxTokens, temperature, topP, topK, seed, stop, signal, onText }) {
        const history = toChatHistory(messages);
        const promptTokens = this.chat.chatWrapper
            .generateContextState({ chatHistory: history })
            .contextText.tokenize(this.model.tokenizer).length;
        const limit = maxTokens ?? this.options.defaultMaxTokens;
        if (promptTokens + limit > this.context.contextSize) {
            throw new HttpError(
                400,
                `the prompt (${promptTokens} tokens) plus max_tokens (${limit}) exceeds the context size (${this.context.contextSize})`,
                "context_length_exceeded",
            );
        }
        return this.queue.run(async () => {
            if (signal?.aborted) {
                return null;
            }
            let completionTokens = 0;
            let text = "";
            const result = await this.chat.generateResponse(history, {
                maxTokens: limit,
                temperature: temperature ?? 0,
                ...(topP != null ? { topP } : {}),
                ...(topK != null ? { topK } : {}),
                ...(seed != null ? { seed } : {}),
                ...(stop.length > 0 ? { customStopTriggers: stop } : {}),
                signal,
                stopOnAbortSignal: true,
                onToken: (tokens) => {
                    completionTokens += tokens.length;
                },
                onTextChunk: (chunk) => {
                    if (chunk.length > 0) {
                        text += chunk;
                        onText?.(chunk);
                    }
                },
            });
            const reason = result.metadata.stopReason;
            return {
                // The streamed pieces are the answer, so both modes agree.
                text,
                promptTokens,
                completionTokens,
                finishReason: reason === "maxTokens" ? "length" : "stop",
                aborted: reason === "abort",
            };
        });
    }

    /** L2-normalised embeddings (as OpenAI and Ollama return them) with token counts. */
    embed(inputs) {
        return this.queue.run(async () => {
            if (this.embeddingContext === null) {
                this.embeddingContext = await this.model.createEmbeddingContext({
                    contextSize: Math.min(this.options.contextSize, this.model.trainContextSize),
                    threads: this.options.threads,
                });
            }
            const results = [];
            for (const input of inputs) {
                const tokens = this.embeddingContext.calculateInputLength(input);
                if (tokens > this.embeddingContext.model.trainContextSize || tokens > this.options.contextSize) {
                    throw new HttpError(400, `the input (${tokens} tokens) exceeds the context size`, "context_length_exceeded");
                }
                const embedding = await this.embeddingContext.getEmbeddingFor(input);
                results.push({ vector: normalized(embedding.vector), tokens });
            }
            return results;
        });
    }

    async dispose() {
        await this.embeddingContext?.dispose();
        await this.context.dispose();
        await this.model.dispose();
        await this.llama.dispose();
    }
}

function normalized(vector) {
    let sum = 0;
    for (const x of vector) {
        sum += x * x;
    }
    const norm = Math.sqrt(sum);
    return Array.from(vector, (x) => (norm > 0 ? x / norm : x));
}

/** Message text: a string, or OpenAI content parts of which the text ones count. */
function messageText(content, where) {
    if (typeof content === "string") {
        return content;
    }
    if (content == null) {
        return "";
    }
    if (Array.isArray(content)) {
        return content
            .map((part, index) => {
                if (part?.type === "text" && typeof part.text === "string") {
                    return part.text;
                }
                throw new HttpError(400, `${where}.content[${index}]: only text parts are supported`);
            })
            .join("");
    }
    throw new HttpError(400, `${where}.content must be a string or an array of text parts`);
}

/** OpenAI/Ollama messages to node-llama-cpp's chat history, ending with the reply to generate. */
function toChatHistory(messages) {
    if (!Array.isArray(messages) || messages.length === 0) {
        throw new HttpError(400, "messages must be a non-empty array");
    }
    const history = messages.map((message, index) => {
        const where = `messages[${index}]`;
        const text = messageText(message?.content, where);
        switch (message?.role) {
            case "system":
            case "developer":
                return { type: "system", text };
            case "user":
                return { type: "user", text };
            case "assistant":
                return { type: "model", response: [text] };
            default:
                throw new HttpError(400, `${where}.role must be system, user or assistant, got ${JSON.stringify(message?.role)}`);
        }
    });
    history.push({ type: "model", response: [] });
    return history;
}

function optionalNumber(value, name) {
    if (value == null) {
        return undefined;
    }
    if (typeof value !== "number" || !Number.isFinite(value)) {
        throw new HttpError(400, `${name} must be a number`);
    }
    return value;
}

/** A completion cap: a positive integer, or undefined for the server default. */
function tokenCap(value, name) {
    const cap = optionalNumber(value, name);
    if (cap == null || cap <= 0) {
        // Ollama uses -1 for "no limit"; the default cap keeps tests fast.
        return undefined;
    }
    if (!Number.isInteger(cap)) {
        throw new HttpError(400, `${name} must be an integer`);
    }
    return cap;
}

function stopList(value, name) {
    if (value == null) {
        return [];
    }
    const list = Array.isArray(value) ? value : [value];
    if (!list.every((item) => typeof item === "string" && item.length > 0)) {
        throw new HttpError(400, `${name} must be a non-empty string or an array of them`);
    }
    return list;
}

function embeddingInputs(value, name) {
    const list = Array.isArray(value) ? value : [value];
    if (list.length === 0 || !list.every((item) => typeof item === "string")) {
        throw new HttpError(400, `${name} must be a string or an array of strings`);
    }
    return list;
}

async function readJson(request) {
    const chunks = [];
    let size = 0;
    for await (const chunk of request) {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) {
            throw new HttpError(413, `the request body exceeds ${MAX_BODY_BYTES} bytes`);
        }
        chunks.push(chunk);
    }
    try {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        if (body === null || typeof body !== "object" || Array.isArray(body)) {
            throw new Error("not an object");
        }
        return body;
    } catch (error) {
        throw new HttpError(400, `the request body is not a JSON object: ${error.message}`);
    }
}

function sendJson(response, status, body) {
    const text = JSON.stringify(body);
    response.writeHead(status, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(text),
    });
    response.end(text);
}

/** An AbortSignal that fires when the client goes away before the answer is complete. */
function clientGone(request, response) {
    const controller = new AbortController();
    response.on("close", () => {
        if (!response.writableFinished) {
            controller.abort();
        }
    });
    return controller.signal;
}

// ---- OpenAI-compatible ----------------------------------------------------

let completionCounter = 0;

function openAiError(response, error) {
    const status = error instanceof HttpError ? error.status : 500;
    sendJson(response, status, {
        error: {
            message: error.message,
            type: status >= 500 ? "server_error" : "invalid_request_error",
            code: error.code ?? null,
        },
    });
}

async function openAiChat(model, request, response, log) {
    const body = await readJson(request);
    if (!model.serves(body.model)) {
        throw new HttpError(404, `The model ${JSON.stringify(body.model)} does not exist`, "model_not_found");
    }
    if (body.n != null && body.n !== 1) {
        throw new HttpError(400, "only n = 1 is supported");
    }
    if (body.tools != null && !(Array.isArray(body.tools) && body.tools.length === 0)) {
        throw new HttpError(400, "tools are not supported by this server");
    }
    const stream = body.stream === true;
    const includeUsage = stream && body.stream_options?.include_usage === true;
    const signal = clientGone(request, response);
    const id = `chatcmpl-${++completionCounter}`;
    const created = Math.floor(Date.now() / 1000);
    const settings = {
        maxTokens:
            tokenCap(body.max_completion_tokens, "max_completion_tokens") ?? tokenCap(body.max_tokens, "max_tokens"),
        temperature: optionalNumber(body.temperature, "temperature"),
        topP: optionalNumber(body.top_p, "top_p"),
        seed: optionalNumber(body.seed, "seed"),
        stop: stopList(body.stop, "stop"),
        signal,
    };
    const chunk = (choices, usage) => ({
        id,
        object: "chat.completion.chunk",
        created,
        model: model.name,
        choices,
        ...(includeUsage ? { usage: usage ?? null } : {}),
    });
    const event = (data) => response.write(`data: ${JSON.stringify(data)}\n\n`);
    let started = false;
    const start = () => {
        if (!started) {
            started = true;
            response.writeHead(200, {
                "content-type": "text/event-stream",
                "cache-control": "no-cache",
                connection: "keep-alive",
            });
            event(chunk([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }]));
        }
    };
    let result;
    try {
        result = await model.generate(body.messages, {
            ...settings,
            onText: stream
                ? (text) => {
                      start();
                      event(chunk([{ index: 0, delta: { content: text }, finish_reason: null }]));
                  }
                : undefined,
        });
    } catch (error) {
        if (!started) {
            throw error;
        }
        // Headers are gone: report the failure inside the stream.
        event({ error: { message: error.message, type: "server_error", code: null } });
        response.end();
        log(`stream failed: ${error.message}`);
        return;
    }
    if (result === null || result.aborted) {
        // The client went away (logged when the connection closed).
        response.destroy();
        return;
    }
    const usage = {
        prompt_tokens: result.promptTokens,
        completion_tokens: result.completionTokens,
        total_tokens: result.promptTokens + result.completionTokens,
    };
    log(`${stream ? "stream" : "json"} prompt=${usage.prompt_tokens} completion=${usage.completion_tokens} finish=${result.finishReason}`);
    if (!stream) {
        sendJson(response, 200, {
            id,
            object: "chat.completion",
            created,
            model: model.name,
            choices: [
                {
                    index: 0,
                    message: { role: "assistant", content: result.text },
                    finish_reason: result.finishReason,
                },
            ],
            usage,
        });
        return;
    }
    start();
    event(chunk([{ index: 0, delta: {}, finish_reason: result.finishReason }]));
    if (includeUsage) {
        event(chunk([], usage));
    }
    response.end("data: [DONE]\n\n");
}

async function openAiEmbeddings(model, request, response, log) {
    const body = await readJson(request);
    if (!model.serves(body.model)) {
        throw new HttpError(404, `The model ${JSON.stringify(body.model)} does not exist`, "model_not_found");
    }
    const format = body.encoding_format ?? "float";
    if (format !== "float" && format !== "base64") {
        throw new HttpError(400, "encoding_format must be float or base64");
    }
    const results = await model.embed(embeddingInputs(body.input, "input"));
    const tokens = results.reduce((sum, item) => sum + item.tokens, 0);
    log(`inputs=${results.length} tokens=${tokens}`);
    sendJson(response, 200, {
        object: "list",
        data: results.map((item, index) => ({
            object: "embedding",
            index,
            embedding:
                format === "base64"
                    ? Buffer.from(new Float32Array(item.vector).buffer).toString("base64")
                    : item.vector,
        })),
        model: model.name,
        usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
}

function openAiModels(model, response) {
    sendJson(response, 200, {
        object: "list",
        data: [{ id: model.name, object: "model", created: model.created, owned_by: "taskloom-tests", meta: model.meta() }],
    });
}

// ---- Ollama ---------------------------------------------------------------

function ollamaError(response, error) {
    const status = error instanceof HttpError ? error.status : 500;
    sendJson(response, status, { error: error.message });
}

function ollamaModelCheck(model, body) {
    if (typeof body.model !== "string" || body.model.length === 0) {
        throw new HttpError(400, "model is required");
    }
    if (!model.serves(body.model)) {
        throw new HttpError(404, `model "${body.model}" not found, try pulling it first`);
    }
}

async function ollamaChat(model, request, response, log) {
    const began = process.hrtime.bigint();
    const body = await readJson(request);
    ollamaModelCheck(model, body);
    const options = body.options ?? {};
    const stream = body.stream !== false;
    const signal = clientGone(request, response);
    const settings = {
        maxTokens: tokenCap(options.num_predict, "options.num_predict"),
        temperature: optionalNumber(options.temperature, "options.temperature"),
        topP: optionalNumber(options.top_p, "options.top_p"),
        topK: optionalNumber(options.top_k, "options.top_k"),
        seed: optionalNumber(options.seed, "options.seed"),
        stop: stopList(options.stop, "options.stop"),
        signal,
    };
    const line = (data) => response.write(`${JSON.stringify(data)}\n`);
    let started = false;
    const start = () => {
        if (!started) {
            started = true;
            response.writeHead(200, { "content-type": "application/x-ndjson" });
        }
    };
    let result;
    try {
        result = await model.generate(body.messages, {
            ...settings,
            onText: stream
                ? (text) => {
                      start();
                      line({
                          model: model.name,
                          created_at: new Date().toISOString(),
                          message: { role: "assistant", content: text },
                          done: false,
                      });
                  }
                : undefined,
        });
    } catch (error) {
        if (!started) {
            throw error;
        }
        line({ error: error.message });
        response.end();
        log(`stream failed: ${error.message}`);
        return;
    }
    if (result === null || result.aborted) {
        // The client went away (logged when the connection closed).
        response.destroy();
        return;
    }
    const elapsed = Number(process.hrtime.bigint() - began);
    log(`${stream ? "stream" : "json"} prompt=${result.promptTokens} completion=${result.completionTokens} finish=${result.finishReason}`);
    const final = {
        model: model.name,
        created_at: new Date().toISOString(),
        message: { role: "assistant", content: stream ? "" : result.text },
        done: true,
        done_reason: result.finishReason,
        total_duration: elapsed,
        load_duration: 0,
        prompt_eval_count: result.promptTokens,
        eval_count: result.completionTokens,
    };
    if (!stream) {
        sendJson(response, 200, final);
        return;
    }
    start();
    line(final);
    response.end();
}

async function ollamaEmbed(model, request, response, log) {
    const began = process.hrtime.bigint();
    const body = await readJson(request);
    ollamaModelCheck(model, body);
    const results = await model.embed(embeddingInputs(body.input, "input"));
    const tokens = results.reduce((sum, item) => sum + item.tokens, 0);
    log(`inputs=${results.length} tokens=${tokens}`);
    sendJson(response, 200, {
        model: model.name,
        embeddings: results.map((item) => item.vector),
        total_duration: Number(process.hrtime.bigint() - began),
        load_duration: 0,
        prompt_eval_count: tokens,
    });
}

/** Ollama's older single-input endpoint. */
async function ollamaEmbeddings(model, request, response, log) {
    const body = await readJson(request);
    ollamaModelCheck(model, body);
    if (typeof body.prompt !== "string") {
        throw new HttpError(400, "prompt must be a string");
    }
    const [result] = await model.embed([body.prompt]);
    log(`tokens=${result.tokens}`);
    sendJson(response, 200, { embedding: result.vector });
}

function ollamaTags(model, response) {
    sendJson(response, 200, {
        models: [
            {
                name: model.name,
                model: model.name,
                modified_at: new Date(model.created * 1000).toISOString(),
                size: model.model.size,
                details: { format: "gguf", family: model.architecture() },
            },
        ],
    });
}

// ---- Routing --------------------------------------------------------------

const ROUTES = {
    "GET /v1/models": { format: "openai", handle: (m, _req, res) => openAiModels(m, res) },
    "POST /v1/chat/completions": { format: "openai", handle: openAiChat },
    "POST /v1/embeddings": { format: "openai", handle: openAiEmbeddings },
    "GET /api/tags": { format: "ollama", handle: (m, _req, res) => ollamaTags(m, res) },
    "POST /api/chat": { format: "ollama", handle: ollamaChat },
    "POST /api/embed": { format: "ollama", handle: ollamaEmbed },
    "POST /api/embeddings": { format: "ollama", handle: ollamaEmbeddings },
    "GET /api/version": { format: "ollama", handle: (_m, _req, res) => sendJson(res, 200, { version: "0.0.0-taskloom-tests" }) },
    "GET /health": { format: "openai", handle: (_m, _req, res) => sendJson(res, 200, { status: "ok" }) },
};

function serve(model, request, response) {
    const began = Date.now();
    const pathname = new URL(request.url ?? "/", "http://localhost").pathname.replace(/\/+$/, "") || "/";
    const key = `${request.method} ${pathname}`;
    const notes = [];
    const log = (note) => notes.push(note);
    response.on("close", () => {
        if (!response.writableFinished) {
            notes.push("client went away before the answer was complete");
        }
        const extra = notes.length > 0 ? ` ${notes.join("; ")}` : "";
        console.log(`${key} ${response.statusCode} ${Date.now() - began}ms${extra}`);
    });
    if (key === "GET /" || key === "HEAD /") {
        // Ollama clients probe the root.
        response.writeHead(200, { "content-type": "text/plain" });
        response.end("Ollama is running");
        return;
    }
    const route = ROUTES[key];
    if (route === undefined) {
        const modelPath = pathname.match(/^\/v1\/models\/(.+)$/);
        if (request.method === "GET" && modelPath && model.serves(decodeURIComponent(modelPath[1]))) {
            sendJson(response, 200, { id: model.name, object: "model", created: model.created, owned_by: "taskloom-tests" });
            return;
        }
        const error = new HttpError(404, `no route for ${key}`);
        (pathname.startsWith("/api/") ? ollamaError : openAiError)(response, error);
        return;
    }
    Promise.resolve()
        .then(() => route.handle(model, request, response, log))
        .catch((error) => {
            if (!(error instanceof HttpError)) {
                console.error(`${key}: ${error.stack ?? error}`);
            }
            log(error.message);
            if (response.headersSent) {
                response.destroy();
            } else {
                (route.format === "ollama" ? ollamaError : openAiError)(response, error);
            }
        });
}

async function main() {
    const options = readOptions();
    if (options.check) {
        const llama = await loadLlama(options.threads);
        console.log(`llama.cpp binary loads (${llama.buildType} build, gpu: ${llama.gpu})`);
        await llama.dispose();
        return;
    }
    const loadStarted = Date.now();
    const model = await Model.load(options);
    console.log(
        `model ${model.name} from ${options.modelPath}: ${model.architecture()}, ` +
            `context ${model.context.contextSize}, embedding size ${model.model.embeddingVectorSize}, ` +
            `chat template ${model.chatTemplate}, ${options.threads} thread(s), loaded in ${Date.now() - loadStarted}ms`,
    );
    const server = http.createServer({ noDelay: true, keepAliveTimeout: 30_000 }, (request, response) =>
        serve(model, request, response),
    );
    let stopping = false;
    const stop = async (why) => {
        if (stopping) {
            return;
        }
        stopping = true;
        console.log(`stopping: ${why}`);
        server.close();
        server.closeAllConnections();
        await model.dispose().catch(() => {});
        process.exit(0);
    };
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
    if (options.exitWithStdin) {
        // The parent holds our stdin open; when it dies, so do we.
        process.stdin.on("end", () => stop("stdin closed"));
        process.stdin.on("error", () => stop("stdin failed"));
        process.stdin.resume();
    }
    await new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(options.port, "127.0.0.1", resolve);
    });
    console.log(`listening on http://127.0.0.1:${server.address().port}`);
}

main().catch((error) => {
    console.error(`serve.mjs: ${error.stack ?? error}`);
    process.exit(1);
});
