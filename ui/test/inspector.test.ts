// The web run inspector in headless Chromium against a real server with
// runs in every state: the runs list and its status filter, a run page's
// graph, timeline and outputs, live tokens while a fake model streams,
// answering a human input and cancelling from the UI, the other pages, and
// a run of 1,000 events rendered in under a second. Takes the screenshots
// in docs/screenshots.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser, HTTPRequest, Page } from "puppeteer-core";
import { RunStatus } from "../src/gen/taskloom/v1/run_pb.js";
import {
  addFakeBackend,
  createChain,
  FakeModel,
  goto,
  hasStatus,
  launchBrowser,
  navigate,
  openPage,
  screenshot,
  startRun,
  TestServer,
  updateChain,
  waitForRun,
} from "./harness.js";
import type { Clients } from "./harness.js";

let server: TestServer;
let model: FakeModel;
let clients: Clients;
let browser: Browser;
let page: Page;
let problems: string[];

async function setUpChains(c: Clients): Promise<void> {
  await createChain(c, "greet", [
    { id: "hello", handler: "noop", transition: goto("bye") },
    { id: "bye", handler: "noop", print: "said bye to {{ input }}", transition: goto("end") },
  ]);
  await createChain(c, "boom", [
    { id: "check", handler: "noop", transition: goto("explode") },
    { id: "explode", handler: "raise_error", error_message: "it broke on {{ input }}", transition: goto("end") },
  ]);
  await createChain(c, "approve", [
    { id: "ask", handler: "human_input", prompt_template: "Ship {{ input }}?", transition: goto("done") },
    { id: "done", handler: "noop", transition: goto("end") },
  ]);
  // No worker serves this queue: its runs wait, queued.
  await createChain(c, "hold", [
    { id: "remote", handler: "worker", queue: "ui-nobody", transition: goto("end") },
  ]);
  // The fake model never finishes answering this prompt: its runs stay running.
  await createChain(c, "hang", [
    {
      id: "think",
      handler: "raw_string",
      prompt_template: "HANG {{ input }}",
      execute_config: { model: "fake-model", stream: true },
      transition: goto("end"),
    },
  ]);
}

/** Rows of the runs table as [run id, status]. */
async function listedRuns(p: Page): Promise<[string, string][]> {
  return p.$$eval("table.runs tbody tr", (rows) =>
    rows.map((r) => [r.getAttribute("data-run") ?? "", r.getAttribute("data-status") ?? ""] as [string, string]),
  );
}

before(async () => {
  model = new FakeModel(30, 150);
  await model.listen();
  server = await TestServer.start();
  clients = server.clients();
  await addFakeBackend(clients, model);
  await setUpChains(clients);
  await createChain(clients, "talk", [
    {
      id: "draft",
      handler: "raw_string",
      system_instruction: "You write short answers.",
      prompt_template: "Write about {{ input }}.",
      execute_config: { model: "fake-model", stream: true },
      transition: goto("publish"),
    },
    { id: "publish", handler: "noop", transition: goto("end") },
  ]);
  browser = await launchBrowser();
  ({ page, problems } = await openPage(browser, server.url));
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await model?.close();
});

describe("web run inspector (sqlite)", () => {
  const ids: Record<string, string> = {};

  test("the runs list shows runs in every state and filters by status", async () => {
    ids.succeeded = (await startRun(clients, "greet", "the world", { team: "docs" })).id;
    ids.failed = (await startRun(clients, "boom", "friday", { team: "ops" })).id;
    ids.cancelled = (await startRun(clients, "approve", "v0.9")).id;
    ids.waiting = (await startRun(clients, "approve", "v1.0", { team: "release" })).id;
    ids.paused = (await startRun(clients, "hold", "batch 7")).id;
    ids.running = (await startRun(clients, "hang", "forever")).id;
    ids.queued = (await startRun(clients, "hold", "batch 8")).id;
    await waitForRun(clients, ids.succeeded, hasStatus(RunStatus.SUCCEEDED), "succeeded");
    await waitForRun(clients, ids.failed, hasStatus(RunStatus.FAILED), "failed");
    await waitForRun(clients, ids.cancelled, hasStatus(RunStatus.WAITING_INPUT), "waiting");
    await clients.runs.cancelRun({ id: ids.cancelled, reason: "superseded" });
    await waitForRun(clients, ids.waiting, hasStatus(RunStatus.WAITING_INPUT), "waiting");
    await waitForRun(clients, ids.running, hasStatus(RunStatus.RUNNING), "running");
    await clients.runs.pauseRun({ id: ids.paused });
    await waitForRun(clients, ids.paused, hasStatus(RunStatus.PAUSED), "paused");

    await page.goto(`${server.url}/#/runs`);
    await page.waitForSelector(`tr[data-run="${ids.paused}"][data-status="paused"]`, { timeout: 10_000 });
    const rows = new Map(await listedRuns(page));
    assert.equal(rows.get(ids.succeeded), "succeeded");
    assert.equal(rows.get(ids.failed), "failed");
    assert.equal(rows.get(ids.cancelled), "cancelled");
    assert.equal(rows.get(ids.waiting), "waiting_input");
    assert.equal(rows.get(ids.paused), "paused");
    assert.equal(rows.get(ids.running), "running");
    assert.equal(rows.get(ids.queued), "queued");
    await screenshot(page, "runs");

    // The status filter asks the server for failed runs only.
    await page.click("label.chip:has(input[name=status-failed])");
    await page.waitForFunction(
      () => {
        const rows = [...document.querySelectorAll("table.runs tbody tr")];
        return rows.length > 0 && rows.every((r) => r.getAttribute("data-status") === "failed");
      },
      { timeout: 5_000 },
    );
    assert.deepEqual(await listedRuns(page), [[ids.failed, "failed"]]);
    // The filter is in the address: a reload keeps it.
    assert.match(page.url(), /#\/runs\?status=failed$/);
    await page.reload();
    await page.waitForSelector(`tr[data-run="${ids.failed}"]`);
    assert.deepEqual(await listedRuns(page), [[ids.failed, "failed"]]);
    await page.click("label.chip:has(input[name=status-failed])");
    await page.waitForFunction(() => document.querySelectorAll("table.runs tbody tr").length >= 7, { timeout: 5_000 });

    // Live status: a run resumed elsewhere shows its new status on the next poll.
    await clients.runs.resumeRun({ id: ids.paused });
    await page.waitForSelector(`tr[data-run="${ids.paused}"]:not([data-status="paused"])`, { timeout: 6_000 });
    await clients.runs.pauseRun({ id: ids.paused });
  });

  test("a run page shows the graph with the path taken, the timeline and the outputs", async () => {
    await navigate(page, `#/runs/${ids.failed}`, 'section.run[data-ready="true"]');
    // Both tasks ran; the failure is on the second.
    assert.equal(await page.$eval('g.node[data-task="check"]', (g) => g.getAttribute("data-ran")), "true");
    assert.ok(await page.$('g.node.failed[data-task="explode"]'));
    assert.ok(await page.$("path.edge.taken"), "the transition taken is drawn");
    const timeline = await page.$$eval("table.attempts tr", (rows) => rows.map((r) => r.getAttribute("data-task")));
    assert.deepEqual(timeline, ["check", "explode"]);
    const error = await page.$eval(".run-error", (e) => e.textContent ?? "");
    assert.match(error, /it broke on friday/);

    await navigate(page, `#/runs/${ids.succeeded}`, 'section.run[data-ready="true"]');
    assert.equal(await page.$eval('g.node[data-task="bye"]', (g) => g.getAttribute("data-ran")), "true");
    assert.equal(await page.$eval('g.node[data-task="end"]', (g) => g.classList.contains("ran")), true);
    assert.match(await page.$eval(".run-output", (e) => e.textContent ?? ""), /the world/);
    const events = await page.$$eval(".event .etype", (es) => es.map((e) => e.textContent));
    assert.ok(events.includes("run_succeeded"), `events: ${events.join(",")}`);
    assert.ok(events.includes("message"), "the print message is listed");
  });

  test("the timeline shows every attempt of a task retried", async () => {
    await createChain(clients, "flaky", [
      {
        id: "call",
        handler: "raw_string",
        prompt_template: "FAIL {{ input }}",
        execute_config: { model: "fake-model" },
        retry: { max_attempts: 3, initial_delay: "50ms" },
        transition: goto("end"),
      },
    ]);
    const run = await startRun(clients, "flaky", "now");
    await waitForRun(clients, run.id, hasStatus(RunStatus.FAILED), "failed");
    await navigate(page, `#/runs/${run.id}`, 'section.run[data-ready="true"]');
    const rows = await page.$$eval("table.attempts tr", (trs) =>
      trs.map((r) => [r.getAttribute("data-task"), r.getAttribute("data-attempt"), r.getAttribute("data-status")]),
    );
    assert.deepEqual(rows, [
      ["call", "1", "failed"],
      ["call", "2", "failed"],
      ["call", "3", "failed"],
    ]);
    assert.deepEqual(
      await page.$$eval("table.attempts .retry", (es) => es.map((e) => e.textContent)),
      ["retry #1", "retry #2"],
    );
    const events = await page.$$eval(".event .etype", (es) => es.map((e) => e.textContent));
    assert.equal(events.filter((t) => t === "task_retry_scheduled").length, 2, events.join(","));
  });

  test("live tokens appear while the model streams, then its output", async () => {
    const run = await startRun(clients, "talk", "durable runs");
    await navigate(page, `#/runs/${run.id}`, "section.run");
    // Part of the answer is on the page while the model is still answering.
    await page.waitForFunction(() => /token3 /.test(document.querySelector("pre.stream")?.textContent ?? ""), {
      timeout: 15_000,
    });
    const partial = await page.$eval("pre.stream", (e) => e.textContent ?? "");
    assert.ok(!partial.includes("token29"), "the stream was seen before the answer was complete");
    assert.equal((await clients.runs.getRun({ id: run.id })).status, RunStatus.RUNNING);
    await page.waitForFunction(() => /token12 /.test(document.querySelector("pre.stream")?.textContent ?? ""), {
      timeout: 10_000,
    });
    await screenshot(page, "run-detail");
    await page.waitForSelector('section.run[data-status="succeeded"]', { timeout: 20_000 });
    await page.waitForFunction(
      () => /token29/.test(document.querySelector('details.task[data-task="draft"] .output')?.textContent ?? ""),
      { timeout: 5_000 },
    );
    const summary = await page.$eval('details.task[data-task="draft"] summary', (e) => e.textContent ?? "");
    assert.match(summary, /7 in \/ 30 out/, summary);
    // The prompt as rendered for this run, and what the task was given.
    const draft = await page.$eval('details.task[data-task="draft"]', (e) => e.textContent ?? "");
    assert.match(draft, /rendered prompt\s*Write about durable runs\./i, draft);
    assert.match(draft, /input \(text\)\s*durable runs/i, draft);
  });

  test("answering a human input from the approvals page completes the run", async () => {
    const other = await startRun(clients, "approve", "v1.1-rc");
    await waitForRun(clients, other.id, hasStatus(RunStatus.WAITING_INPUT), "waiting");
    await navigate(page, "#/approvals", `.approval[data-run="${other.id}"]`);
    await page.waitForSelector(`.approval[data-run="${ids.waiting}"]`);
    assert.match(await page.$eval(`.approval[data-run="${ids.waiting}"] .prompt`, (e) => e.textContent ?? ""), /Ship v1.0\?/);
    await screenshot(page, "approvals");
    await page.type(`.approval[data-run="${ids.waiting}"] textarea[name=answer]`, "yes, ship it");
    await page.click(`.approval[data-run="${ids.waiting}"] button[name=submit-answer]`);
    const done = await waitForRun(clients, ids.waiting, hasStatus(RunStatus.SUCCEEDED), "succeeded");
    assert.match(JSON.stringify(done.output?.kind.value ?? ""), /yes, ship it/);
    await page.waitForFunction((id) => !document.querySelector(`.approval[data-run="${id}"]`), { timeout: 6_000 }, ids.waiting);
  });

  test("answering from the run page and cancelling from the UI", async () => {
    const waiting = await startRun(clients, "approve", "v2.0");
    await waitForRun(clients, waiting.id, hasStatus(RunStatus.WAITING_INPUT), "waiting");
    await navigate(page, `#/runs/${waiting.id}`, 'section.run[data-status="waiting_input"] form.answer');
    await page.type("form.answer textarea[name=answer]", "approved");
    await page.click("form.answer button[name=submit-answer]");
    await page.waitForSelector('section.run[data-status="succeeded"]', { timeout: 10_000 });

    await navigate(page, `#/runs/${ids.running}`, 'section.run[data-status="running"] button[name=cancel]');
    page.once("dialog", (dialog) => void dialog.accept());
    await page.click("button[name=cancel]");
    await page.waitForSelector('section.run[data-status="cancelled"]', { timeout: 10_000 });
    assert.equal((await clients.runs.getRun({ id: ids.running })).status, RunStatus.CANCELLED);

    // Replay shows the fingerprint of the recorded path.
    await navigate(page, `#/runs/${ids.succeeded}`, 'section.run[data-ready="true"]');
    await page.click("button[name=replay]");
    await page.waitForSelector(".replay .fingerprint");
    assert.match(await page.$eval(".replay .fingerprint", (e) => e.textContent ?? ""), /^[0-9a-f]{64}$/);
    assert.ok(await page.$(".replay.same"));
  });

  test("chains: versions, a diff, and a draft validated", async () => {
    await updateChain(clients, "approve", [
      { id: "ask", handler: "human_input", prompt_template: "Ship {{ input }} to production?", transition: goto("done") },
      { id: "done", handler: "noop", print: "shipped", transition: goto("end") },
    ]);
    await navigate(page, "#/chains/approve", '.diff[data-from="1"][data-to="2"]');
    const diff = await page.$eval(".diff pre", (e) => e.textContent ?? "");
    assert.match(diff, /^- .*Ship \{\{ input \}\}\?/m);
    assert.match(diff, /^\+ .*to production/m);
    await page.evaluate(() => window.scrollTo(0, 0));
    await screenshot(page, "chains");
    await page.$eval("textarea[name=draft]", (e) => {
      (e as HTMLTextAreaElement).value = "";
    });
    await page.type("textarea[name=draft]", '{"id": "bad", "tasks": [{"id": "x", "handler": "no_such_handler"}]}');
    await page.click("button[name=validate]");
    await page.waitForSelector('.violations[data-valid="false"] li');
    assert.match(await page.$eval(".violations", (e) => e.textContent ?? ""), /UNKNOWN_HANDLER/);
  });

  test("workers and queues, and backends", async () => {
    await startRun(clients, "hold", "batch 9");
    await navigate(page, "#/workers", 'tr[data-queue="ui-nobody"]');
    await screenshot(page, "workers");
    await navigate(page, "#/backends", 'tr[data-backend="fake-openai"]');
    await page.click('tr[data-backend="fake-openai"] button[name=sync]');
    await page.waitForSelector('tr[data-backend="fake-openai"] [data-health="healthy"]', { timeout: 10_000 });
    await screenshot(page, "backends");
  });

  test("a run with 1,000 events renders in under a second", async () => {
    // A loop of noop tasks: four events a step, until max_steps fails it.
    await createChain(clients, "loop", [{ id: "tick", handler: "noop", transition: goto("tick") }], { max_steps: 250 });
    const run = await startRun(clients, "loop", "spin");
    const ended = await waitForRun(clients, run.id, hasStatus(RunStatus.FAILED), "failed", 60_000);
    assert.ok(ended.lastEventSeq >= 1000n, `only ${ended.lastEventSeq} events`);
    await navigate(page, "#/runs", "table.runs");
    // Once to warm the page's code paths, then measured.
    await navigate(page, `#/runs/${run.id}`, 'section.run[data-ready="true"]');
    await navigate(page, "#/runs", "table.runs");
    const ms = await navigate(page, `#/runs/${run.id}`, 'section.run[data-ready="true"]', 5_000);
    const count = await page.$eval("[data-count]", (e) => Number(e.getAttribute("data-count")));
    assert.equal(BigInt(count), ended.lastEventSeq);
    console.log(`run page with ${count} events rendered in ${ms.toFixed(0)} ms`);
    assert.ok(ms < 1000, `the run page took ${ms.toFixed(0)} ms`);
  });

  test("a missing run's page says NOT_FOUND and stops asking", async () => {
    const watches: string[] = [];
    const seen = (request: HTTPRequest): void => {
      if (request.url().endsWith("/taskloom.v1.RunService/WatchRun")) watches.push(request.url());
    };
    page.on("request", seen);
    try {
      await navigate(page, "#/runs/01900000-0000-7000-8000-000000000000", '.error[data-code="NOT_FOUND"]');
      // A watch that failed for good is not retried (retries come every 2 s).
      await new Promise((resolve) => setTimeout(resolve, 4_500));
    } finally {
      page.off("request", seen);
    }
    assert.equal(watches.length, 1, `${watches.length} WatchRun calls`);
  });

  test("the page made no request to another origin and threw nothing", () => {
    assert.deepEqual(problems, []);
  });
});
