// Usage: node check.mjs BASE_URL PEER_ID LAYERS SHOT_DIR
// Opens a node's status page in headless Chromium (/usr/bin/chromium, or
// $CHROMIUM) and checks it: the page shows the node's peer ID and the span
// LAYERS ("A:B") it serves, draws its swarm map, pauses and resumes with
// the node (POST /api/v0/pause from outside, the page's Resume button),
// says so when a part of the API fails, and fits a narrow window. It saves
// screenshots in SHOT_DIR and prints one JSON object with what it saw;
// any failed check ends it with an error.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, peerID, layers, shots] = process.argv.slice(2);
if (!base || !peerID || !layers || !shots) {
  console.error("usage: node check.mjs BASE_URL PEER_ID LAYERS SHOT_DIR");
  process.exit(2);
}
const origin = new URL(base).origin;
const profile = mkdtempSync(join(tmpdir(), "mycel-statuspage-"));
const out = { shots: [] };
const problems = [];

const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 900 },
});
try {
  const page = ctx.pages()[0] || (await ctx.newPage());
  page.setDefaultTimeout(15000);
  let expectFailures = false;
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (u.origin !== origin && u.protocol !== "data:") problems.push("a request outside the node: " + r.url());
  });
  page.on("pageerror", (e) => problems.push("script error: " + e.message));
  page.on("console", (m) => {
    if (m.type() === "error" && !expectFailures) problems.push("console error: " + m.text());
  });

  const shot = async (name, fullPage = true) => {
    const path = join(shots, name + ".png");
    await page.screenshot({ path, fullPage });
    out.shots.push(path);
  };
  const text = (sel) => page.locator(sel).first().textContent();
  const waitText = async (sel, want, timeout) => {
    const t0 = Date.now();
    await page.waitForFunction(([sel, want]) => {
      const el = document.querySelector(sel);
      return el && el.textContent.trim() === want;
    }, [sel, want], { timeout });
    return (Date.now() - t0) / 1000;
  };

  const t0 = Date.now();
  const resp = await page.goto(base + "/");
  out.status = resp.status();
  out.contentType = resp.headers()["content-type"];
  await waitText("#peer-id", peerID);
  out.loadSeconds = (Date.now() - t0) / 1000;
  out.shortID = (await text("#short-id")).trim();

  // The span served, and its swarm map: a bar per layer.
  await page.waitForSelector(`#sec-serving .span-layers:text-is("layers ${layers}")`);
  out.spans = await page.locator("#sec-serving .span-layers").allTextContents();
  await page.waitForSelector("#sec-swarm svg.swarm rect.bar");
  out.swarmBars = await page.locator("#sec-swarm svg.swarm rect.bar").count();
  out.swarmTitle = (await text("#sec-swarm .title")).trim();
  // The credit card: the node's ledger, empty here, then a ledger's
  // totals as the API gives them.
  await waitText("#credit-served", "0", 8000);
  await page.route("**/api/v0/credit", (route) => route.fulfill({ contentType: "application/json", body: JSON.stringify({
    id: peerID, served_tokens: 1234, served_countersigned: 1200, used_tokens: 0, trained_examples: 48, trained_countersigned: 48,
    receipts: 3, rounds: 12, summaries: 0,
    rows: [{ day: "2026-12-06", kind: "served", peer: peerID, subject: "bafymodel", units: 1234, countersigned: 1200, receipts: 3 }] }) }));
  await waitText("#credit-served", "1234", 8000);
  out.creditServed = (await text("#credit-served")).trim();
  out.creditRows = await page.locator("#credit-rows tr").count() - 1;
  await page.unroute("**/api/v0/credit");
  await page.waitForSelector("#log li:not(.empty)");
  out.logLines = await page.locator("#log li").count();
  out.state = (await text("#state")).trim();
  if (out.state !== "working") problems.push("state at start: " + out.state);
  await page.waitForTimeout(2500); // rates over a few polls
  await shot("wide");

  // Paused from outside (as mycel node pause does): the page follows.
  let r = await fetch(base + "/api/v0/pause", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  if (!r.ok) throw new Error("POST /api/v0/pause: " + r.status + " " + (await r.text()));
  out.pauseSeconds = await waitText("#state", "paused", 5000);
  out.pausedReason = (await text("#reason")).trim();
  if (!out.pausedReason) problems.push("no reason shown while paused");
  out.resumeVisible = await page.locator("#resume").isVisible();
  await shot("paused", false);

  // Resumed from the page.
  await page.click("#resume");
  out.resumeSeconds = await waitText("#state", "working", 5000);
  r = await fetch(base + "/api/v0/status");
  out.nodeStateAfter = (await r.json()).state;
  out.pauseVisible = await page.locator("#pause").isVisible();

  // A part of the API that fails: that part says so, the rest goes on.
  expectFailures = true;
  await page.route("**/api/v0/logs?*", (route) =>
    route.fulfill({ status: 500, contentType: "application/json", body: JSON.stringify({ error: "the log is out of reach" }) }));
  await page.waitForFunction(() => document.querySelector("#sec-logs .err").textContent.includes("the log is out of reach"), null, { timeout: 8000 });
  out.partError = (await text("#sec-logs .err")).trim();
  out.othersAfterError = (await text("#peer-id")).trim() === peerID && (await page.locator("#sec-serving .span-item").count()) > 0 &&
    (await page.locator("#log li").count()) > 0;
  // A training job's loss curve, from answers given here (a job needs
  // a group of trainers): one point of the line per step reported.
  const job = { id: "job1", state: "training", method: "lora", model: "m", averaging: "diloco", peers: 2, step: 30, steps: 100, created: new Date().toISOString() };
  const loss = Array.from({ length: 30 }, (_, i) => [i + 1, 3 * Math.exp(-i / 10) + 0.5]);
  await page.route("**/api/v0/train/jobs", (route) => route.fulfill({ contentType: "application/json", body: JSON.stringify([job]) }));
  await page.route("**/api/v0/train/jobs/job1", (route) =>
    route.fulfill({ contentType: "application/json", body: JSON.stringify({ ...job, members: [], loss, tokens_per_second: 1234 }) }));
  await page.waitForSelector("#sec-train svg.loss polyline", { timeout: 8000 });
  out.lossPoints = await page.evaluate(() => document.querySelector("#sec-train svg.loss polyline").getAttribute("points").trim().split(/\s+/).length);
  await page.unroute("**/api/v0/train/jobs");
  await page.unroute("**/api/v0/train/jobs/job1");
  await page.locator("#sec-train").scrollIntoViewIfNeeded();
  await shot("failing", false);
  await page.unroute("**/api/v0/logs?*");
  await page.waitForFunction(() => document.querySelector("#sec-logs .err").textContent === "", null, { timeout: 8000 });
  expectFailures = false;

  // A narrow window: nothing wider than it.
  await page.setViewportSize({ width: 380, height: 800 });
  await page.waitForTimeout(500);
  out.narrowOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (out.narrowOverflow > 0) problems.push(`the page is ${out.narrowOverflow}px wider than a 380px window`);
  await shot("narrow");
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
out.problems = problems;
console.log(JSON.stringify(out));
if (problems.length) process.exit(1);
