// The TypeScript client against a real `vivirk serve`: login, a typed check-in, token refresh,
// the offline outbox across outages with lost responses, and delta sync.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createVivirk, MemoryStorage, memoryTokens, Outbox, httpSender } from "../dist/index.js";
import { checkInEvents, startServer, world, PASSWORD } from "../../test-support/server.mjs";

/** A fetch that can be switched off (`down`: fails before sending) or made to lose answers
 * (`lost`: the server gets the request and acts on it, the client never sees the response). */
function flakyFetch() {
  const net = { mode: "up", requests: 0 };
  net.fetch = async (request) => {
    if (net.mode === "down") throw new TypeError("fetch failed (simulated: no network)");
    net.requests += 1;
    const res = await fetch(request);
    if (net.mode === "lost") {
      await res.arrayBuffer();
      throw new TypeError("fetch failed (simulated: response lost)");
    }
    return res;
  };
  return net;
}

const checkIn = (w, extra = {}) => ({
  placement_id: w.placement, attendance: "present", wellbeing: 4, tasks_done: ["stocked shelf 4"],
  concerns: null, next_step: "try the till on Thursday", ...extra,
});

let server;
let w;
before(async () => {
  server = await startServer();
  w = await world(server);
});
after(() => server?.stop());

describe("client", () => {
  test("logs in and logs a typed check-in", async () => {
    const v = createVivirk({ baseUrl: server.baseUrl });
    await v.login("mentor.kim", PASSWORD);
    const before = (await checkInEvents(w)).length;
    const { data, error, response } = await v.api.POST("/v1/courses/{id}/check-ins", {
      params: { path: { id: w.course } },
      body: checkIn(w),
    });
    assert.equal(error, undefined);
    assert.equal(response.status, 201);
    assert.ok(data.event_id);
    assert.equal((await checkInEvents(w)).length, before + 1);
    const mine = await v.api.GET("/v1/me/courses");
    assert.deepEqual(mine.data.map((c) => c.course_id), [w.course]);
  });

  test("refreshes an invalid access token once and retries", async () => {
    const tokens = memoryTokens();
    let refreshes = 0;
    const counting = (request) => {
      if (request.url.endsWith("/v1/auth/refresh")) refreshes += 1;
      return fetch(request);
    };
    const v = createVivirk({ baseUrl: server.baseUrl, tokens, fetch: counting });
    await v.login("mentor.kim", PASSWORD);
    tokens.set({ ...tokens.get(), access_token: "expired.or.garbage" });
    const [a, b] = await Promise.all([v.api.GET("/v1/me/courses"), v.api.GET("/v1/me/actions")]);
    assert.equal(a.response.status, 200);
    assert.equal(b.response.status, 200);
    assert.equal(refreshes, 1, "concurrent 401s share one refresh");
    assert.notEqual(tokens.get().access_token, "expired.or.garbage");

    // A refused refresh token logs out: the 401 comes through, no loop.
    let loggedOut = false;
    const dead = createVivirk({
      baseUrl: server.baseUrl,
      tokens: memoryTokens({ access_token: "garbage", refresh_token: "not-a-refresh-token" }),
      onLoggedOut: () => (loggedOut = true),
    });
    const r = await dead.api.GET("/v1/me/courses");
    assert.equal(r.response.status, 401);
    assert.equal(loggedOut, true);
    assert.equal(dead.tokens.get(), null);
  });
});

describe("outbox", () => {
  test("no duplicated check-in after an outage with lost responses", async () => {
    const net = flakyFetch();
    const v = createVivirk({ baseUrl: server.baseUrl, fetch: net.fetch });
    await v.login("mentor.kim", PASSWORD);
    const before = await checkInEvents(w);

    net.mode = "down";
    const queued = v.outbox.enqueue(`/v1/courses/${w.course}/check-ins`, checkIn(w, { wellbeing: 2 }));
    assert.match(queued.key, /^[0-9a-f-]{36}$/);
    assert.match(queued.body.event_id, /^[0-9a-f-]{36}$/);
    let r = await v.outbox.flush();
    assert.deepEqual(r, { sent: 0, rejected: 0, pending: 1, stopped: "network" });
    assert.equal((await checkInEvents(w)).length, before.length, "nothing reached the server");

    // The connection comes back but answers get lost, twice: the server acts each time.
    net.mode = "lost";
    for (let i = 0; i < 2; i++) {
      r = await v.outbox.flush();
      assert.equal(r.stopped, "network");
      assert.equal(r.pending, 1, "still queued: the client cannot know it arrived");
    }
    net.mode = "up";
    r = await v.outbox.flush();
    assert.deepEqual(r, { sent: 1, rejected: 0, pending: 0, stopped: null });
    assert.equal(net.requests, 4, "login + three sends of the same write");

    const added = (await checkInEvents(w)).filter((e) => !before.some((b) => b.event_id === e.event_id));
    assert.equal(added.length, 1, "exactly one CheckInLogged for three deliveries");
    assert.equal(added[0].event_id, queued.body.event_id, "stored under the client's event id");
    assert.equal(added[0].data.wellbeing, 2);
  });

  test("persists the queue and replays it in order after a restart; refusals do not block", async () => {
    const storage = new MemoryStorage();
    const net = flakyFetch();
    const v = createVivirk({ baseUrl: server.baseUrl, fetch: net.fetch, outboxStorage: storage });
    await v.login("mentor.kim", PASSWORD);
    const before = await checkInEvents(w);
    net.mode = "down";
    const path = `/v1/courses/${w.course}/check-ins`;
    const first = v.outbox.enqueue(path, checkIn(w, { wellbeing: 1, occurred_at: new Date(Date.now() - 3600e3).toISOString() }));
    const bad = v.outbox.enqueue(path, checkIn(w, { wellbeing: 9 }));
    const last = v.outbox.enqueue(path, checkIn(w, { wellbeing: 5 }));
    await v.outbox.flush();

    // The app restarts with the same storage and the network back.
    net.mode = "up";
    const again = new Outbox({ storage, send: httpSender(server.baseUrl, v.fetch) });
    assert.deepEqual(again.pending.map((q) => q.key), [first.key, bad.key, last.key]);
    const r = await again.flush();
    assert.deepEqual(r, { sent: 2, rejected: 1, pending: 0, stopped: null });
    assert.equal(again.rejected[0].key, bad.key);
    assert.ok([400, 422].includes(again.rejected[0].status), `refused: ${again.rejected[0].status}`);

    const added = (await checkInEvents(w)).filter((e) => !before.some((b) => b.event_id === e.event_id));
    assert.deepEqual(added.map((e) => e.event_id), [first.body.event_id, last.body.event_id], "in queue order");
    assert.equal(added[0].occurred_at.slice(0, 16), first.body.occurred_at.slice(0, 16), "when it happened, not when sent");
  });
});

describe("sync", () => {
  test("delta sync returns only what is new after a position", async () => {
    const v = createVivirk({ baseUrl: server.baseUrl });
    await v.login("mentor.kim", PASSWORD);
    const all = await v.syncAll(0, 3); // small pages: follows `more`
    assert.ok(all.events.some((e) => e.event_type === "CourseOpened"));
    const positions = all.events.map((e) => e.position);
    assert.deepEqual(positions, [...positions].sort((a, b) => a - b), "in log order");
    assert.equal(new Set(positions).size, positions.length, "no repeats across pages");

    const empty = await v.syncAll(all.next);
    assert.deepEqual(empty.events, []);

    v.outbox.enqueue(`/v1/courses/${w.course}/check-ins`, checkIn(w, { attendance: "late", wellbeing: 3 }));
    await v.outbox.flush();
    const delta = await v.syncAll(all.next);
    assert.deepEqual(delta.events.map((e) => e.event_type), ["CheckInLogged"]);
    assert.equal(delta.events[0].data.attendance, "late");
    assert.ok(delta.next > all.next);
  });
});
