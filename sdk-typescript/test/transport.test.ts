// The transport. Against an in-process gRPC server (it implements only
// InfoService.getVersion and RunService.watchRun and records the
// authorization header of each call): TLS with a throwaway self-signed
// certificate, a client that does not trust it, and the `authorization:
// Bearer <apiKey>` header (sent with a key, absent without one). Against
// `taskloom serve`: TLS (`--tls-cert/--tls-key`) and API keys
// (`--api-keys-file`).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { generate } from "selfsigned";
import {
  Code,
  InfoService,
  RunEventType,
  RunService,
  TaskloomError,
  Unauthenticated,
  Unavailable,
  Worker,
  createClient,
  fromValue,
} from "../dist/index.js";
import type { RunEvent, TaskloomClient } from "../dist/index.js";
import { workerChain } from "./chains.js";
import { TestServer, uniqueId } from "./harness.js";

const serverVersion = "9.8.7-transport-test";

interface RecordedCall {
  method: string;
  /** The `authorization` header as the server saw it (null when absent). */
  authorization: string | null;
}

/** A gRPC server on 127.0.0.1:0, TLS when given a key and certificate. */
class FakeServer {
  readonly calls: RecordedCall[] = [];
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly server: http2.Http2Server | http2.Http2SecureServer;

  constructor(tls?: { key: string; cert: string }) {
    const record = (method: string, header: Headers) =>
      this.calls.push({ method, authorization: header.get("authorization") });
    const routes = (router: ConnectRouter) => {
      router.service(InfoService, {
        getVersion(_request, context) {
          record("getVersion", context.requestHeader);
          return { version: serverVersion, apiVersion: "v1", store: "memory" };
        },
      });
      router.service(RunService, {
        async *watchRun(request, context) {
          record("watchRun", context.requestHeader);
          yield { runId: request.runId, seq: 1n, type: RunEventType.RUN_SUCCEEDED };
        },
      });
    };
    const handler = connectNodeAdapter({ routes });
    this.server = tls ? http2.createSecureServer({ key: tls.key, cert: tls.cert }, handler) : http2.createServer(handler);
    this.server.on("session", (session: http2.ServerHttp2Session) => {
      this.sessions.add(session);
      session.once("close", () => this.sessions.delete(session));
    });
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, "127.0.0.1", () => resolve((this.server.address() as AddressInfo).port));
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const session of this.sessions) {
        session.destroy();
      }
    });
  }
}

async function collect(events: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const all: RunEvent[] = [];
  for await (const event of events) {
    all.push(event);
  }
  return all;
}

describe("TLS", () => {
  let certPem: string;
  let keyPem: string;
  let server: FakeServer;
  let port: number;
  const clients: TaskloomClient[] = [];

  before(async () => {
    const pems = await generate([{ name: "commonName", value: "localhost" }], {
      keyType: "ec",
      algorithm: "sha256",
      notAfterDate: new Date(Date.now() + 24 * 60 * 60 * 1000),
      extensions: [
        { name: "basicConstraints", cA: false },
        { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
        { name: "extKeyUsage", serverAuth: true },
        {
          name: "subjectAltName",
          altNames: [
            { type: 2, value: "localhost" },
            { type: 7, ip: "127.0.0.1" },
          ],
        },
      ],
    });
    certPem = pems.cert;
    keyPem = pems.private;
    server = new FakeServer({ key: pems.private, cert: pems.cert });
    port = await server.listen();
  });

  after(async () => {
    for (const client of clients) {
      client.close();
    }
    await server?.close();
  });

  test("a client trusting the certificate calls unary and streaming RPCs with its API key", async () => {
    const client = createClient({ address: `https://127.0.0.1:${port}`, tls: { ca: certPem }, apiKey: "s3cret" });
    clients.push(client);
    server.calls.length = 0;

    const version = await client.info.version();
    assert.equal(version.version, serverVersion);
    assert.equal(version.store, "memory");

    const events = await collect(client.runs.watch("r1"));
    assert.equal(events.length, 1);
    assert.equal(events[0].runId, "r1");
    assert.equal(events[0].seq, 1n);
    assert.equal(events[0].type, RunEventType.RUN_SUCCEEDED);

    assert.deepEqual(server.calls, [
      { method: "getVersion", authorization: "Bearer s3cret" },
      { method: "watchRun", authorization: "Bearer s3cret" },
    ]);
  });

  // connect-node reports the failed handshake (node's DEPTH_ZERO_SELF_SIGNED_CERT)
  // as INTERNAL; the SDK throws `Unavailable` for it, as gRPC's own
  // transports and the Python SDK do, with the node TLS error in the cause chain.
  test("a client without the CA rejects the certificate with Unavailable", async () => {
    const client = createClient({ address: `https://127.0.0.1:${port}`, apiKey: "s3cret" });
    clients.push(client);
    server.calls.length = 0;

    await assert.rejects(client.info.version(), (error: unknown) => {
      assert.ok(error instanceof TaskloomError, `expected a TaskloomError, got ${String(error)}`);
      assert.ok(error instanceof Unavailable, `expected Unavailable, got ${error.name}: ${error.message}`);
      assert.equal(error.code, Code.Unavailable);
      assert.match(error.message, /self[- ]signed certificate/);
      assert.ok(
        causeCodes(error).includes("DEPTH_ZERO_SELF_SIGNED_CERT"),
        `cause chain codes: ${causeCodes(error).join(", ")}`,
      );
      return true;
    });
    assert.deepEqual(server.calls, [], "no call reached the server");
  });

  test("taskloom serve --tls-cert/--tls-key: a worker and a run over TLS", async () => {
    const dir = mkdtempSync(join(tmpdir(), "taskloom-tls-"));
    writeFileSync(join(dir, "cert.pem"), certPem);
    writeFileSync(join(dir, "key.pem"), keyPem);
    const real = await TestServer.start(["--tls-cert", join(dir, "cert.pem"), "--tls-key", join(dir, "key.pem")]);
    const client = createClient({ address: `https://127.0.0.1:${real.port}`, tls: { ca: certPem } });
    const worker = new Worker(client, { logger: { warn: () => undefined } }).handle("secure", (task) => `over TLS: ${String(task.input)}`);
    const running = worker.run();
    try {
      const run = await client.runs.start({ chain: workerChain(uniqueId("secure"), "secure"), input: "x" });
      const done = await client.runs.wait(run.id, { timeoutMs: 10_000 });
      assert.equal(fromValue(done.output), "over TLS: x");
      const plaintext = createClient({ address: `http://127.0.0.1:${real.port}`, retry: { maxRetries: 0 } });
      try {
        await assert.rejects(plaintext.info.version(), TaskloomError);
      } finally {
        plaintext.close();
      }
    } finally {
      await worker.shutdown({ graceMs: 1_000 });
      await running;
      client.close();
      await real.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** The string `code`s along an error's `cause` chain. */
function causeCodes(error: unknown): string[] {
  const codes: string[] = [];
  const seen = new Set<unknown>();
  while (error instanceof Error && !seen.has(error)) {
    seen.add(error);
    const code = (error as { code?: unknown }).code;
    if (typeof code === "string") {
      codes.push(code);
    }
    error = error.cause;
  }
  return codes;
}

describe("plaintext", () => {
  let server: FakeServer;
  let port: number;
  const clients: TaskloomClient[] = [];

  before(async () => {
    server = new FakeServer();
    port = await server.listen();
  });

  after(async () => {
    for (const client of clients) {
      client.close();
    }
    await server?.close();
  });

  test("a client without an API key sends no authorization header", async () => {
    const client = createClient({ address: `http://127.0.0.1:${port}` });
    clients.push(client);
    server.calls.length = 0;

    assert.equal((await client.info.version()).version, serverVersion);
    const events = await collect(client.runs.watch("r1"));
    assert.deepEqual(
      events.map((e) => e.type),
      [RunEventType.RUN_SUCCEEDED],
    );

    assert.deepEqual(server.calls, [
      { method: "getVersion", authorization: null },
      { method: "watchRun", authorization: null },
    ]);
  });

  test("a bare host:port is plaintext and still sends the API key", async () => {
    const client = createClient({ address: `127.0.0.1:${port}`, apiKey: "plain-key" });
    clients.push(client);
    server.calls.length = 0;

    await client.info.version();
    assert.deepEqual(server.calls, [{ method: "getVersion", authorization: "Bearer plain-key" }]);
  });
});

describe("API keys against taskloom serve --api-keys-file", () => {
  test("no key or a wrong one is Unauthenticated (a worker stops); the right key works", async () => {
    const dir = mkdtempSync(join(tmpdir(), "taskloom-keys-"));
    writeFileSync(join(dir, "keys"), "s3cret\n");
    const real = await TestServer.start(["--api-keys-file", join(dir, "keys")]);
    try {
      for (const apiKey of [undefined, "wrong"]) {
        const refused = real.client({ apiKey });
        try {
          const error = await refused.info.version().catch((e: unknown) => e);
          assert.ok(error instanceof Unauthenticated, String(error));
          assert.equal(error.reason, "UNAUTHENTICATED");
          const worker = new Worker(refused, { logger: { warn: () => undefined } }).handle("keyed", () => "never");
          await assert.rejects(worker.run(), Unauthenticated);
        } finally {
          refused.close();
        }
      }
      const client = real.client({ apiKey: "s3cret" });
      const worker = new Worker(client, { logger: { warn: () => undefined } }).handle(
        "keyed",
        (task) => `echo ${String(task.input)}`,
      );
      const running = worker.run();
      try {
        const run = await client.runs.start({ chain: workerChain(uniqueId("keyed"), "keyed"), input: "x" });
        const events = [];
        for await (const event of client.runs.watch(run.id)) events.push(event);
        assert.equal(events.at(-1)?.type, RunEventType.RUN_SUCCEEDED);
        assert.equal(fromValue((await client.runs.get(run.id)).output), "echo x");
      } finally {
        await worker.shutdown({ graceMs: 1_000 });
        await running;
        client.close();
      }
    } finally {
      await real.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
