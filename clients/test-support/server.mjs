// Starts a real `vivirk serve` on a free port with a temp data dir, and builds a course with a
// caseworker, a young person and a mentor on a placement (as tests/integration/api_journey.rs).
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const here = new URL(".", import.meta.url).pathname;
export const BINARY =
  process.env.VIVIRK_BIN ?? resolve(here, "../..", process.env.CARGO_TARGET_DIR ?? "target", "debug/vivirk");
export const PASSWORD = "correct-horse-battery-staple";

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
    s.on("error", fail);
  });
}

export async function startServer() {
  if (!existsSync(BINARY)) throw new Error(`no server binary at ${BINARY}: run \`cargo build\` (or set VIVIRK_BIN)`);
  const dataDir = mkdtempSync(join(tmpdir(), "vivirk-clients-"));
  const port = await freePort();
  const child = spawn(BINARY, ["serve", "--data-dir", dataDir, "--bind", `127.0.0.1:${port}`], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, VIVIRK_LOG: "warn" },
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  const baseUrl = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`vivirk exited (${child.exitCode}): ${stderr}`);
    const ok = await fetch(`${baseUrl}/readyz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (i > 300) throw new Error("vivirk did not become ready");
    await new Promise((r) => setTimeout(r, 100));
  }
  const adminPassword = readFileSync(join(dataDir, "initial-admin-password"), "utf8").trim();
  return {
    baseUrl,
    adminPassword,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A tiny JSON client for setting up and checking, independent of the client under test. */
export function http(baseUrl) {
  const call = async (method, token, path, body) => {
    const res = await fetch(baseUrl + path, {
      method,
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json().catch(() => null);
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${json?.code}`);
    return json;
  };
  return {
    get: (token, path) => call("GET", token, path),
    post: (token, path, body) => call("POST", token, path, body),
    token: async (username, password = PASSWORD) =>
      (await call("POST", null, "/v1/auth/token", { username, password })).access_token,
  };
}

/** Accounts, a course, a company, the mentor on a placement, an agreed action, a contact plan. */
export async function world(server) {
  const api = http(server.baseUrl);
  const admin = await api.token("admin", server.adminPassword);
  const account = async (username, role) => {
    const a = await api.post(admin, "/v1/accounts", { username, display_name: username, role, password: PASSWORD });
    return { id: a.account_id, username, token: await api.token(username) };
  };
  const caseworker = await account("cw.hansen", "caseworker");
  const young = await account("young.one", "young_person");
  const mentor = await account("mentor.kim", "mentor");
  const cw = caseworker.token;
  const company = (await api.post(cw, "/v1/companies", { name: "Brugsen Nord", industry: "retail", kind: "ordinary", cvr: null })).id;
  const course = (
    await api.post(cw, "/v1/courses", {
      young_person: young.id, programme: "jobafklaringsforloeb", referring_caseworker: caseworker.id,
      municipality: "Aarhus Kommune", start_date: "2026-09-01",
    })
  ).id;
  await api.post(cw, `/v1/courses/${course}/participants`, { account_id: mentor.id, role: "mentor", company_id: company, relation: null });
  const placement = (
    await api.post(cw, `/v1/courses/${course}/placements`, {
      kind: "practice_arena", company_id: company, workplace: "ordinary", mentor: mentor.id, hours_per_week: 12,
      tasks: [{ task: "stocking shelves", goal_ids: [] }], start_date: "2026-11-02",
    })
  ).id;
  const action = (
    await api.post(cw, `/v1/courses/${course}/actions`, {
      what: "Visit the workplace together", owner: mentor.id, due: "2030-12-05", agreed_by: [caseworker.id, mentor.id],
    })
  ).id;
  await api.post(cw, `/v1/courses/${course}/contact-plan`, { every_days: 7, by: [mentor.id], note: null });
  return { api, caseworker, young, mentor, company, course, placement, action };
}

/** The course's CheckInLogged events, read as the caseworker from the raw record. */
export async function checkInEvents(w) {
  const events = await w.api.get(w.caseworker.token, `/v1/courses/${w.course}/events`);
  return events.filter((e) => e.event_type === "CheckInLogged");
}
