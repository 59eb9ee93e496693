// What the browser tests run against: a real taskloom server (the binary
// tests/run built) serving the UI and gRPC-Web on --http-listen, a fake
// OpenAI-compatible model that streams slowly, native gRPC clients for
// setting runs up, and headless Chromium (Debian's, through puppeteer-core).

import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect } from "node:net";
import type { AddressInfo } from "node:net";
import { createServer as createHttpServer } from "node:http";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import type { Client, Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import puppeteer from "puppeteer-core";
import type { Browser, Page } from "puppeteer-core";
import { BackendService, BackendType } from "../src/gen/taskloom/v1/backend_pb.js";
import { ChainSchema, ChainService } from "../src/gen/taskloom/v1/chain_pb.js";
import { fromJson } from "@bufbuild/protobuf";
import type { JsonObject } from "@bufbuild/protobuf";
import { KeyService, NamespaceService } from "../src/gen/taskloom/v1/security_pb.js";
import { RunService, RunStatus } from "../src/gen/taskloom/v1/run_pb.js";
import type { Run } from "../src/gen/taskloom/v1/run_pb.js";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (this file runs from ui/dist-test/test/). */
export const repoRoot = resolve(here, "..", "..", "..");
export const serverBinary = process.env.TASKLOOM_BIN ?? join(repoRoot, "target", "debug", "taskloom");
export const chromiumPath = process.env.TASKLOOM_CHROMIUM ?? "/usr/bin/chromium";
/** Where the tests put their screenshots (docs/screenshots, committed). */
export const screenshotDir = process.env.TASKLOOM_UI_SCREENSHOTS ?? join(repoRoot, "docs", "screenshots");

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as AddressInfo).port;
      server.close(() => resolvePort(port));
    });
  });
}

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolveAccepts) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolveAccepts(true);
    });
    socket.once("error", () => resolveAccepts(false));
  });
}

export interface Clients {
  runs: Client<typeof RunService>;
  chains: Client<typeof ChainService>;
  backends: Client<typeof BackendService>;
  keys: Client<typeof KeyService>;
  namespaces: Client<typeof NamespaceService>;
}

export class TestServer {
  readonly dir: string;
  private process: ChildProcess | undefined;
  private log = "";

  private constructor(
    readonly grpcPort: number,
    readonly httpPort: number,
    readonly databaseUrl: string,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), "taskloom-ui-"));
  }

  /** Starts a server on a fresh SQLite file, or on `databaseUrl` (PostgreSQL). */
  static async start(options: { databaseUrl?: string; args?: string[] } = {}): Promise<TestServer> {
    const server = new TestServer(await freePort(), await freePort(), options.databaseUrl ?? "");
    await server.spawn(options.args ?? []);
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  private async spawn(extra: string[]): Promise<void> {
    const database = this.databaseUrl || join(this.dir, "taskloom.db");
    if (this.databaseUrl) {
      // PostgreSQL wants the key for stored secrets given (SQLite keeps one beside its file).
      const keyFile = join(this.dir, "taskloom.key");
      writeFileSync(keyFile, randomBytes(32).toString("hex"), { mode: 0o600 });
      extra = ["--secret-key-file", keyFile, ...extra];
    }
    const child = spawn(
      serverBinary,
      [
        "serve",
        "--listen",
        `127.0.0.1:${this.grpcPort}`,
        "--http-listen",
        `127.0.0.1:${this.httpPort}`,
        "--database-url",
        database,
        "--exit-with-stdin",
        ...extra,
      ],
      { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } },
    );
    this.process = child;
    const collect = (chunk: Buffer): void => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
    };
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`taskloom exited with ${child.exitCode}:\n${this.log}`);
      if ((await portAccepts(this.grpcPort)) && (await portAccepts(this.httpPort))) return;
      await sleep(50);
    }
    child.kill("SIGKILL");
    throw new Error(`taskloom did not listen within 30 s:\n${this.log}`);
  }

  clients(apiKey?: string, namespace?: string): Clients {
    const auth: Interceptor = (next) => (request) => {
      if (apiKey) request.header.set("authorization", `Bearer ${apiKey}`);
      if (namespace) request.header.set("x-taskloom-namespace", namespace);
      return next(request);
    };
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${this.grpcPort}`, interceptors: [auth] });
    return {
      runs: createClient(RunService, transport),
      chains: createClient(ChainService, transport),
      backends: createClient(BackendService, transport),
      keys: createClient(KeyService, transport),
      namespaces: createClient(NamespaceService, transport),
    };
  }

  get output(): string {
    return this.log;
  }

  async stop(): Promise<void> {
    const child = this.process;
    this.process = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `/v1/chat/completions` of an OpenAI-compatible provider, streaming one chunk every `delayMs`. */
export class FakeModel {
  private readonly server: Server;
  readonly chunks: string[];

  constructor(chunkCount = 30, readonly delayMs = 150) {
    this.chunks = Array.from({ length: chunkCount }, (_, i) => `token${i} `);
    this.server = createHttpServer((request, response) => {
      let body = "";
      request.on("data", (chunk: Buffer) => (body += chunk.toString()));
      request.on("end", async () => {
        const usage = { prompt_tokens: 7, completion_tokens: this.chunks.length };
        const answer = this.chunks.join("");
        if (request.url?.endsWith("/models")) {
          response.writeHead(200, { "content-type": "application/json" });
          response.end(JSON.stringify({ data: [{ id: "fake-model", object: "model" }] }));
          return;
        }
        if (body.includes("FAIL")) {
          // A provider error: the attempt fails and its retry policy applies.
          response.writeHead(503, { "content-type": "application/json" });
          response.end(JSON.stringify({ error: { message: "the fake model is overloaded" } }));
          return;
        }
        if (!(JSON.parse(body || "{}") as { stream?: boolean }).stream) {
          response.writeHead(200, { "content-type": "application/json" });
          response.end(JSON.stringify({ choices: [{ message: { role: "assistant", content: answer } }], usage }));
          return;
        }
        response.writeHead(200, { "content-type": "text/event-stream" });
        if (body.includes("HANG")) {
          // A model that starts answering and never finishes: its run stays running.
          response.write(`data: ${JSON.stringify({ choices: [{ delta: { content: "thinking" } }] })}\n\n`);
          return;
        }
        for (const chunk of this.chunks) {
          await sleep(this.delayMs);
          if (response.destroyed) return;
          response.write(`data: ${JSON.stringify({ choices: [{ delta: { content: chunk } }] })}\n\n`);
        }
        const last = { choices: [{ delta: {}, finish_reason: "stop" }], usage };
        response.end(`data: ${JSON.stringify(last)}\n\ndata: [DONE]\n\n`);
      });
    });
  }

  listen(): Promise<void> {
    return new Promise((r) => this.server.listen(0, "127.0.0.1", r));
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** Registers `model` as a backend of the pool model tasks use by default. */
export async function addFakeBackend(clients: Clients, model: FakeModel): Promise<void> {
  const backend = await clients.backends.createBackend({
    backend: { name: "fake-openai", type: BackendType.OPENAI_COMPATIBLE, baseUrl: model.url },
  });
  await clients.backends.assignBackendToPool({ poolId: "internal_tasks_pool", backendId: backend.id });
}

/** A transition to one task (or `end`), as chain JSON. */
export const goto = (target: string) => ({ branches: [{ operator: "default", goto: target }] });

/** Creates chain `id` from chain JSON (snake_case or camelCase). */
export function createChain(clients: Clients, id: string, tasks: JsonObject[], extra: JsonObject = {}) {
  return clients.chains.createChain({ chain: fromJson(ChainSchema, { id, tasks, ...extra }) });
}

/** Stores a new version of chain `id`. */
export function updateChain(clients: Clients, id: string, tasks: JsonObject[], extra: JsonObject = {}) {
  return clients.chains.updateChain({ chain: fromJson(ChainSchema, { id, tasks, ...extra }) });
}

export function startRun(clients: Clients, chainId: string, input = "hello", labels: Record<string, string> = {}) {
  return clients.runs.startRun({
    chainId,
    runInput: { case: "input", value: { kind: { case: "stringValue", value: input } } },
    labels,
  });
}

/** Polls the run until `done` holds for it. */
export async function waitForRun(
  clients: Clients,
  id: string,
  done: (run: Run) => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<Run> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await clients.runs.getRun({ id });
    if (done(run)) return run;
    if (Date.now() > deadline) throw new Error(`run ${id} never got ${what}: status ${RunStatus[run.status]}`);
    await sleep(50);
  }
}

export const hasStatus = (status: RunStatus) => (run: Run) => run.status === status;

export async function launchBrowser(): Promise<Browser> {
  return puppeteer.launch({
    executablePath: chromiumPath,
    headless: true,
    // Root in a container: Chromium's sandbox cannot start there.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run", "--no-default-browser-check"],
    defaultViewport: { width: 1360, height: 900 },
  });
}

/** A page that fails the test on any request to another origin or on a page error. */
export async function openPage(browser: Browser, origin: string): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`page error: ${String(error)}`));
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(origin) && !url.startsWith("data:")) problems.push(`request to another origin: ${url}`);
  });
  return { page, problems };
}

export async function screenshot(page: Page, name: string): Promise<void> {
  if (process.env.TASKLOOM_UI_SCREENSHOTS === "off") return;
  mkdirSync(screenshotDir, { recursive: true });
  await page.screenshot({ path: join(screenshotDir, `${name}.png`) as `${string}.png`, fullPage: false });
}

/** Sets the hash route and waits until `selector` appears; returns the milliseconds it took in the page. */
export async function navigate(page: Page, hash: string, selector: string, timeoutMs = 10_000): Promise<number> {
  const started = await page.evaluate((h) => {
    const t = performance.now();
    location.hash = h;
    return t;
  }, hash);
  await page.waitForSelector(selector, { timeout: timeoutMs });
  const ended = await page.evaluate(() => performance.now());
  return ended - started;
}
