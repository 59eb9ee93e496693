// Spawns a real taskloom server for the tests: a fresh SQLite file in a temp
// dir, a free port, stdin kept open (--exit-with-stdin, so a crashed test
// run takes the server with it), ready once the port accepts connections.

import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "../dist/index.js";
import type { ClientOptions, TaskloomClient } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (dist-test/ sits in sdk-typescript/). */
export const repoRoot = resolve(here, "..", "..");
export const serverBinary = process.env.TASKLOOM_BIN ?? join(repoRoot, "target", "debug", "taskloom");

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
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

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class TestServer {
  readonly dir: string;
  readonly databasePath: string;
  readonly address: string;
  private process: ChildProcess | undefined;
  private log = "";

  private constructor(readonly port: number, private readonly extraArgs: string[]) {
    this.dir = mkdtempSync(join(tmpdir(), "taskloom-sdk-ts-"));
    this.databasePath = join(this.dir, "taskloom.db");
    this.address = `http://127.0.0.1:${port}`;
  }

  /** Starts a server; the worker flags default to fast heartbeats and short leases. */
  static async start(extraArgs: string[] = []): Promise<TestServer> {
    const server = new TestServer(await freePort(), [
      "--lease-duration",
      "2s",
      "--worker-heartbeat-interval",
      "300ms",
      "--worker-heartbeat-timeout",
      "1s",
      ...extraArgs,
    ]);
    await server.spawn();
    return server;
  }

  /** (Re)starts the process on the same port and database. */
  async spawn(): Promise<void> {
    const child = spawn(
      serverBinary,
      [
        "serve",
        "--listen",
        `127.0.0.1:${this.port}`,
        "--database-url",
        this.databasePath,
        "--exit-with-stdin",
        ...this.extraArgs,
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
      if (child.exitCode !== null) {
        throw new Error(`taskloom server exited with ${child.exitCode}:\n${this.log}`);
      }
      if (await portAccepts(this.port)) {
        return;
      }
      await sleep(50);
    }
    child.kill("SIGKILL");
    throw new Error(`taskloom server did not listen on ${this.port} within 30 s:\n${this.log}`);
  }

  /** SIGKILLs the process (a crash) and waits until it is gone. */
  async kill(): Promise<void> {
    const child = this.process;
    this.process = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      return;
    }
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }

  /** Sends `signal` to the process (SIGSTOP freezes it with its sockets open). */
  signal(signal: NodeJS.Signals): void {
    this.process?.kill(signal);
  }

  client(options: { apiKey?: string; namespace?: string; retry?: ClientOptions["retry"] } = {}): TaskloomClient {
    return createClient({ address: this.address, ...options });
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  get output(): string {
    return this.log;
  }
}

/** Polls `check` until it returns a value other than undefined. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(50);
  }
}

let counter = 0;
/** A chain id unique within the test process. */
export function uniqueId(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}
