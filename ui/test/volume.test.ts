// The runs list with a large store (TASKLOOM_UI_VOLUME_RUNS, default
// 100,000 runs): the first page, the next page and the filters each answer
// in under 2 s, because the list is paged and filtered by the server.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "puppeteer-core";
import { createChain, goto, launchBrowser, navigate, openPage, TestServer } from "./harness.js";
import type { Clients } from "./harness.js";

const RUNS = Number(process.env.TASKLOOM_UI_VOLUME_RUNS ?? 100_000);
const CONCURRENCY = 128;
const LIMIT_MS = 2000;

let server: TestServer;
let clients: Clients;
let browser: Browser;
let page: Page;

before(async () => {
  server = await TestServer.start({ databaseUrl: process.env.TASKLOOM_UI_VOLUME_PG_URL });
  clients = server.clients();
  browser = await launchBrowser();
  ({ page } = await openPage(browser, server.url));
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Starts `RUNS` runs through the API, `CONCURRENCY` calls in flight. */
async function seed(): Promise<number> {
  await createChain(clients, "bulk", [{ id: "only", handler: "noop", transition: goto("end") }]);
  await createChain(clients, "bulk-ask", [
    { id: "ask", handler: "human_input", prompt_template: "ok?", transition: goto("end") },
  ]);
  const started = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < RUNS) {
        const i = next++;
        // One run in ten waits for input (so all of shard 40 does); every
        // run has one of 100 shard labels.
        await clients.runs.startRun({
          chainId: i % 10 === 0 ? "bulk-ask" : "bulk",
          runInput: { case: "input", value: { kind: { case: "stringValue", value: `item ${i}` } } },
          labels: { shard: String(i % 100) },
        });
      }
    }),
  );
  return Date.now() - started;
}

async function rowCount(p: Page): Promise<number> {
  return p.$$eval("table.runs tbody tr", (rows) => rows.length);
}

/** Waits until the pager says `page N` and a full page is shown; returns the ms it took. */
async function timed(p: Page, action: () => Promise<void>, settled: () => boolean): Promise<number> {
  const t0 = await p.evaluate(() => performance.now());
  await action();
  await p.waitForFunction(settled, { timeout: 10_000 });
  return (await p.evaluate(() => performance.now())) - t0;
}

describe(`runs list with ${RUNS} runs`, () => {
  test("seeded, then paged and filtered quickly", async () => {
    const seedMs = await seed();
    console.log(`seeded ${RUNS} runs in ${(seedMs / 1000).toFixed(1)} s (${Math.round(RUNS / (seedMs / 1000))}/s)`);

    await page.goto(`${server.url}/#/chains`);
    const first = await navigate(page, "#/runs", "table.runs tbody tr:nth-child(50)");
    console.log(`first page: ${first.toFixed(0)} ms`);
    assert.ok(first < LIMIT_MS, `first page took ${first.toFixed(0)} ms`);
    const firstIds = await page.$$eval("table.runs tbody tr", (rows) => rows.map((r) => r.getAttribute("data-run")));

    const next = await timed(
      page,
      () => page.click("button[name=next-page]"),
      () => document.querySelector(".pager span")?.textContent?.startsWith("page 2") === true &&
        document.querySelectorAll("table.runs tbody tr").length === 50 &&
        document.querySelector(".pager")?.getAttribute("data-loading") === "false",
    );
    console.log(`next page: ${next.toFixed(0)} ms`);
    assert.ok(next < LIMIT_MS, `next page took ${next.toFixed(0)} ms`);
    const secondIds = await page.$$eval("table.runs tbody tr", (rows) => rows.map((r) => r.getAttribute("data-run")));
    assert.equal(secondIds.filter((id) => firstIds.includes(id)).length, 0, "page 2 repeats page 1");

    const filtered = await timed(
      page,
      () => page.click("label.chip:has(input[name=status-waiting_input])"),
      () => {
        const rows = [...document.querySelectorAll("table.runs tbody tr")];
        return rows.length === 50 && rows.every((r) => r.getAttribute("data-status") === "waiting_input");
      },
    );
    console.log(`status filter: ${filtered.toFixed(0)} ms`);
    assert.ok(filtered < LIMIT_MS, `status filter took ${filtered.toFixed(0)} ms`);

    await page.type("input[name=labels]", "shard=40");
    const labelled = await timed(
      page,
      () => page.click("form.row button[type=submit]"),
      () => {
        const rows = [...document.querySelectorAll("table.runs tbody tr")];
        return (
          rows.length > 0 &&
          rows.every((r) => r.getAttribute("data-status") === "waiting_input" && /shard=40/.test(r.textContent ?? ""))
        );
      },
    );
    console.log(`label + status filter: ${labelled.toFixed(0)} ms`);
    assert.ok(labelled < LIMIT_MS, `label filter took ${labelled.toFixed(0)} ms`);
    assert.ok((await rowCount(page)) > 0);
  });
});
