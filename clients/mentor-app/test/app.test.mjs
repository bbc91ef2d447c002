// The mentor app in a real browser (headless Debian Chromium, phone viewport) against a real
// `vivirk serve`: log in, a check-in online, another offline ("waiting to send"), back online,
// and the caseworker sees exactly two check-ins; then an agreed action marked done.
// Screenshots go to a temp dir; `npm run screenshots` writes them to mentor-app/screenshots/.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { checkInEvents, startServer, world, PASSWORD } from "../../test-support/server.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = process.env.SCREENSHOTS_DIR ?? mkdtempSync(join(tmpdir(), "vivirk-shots-"));
mkdirSync(SHOTS, { recursive: true });

let server, w, profile, context;
before(async () => {
  server = await startServer();
  w = await world(server);
  profile = mkdtempSync(join(tmpdir(), "vivirk-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
    locale: "en-GB",
  });
});
after(async () => {
  await context?.close();
  await server?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

/** Taps a choice's big label (the radio itself is visually hidden) and checks it took. */
async function pick(page, name, value) {
  await page.locator(`label[for="${name}-${value}"]`).click();
  assert.equal(await page.locator(`#${name}-${value}`).isChecked(), true);
}

const checkInsInHistory = async () => {
  const history = await w.api.get(w.caseworker.token, `/v1/courses/${w.course}/contacts?limit=50`);
  return history.items.filter((i) => i.kind === "check_in");
};

test("serves the app with content types, cache headers and a CSP", async () => {
  const root = await fetch(`${server.baseUrl}/app`, { redirect: "manual" });
  assert.equal(root.status, 308);
  assert.equal(root.headers.get("location"), "/app/");
  const expected = {
    "/app/": "text/html; charset=utf-8",
    "/app/app.js": "text/javascript; charset=utf-8",
    "/app/outbox.js": "text/javascript; charset=utf-8",
    "/app/sw.js": "text/javascript; charset=utf-8",
    "/app/app.css": "text/css; charset=utf-8",
    "/app/manifest.webmanifest": "application/manifest+json",
    "/app/icon.svg": "image/svg+xml",
  };
  for (const [path, type] of Object.entries(expected)) {
    const res = await fetch(server.baseUrl + path);
    assert.equal(res.status, 200, path);
    assert.equal(res.headers.get("content-type"), type, path);
    assert.equal(res.headers.get("cache-control"), "no-cache", path);
    assert.match(res.headers.get("content-security-policy"), /script-src 'self'/, path);
    const again = await fetch(server.baseUrl + path, { headers: { "if-none-match": res.headers.get("etag") } });
    assert.equal(again.status, 304, path);
  }
  const missing = await fetch(`${server.baseUrl}/app/secrets.txt`);
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).code, "not_found");
});

test("a mentor logs check-ins online and offline; both reach the caseworker exactly once", async () => {
  const page = context.pages()[0] ?? (await context.newPage());
  await page.goto(`${server.baseUrl}/app/`);
  await page.getByRole("heading", { name: "Log ind" }).waitFor();
  await page.getByRole("button", { name: "English" }).click(); // the language toggle
  await page.getByRole("heading", { name: "Log in" }).waitFor();
  await page.getByLabel("Username").fill("mentor.kim");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.screenshot({ path: join(SHOTS, "1-login.png") });
  await page.getByRole("button", { name: "Log in" }).click();

  // My young people: the course, its next agreed action and the contact status.
  await page.getByRole("heading", { name: "My young people" }).waitFor();
  await page.getByText("Visit the workplace together").first().waitFor();
  await page.getByText("Jobafklaringsforløb · Aarhus Kommune").waitFor();
  await page.getByText(/Contact/).first().waitFor();
  await page.screenshot({ path: join(SHOTS, "2-my-young-people.png") });

  // A check-in online.
  await page.getByRole("button", { name: "Log a check-in" }).click();
  await pick(page, "attendance", "present");
  await pick(page, "wellbeing", 4);
  await page.getByLabel("Tasks done (one per line)").fill("stocked shelf 4\nunpacked the delivery");
  await page.getByLabel("Next step").fill("try the till on Thursday");
  await page.screenshot({ path: join(SHOTS, "3-check-in.png"), fullPage: true });
  await page.getByRole("button", { name: "Save check-in" }).click();
  await page.getByText("Sent.").waitFor();
  assert.equal((await checkInsInHistory()).length, 1);

  // Offline: the second check-in waits on the phone.
  await context.setOffline(true);
  await page.getByText("Offline", { exact: true }).waitFor();
  await page.getByRole("button", { name: "Log a check-in" }).click();
  await pick(page, "attendance", "late");
  await pick(page, "wellbeing", 2);
  await page.getByLabel("Concerns").fill("tired, left early");
  await page.getByRole("button", { name: "Save check-in" }).click();
  await page.getByText("Saved on this phone – waiting to send.").waitFor();
  await page.getByText("Waiting to send: 1").waitFor();
  await page.screenshot({ path: join(SHOTS, "4-waiting-to-send.png") });
  assert.equal((await checkInsInHistory()).length, 1, "nothing sent while offline");

  // Back online: the outbox sends it by itself.
  await context.setOffline(false);
  await page.locator("#waiting").waitFor({ state: "detached", timeout: 20_000 });
  const checkIns = await checkInsInHistory();
  assert.equal(checkIns.length, 2, "exactly two check-ins in the contact history");
  assert.deepEqual(checkIns.map((c) => [c.attendance, c.wellbeing]), [["late", 2], ["present", 4]]);
  assert.equal((await checkInEvents(w)).length, 2, "exactly two CheckInLogged events");

  // The agreed actions: mark one done.
  await page.getByRole("button", { name: "Agreed actions" }).click();
  await page.getByRole("heading", { name: "Agreed actions" }).waitFor();
  await page.screenshot({ path: join(SHOTS, "5-actions.png") });
  await page.getByRole("button", { name: "Mark as done" }).click();
  await page.getByText("No open actions.").waitFor();
  const actions = await w.api.get(w.caseworker.token, `/v1/courses/${w.course}/actions`);
  const action = actions.find((a) => a.action_id === w.action);
  assert.ok(!action || action.outcome !== "open", `the action is closed: ${action?.outcome}`);
});
