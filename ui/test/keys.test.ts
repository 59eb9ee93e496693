// With API keys configured, the UI asks for one (UNAUTHENTICATED shown with
// its code), works once it is entered, and keeps it for the tab only.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Browser } from "puppeteer-core";
import { createChain, goto, launchBrowser, openPage, startRun, TestServer } from "./harness.js";

let server: TestServer;
let browser: Browser;

before(async () => {
  server = await TestServer.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe("API keys in the UI", () => {
  test("asks for a key, then works with it", async () => {
    // The first key, created in open mode, closes the server.
    const created = await server.clients().keys.createApiKey({ name: "ui test", role: "admin" });
    const clients = server.clients(created.secret);
    await createChain(clients, "keyed", [{ id: "only", handler: "noop", transition: goto("end") }]);
    const run = await startRun(clients, "keyed");

    const { page, problems } = await openPage(browser, server.url);
    await page.goto(`${server.url}/#/runs`);
    await page.waitForSelector('.error[data-code="UNAUTHENTICATED"]', { timeout: 10_000 });
    // The key box opens by itself.
    await page.waitForSelector("form.settings input[name=api-key]");
    await page.type("form.settings input[name=api-key]", "tlk_wrong");
    await page.click("form.settings button[type=submit]");
    await page.waitForSelector('.error[data-code="UNAUTHENTICATED"]', { timeout: 10_000 });

    await page.waitForSelector("form.settings input[name=api-key]");
    await page.$eval("form.settings input[name=api-key]", (e) => {
      (e as HTMLInputElement).value = "";
    });
    await page.type("form.settings input[name=api-key]", created.secret);
    await page.click("form.settings button[type=submit]");
    await page.waitForSelector(`tr[data-run="${run.id}"]`, { timeout: 10_000 });
    assert.equal(await page.$(".error"), null);
    assert.equal(await page.evaluate(() => sessionStorage.getItem("taskloom.apiKey")), created.secret);

    // Kept across reloads of the tab, and sent on the run page's stream too.
    await page.reload();
    await page.waitForSelector(`tr[data-run="${run.id}"]`, { timeout: 10_000 });
    await page.click(`tr[data-run="${run.id}"] a`);
    await page.waitForSelector('section.run[data-ready="true"][data-status="succeeded"]', { timeout: 10_000 });

    // The namespace picker lists the namespaces; picking one shows its runs.
    await clients.namespaces.createNamespace({ name: "team-a" });
    const teamA = server.clients(created.secret, "team-a");
    await createChain(teamA, "keyed", [{ id: "only", handler: "noop", transition: goto("end") }]);
    const teamRun = await startRun(teamA, "keyed");
    await page.goto(`${server.url}/#/runs`);
    await page.reload();
    await page.waitForSelector('select[name=namespace-picker] option[value="team-a"]', { timeout: 10_000 });
    await page.select("select[name=namespace-picker]", "team-a");
    await page.waitForSelector(`tr[data-run="${teamRun.id}"]`, { timeout: 10_000 });
    assert.equal(await page.$(`tr[data-run="${run.id}"]`), null, "the default namespace's run is not listed");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("taskloom.namespace")), "team-a");
    await page.select("select[name=namespace-picker]", "default");
    await page.waitForSelector(`tr[data-run="${run.id}"]`, { timeout: 10_000 });

    // A namespace that does not exist is refused with the server's code.
    await page.click("header button.key");
    await page.type("form.settings input[name=namespace]", "Bad_Namespace");
    await page.click("form.settings button[type=submit]");
    await page.waitForSelector('.error[data-code="INVALID_ARGUMENT"]', { timeout: 10_000 });
    assert.deepEqual(problems, []);
  });
});
