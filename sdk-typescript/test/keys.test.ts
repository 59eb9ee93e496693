// Key management and namespaces against a real server: the first key,
// created in open mode, closes the server; roles, namespace bindings and
// revocation are enforced.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { InvalidArgument, PermissionDenied, Unauthenticated } from "../dist/index.js";
import { TestServer } from "./harness.js";

let server: TestServer;

before(async () => {
  server = await TestServer.start();
});

after(async () => {
  await server?.stop();
});

describe("keys", () => {
  test("keys, roles and namespaces", async () => {
    const open = server.client();
    const admin = await open.keys.create("first admin", "admin");
    assert.ok(admin.secret.startsWith("tlk_"));
    assert.equal(admin.key?.prefix, admin.secret.slice(0, 8));
    await assert.rejects(open.info.version(), Unauthenticated);
    open.close();

    const client = server.client({ apiKey: admin.secret });
    // Calls may name only namespaces that exist.
    await client.namespaces.create("team-a");
    const viewer = await client.keys.create("viewer", "viewer", { ttlMs: 3_600_000 });
    const team = await client.keys.create("team", "operator", { namespace: "team-a" });
    const listed = await client.keys.list();
    assert.deepEqual(
      listed.map((key) => key.id),
      [admin.key?.id, viewer.key?.id, team.key?.id],
    );
    assert.ok(listed[1]?.expireTime);
    assert.ok(!JSON.stringify(listed, (_, v) => (typeof v === "bigint" ? String(v) : v)).includes(admin.secret));

    const asViewer = server.client({ apiKey: viewer.secret });
    await asViewer.chains.list();
    await assert.rejects(asViewer.keys.list(), (error: unknown) => {
      assert.ok(error instanceof PermissionDenied);
      assert.equal(error.reason, "PERMISSION_MISSING");
      assert.equal(error.metadata["role"], "viewer");
      assert.equal(error.metadata["permission"], "keys.manage");
      return true;
    });

    const inTeam = server.client({ apiKey: team.secret, namespace: "team-a" });
    await inTeam.chains.list();
    const elsewhere = server.client({ apiKey: team.secret, namespace: "team-b" });
    await assert.rejects(elsewhere.chains.list(), (error: unknown) => {
      assert.ok(error instanceof PermissionDenied);
      assert.equal(error.reason, "NAMESPACE_NOT_ALLOWED");
      return true;
    });
    const malformed = server.client({ apiKey: admin.secret, namespace: "Team_B" });
    await assert.rejects(malformed.chains.list(), InvalidArgument);

    const revoked = await client.keys.revoke(viewer.key?.id ?? "");
    assert.ok(revoked.revokeTime);
    await assert.rejects(asViewer.chains.list(), Unauthenticated);
    for (const c of [client, asViewer, inTeam, elsewhere, malformed]) c.close();
  });
});
