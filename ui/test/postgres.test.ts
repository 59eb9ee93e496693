// The inspector on a PostgreSQL store (TASKLOOM_UI_PG_URL, a database of
// its own; skipped without it): runs listed, a run page rendered, a human
// input answered from the UI.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser } from "puppeteer-core";
import { RunStatus } from "../src/gen/taskloom/v1/run_pb.js";
import { createChain, goto, hasStatus, launchBrowser, navigate, openPage, startRun, TestServer, waitForRun } from "./harness.js";

const url = process.env.TASKLOOM_UI_PG_URL;

describe("web run inspector (postgres)", { skip: url ? false : "TASKLOOM_UI_PG_URL is not set" }, () => {
  let server: TestServer;
  let browser: Browser;

  before(async () => {
    server = await TestServer.start({ databaseUrl: url });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test("lists runs, shows one, answers its input", async () => {
    const clients = server.clients();
    await createChain(clients, "pg-greet", [{ id: "hello", handler: "noop", transition: goto("end") }]);
    await createChain(clients, "pg-approve", [
      { id: "ask", handler: "human_input", prompt_template: "Go {{ input }}?", transition: goto("done") },
      { id: "done", handler: "noop", transition: goto("end") },
    ]);
    const done = await startRun(clients, "pg-greet", "pg");
    const waiting = await startRun(clients, "pg-approve", "pg");
    await waitForRun(clients, done.id, hasStatus(RunStatus.SUCCEEDED), "succeeded");
    await waitForRun(clients, waiting.id, hasStatus(RunStatus.WAITING_INPUT), "waiting");

    const { page, problems } = await openPage(browser, server.url);
    await page.goto(`${server.url}/#/runs`);
    await page.waitForSelector(`tr[data-run="${done.id}"][data-status="succeeded"]`, { timeout: 10_000 });
    await page.waitForSelector(`tr[data-run="${waiting.id}"][data-status="waiting_input"]`);
    await navigate(page, `#/runs/${waiting.id}`, 'section.run[data-ready="true"] form.answer');
    assert.equal(await page.$eval('g.node[data-task="ask"]', (g) => g.getAttribute("data-ran")), "true");
    await page.type("form.answer textarea[name=answer]", "yes");
    await page.click("form.answer button[name=submit-answer]");
    await page.waitForSelector('section.run[data-status="succeeded"]', { timeout: 10_000 });
    assert.equal((await clients.runs.getRun({ id: waiting.id })).status, RunStatus.SUCCEEDED);
    assert.deepEqual(problems, []);
  });
});
