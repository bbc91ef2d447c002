#!/usr/bin/env python3
r"""Soak test: a realistic mix of reads and durable writes at a fixed rate for a long time, while
the server's memory is sampled every second. Fails on any error or on memory growth >= 10 %.

    benches/soak.py --minutes 10        # the soak: release build, half the measured peak
    benches/soak.py --binary target/debug/vivirk --seconds 60 --rate 100 --courses 24 \
        --connections 16 --max-growth 50  # CI's short one (.ci/run)

What it does:
  1. starts `vivirk serve` (durable, access log on, default settings but the two below) on a
     temp data dir and a free loopback port;
  2. sets up COURSES courses the way the product is used: one caseworker per 40 courses, one
     mentor per 4, one company per 10, a young person per course; each course gets a contact
     plan, goals, a placement with its mentor, agreed actions and ten weeks of history
     (weekly check-ins, a caseworker contact every other week, dated in the past);
  3. measures the peak: the mix below, unpaced, at CONNECTIONS connections for --peak-seconds
     (skipped when --rate is given);
  4. runs the mix paced at RATE requests/s (default half the peak) for the duration, with wrk's
     Lua `delay()` hook holding the rate;
  5. samples the server's VmRSS and anonymous memory (/proc/PID/status, smaps_rollup), the
     log's head position and the allocator's bytes in use and kept free (/metrics) every second;
  6. stops the server gracefully, runs `vivirk verify` on the data dir and measures a fresh
     server on the data (below).

The mix (per 100 requests; 80 reads, 20 durable writes), each request by someone on the course;
writes carry a new client event_id and Idempotency-Key each, as the app's outbox sends them:
  25 contact-history page (GET /v1/courses/{id}/contacts?limit=20, caseworker or mentor)
  20 course status (GET /v1/courses/{id})          8 agreed actions (GET …/actions)
   5 contact frequency (GET …/contact-frequency)  12 my courses (GET /v1/me/courses)
  10 caseworker's contact worklist (GET /v1/me/contact-worklist)
  15 mentor check-in (POST …/check-ins)             5 contact logged (POST …/contacts)
Bodies are varied, in Danish and English, like the mentor app sends them.

Errors: any status other than 200/201, any socket error (connect, read, write) and any timeout
(wrk --timeout, 5 s) fails the run, as does an ERROR line or a panic in the server's log, a
non-zero exit of the server or a failed `vivirk verify`.

Memory growth: allocators and caches fill at start, so the baseline is not the first sample but
the RSS after the warm-up (the first 10 % of the run, at least 10 s; mean of the samples within
5 s of that point); the end is the mean of the last 10 samples. growth = end / baseline - 1, and
the run fails at 10 %. The server keeps the log index and the projections in memory, and its sled
stores keep per-page state for what they hold, so memory grows with the data; to tell that from
a leak the report gives the growth per 1,000 events appended in the same window, and what the
data alone costs: the RSS of a server started afresh on the data before and after the run.
--no-access-log and --reads-only take parts of the mix away, to see which part grows.

The server runs on a fresh start after the setup: creating accounts hashes passwords, which is
not part of the mix.

Tokens: access tokens last 15 minutes by default, so the server gets a config with a lifetime
covering the run (the mix does not refresh tokens) and a login rate limit that allows the
setup's logins from one address. Everything else is the default configuration.
Samples (CSV), wrk's output and a summary (JSON) are written to --out (default: a temp dir).
"""
import argparse, atexit, json, os, random, shutil, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
from vivirk_http import Server, call, parse_wrk, socket_errors

PW = "soak-test-password-2026"

MIX = [  # (kind, weight, method)
    ("history", 25, "GET"),
    ("status", 20, "GET"),
    ("actions", 8, "GET"),
    ("frequency", 5, "GET"),
    ("my_courses", 12, "GET"),
    ("worklist", 10, "GET"),
    ("check_in", 15, "POST"),
    ("contact", 5, "POST"),
]

TASKS = ["fyldte varer op", "tømte opvaskemaskinen", "hjalp ved kassen", "stocked shelves", "made the salad bar",
         "swept the yard", "sorterede flasker", "pakkede ordrer", "kaffepause med holdet", "took the van with Jens"]
CONCERNS = [None, None, None, "Træt; sov dårligt i nat.", "Came late, the bus did not come.",
            "Blev ked af det, da der kom en ny kollega.", "Said the noise in the kitchen was too much today."]
NEXT_STEPS = ["Samme mødetid i næste uge.", "Try the till with a colleague on Thursday.",
              "Aftale om at ringe, hvis hun bliver forsinket.", "Keep the hours; talk about more tasks next month.",
              None]
SUMMARIES = ["Talte om hvordan ugen gik, og hvad der er svært.", "Talked about getting up in time for the morning shift.",
             "Ringede for at høre om busturen; det gik fint.", "Went through the plan for the practice period.",
             "Kort snak om at han gerne vil prøve flere timer.", "Called the mother about the meeting on Tuesday."]


def iso(t):
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def lua_str(s):
    return "[==[" + s + "]==]"


def setup(base, admin_password, n_courses, workers):
    """Accounts, companies and courses with history. Returns what the mix needs."""
    admin = call(base, "POST", "/v1/auth/token", body={"username": "admin", "password": admin_password})["access_token"]
    n_cw, n_mentors, n_companies = -(-n_courses // 40), -(-n_courses // 4), -(-n_courses // 10)

    def account(args):
        username, role = args
        return call(base, "POST", "/v1/accounts", admin, {"username": username, "display_name": f"Soak {username}",
                                                          "role": role, "password": PW})["account_id"]

    def login(username):
        return call(base, "POST", "/v1/auth/token", body={"username": username, "password": PW})["access_token"]

    staff = [(f"cw{i}", "caseworker") for i in range(n_cw)] + [(f"mentor{i}", "mentor") for i in range(n_mentors)]
    young = [(f"young{i}", "young_person") for i in range(n_courses)]
    with ThreadPoolExecutor(workers) as ex:
        ids = dict(zip([u for u, _ in staff + young], ex.map(account, staff + young)))
        tokens = dict(zip([u for u, _ in staff], ex.map(login, [u for u, _ in staff])))
    cws = [(ids[f"cw{i}"], tokens[f"cw{i}"]) for i in range(n_cw)]
    mentors = [(ids[f"mentor{i}"], tokens[f"mentor{i}"]) for i in range(n_mentors)]
    companies = []
    for i in range(n_companies):
        kind = "social_economic" if i % 3 == 0 else "ordinary"
        c = call(base, "POST", "/v1/companies", cws[i % n_cw][1],
                 {"name": f"Virksomhed {i} ApS", "industry": ["food service", "retail", "construction"][i % 3],
                  "kind": kind, "cvr": None})["id"]
        companies.append((c, kind))
    now = datetime.now(timezone.utc)

    def course(i):
        rnd = random.Random(i)
        cw_id, cw = cws[i % n_cw]
        m_id, mentor = mentors[i % n_mentors]
        company, kind = companies[i % n_companies]
        yp = ids[f"young{i}"]
        start = now - timedelta(weeks=12)
        c = call(base, "POST", "/v1/courses", cw, {"young_person": yp, "programme": ["jobafklaringsforloeb", "stu",
                 "fgu"][i % 3], "referring_caseworker": cw_id,
                 "municipality": ["Aarhus Kommune", "Randers Kommune", "Viborg Kommune"][i % 3],
                 "start_date": start.date().isoformat()})["id"]
        p = f"/v1/courses/{c}"
        call(base, "POST", p + "/participants", cw, {"account_id": m_id, "role": "mentor", "company_id": company,
                                                      "relation": None})
        call(base, "POST", p + "/contact-plan", cw, {"every_days": 14, "by": [cw_id], "note": "Telefon eller møde hver anden uge."})
        goals = []
        for domain, title in [("work_life", "Møde til tiden tre dage om ugen"), ("everyday_life", "Take the bus alone")]:
            goals.append(call(base, "POST", p + "/goals", cw, {"life_domain": domain, "title": title,
                                                                "description": None})["id"])
        placement = call(base, "POST", p + "/placements", cw, {"kind": "practice_arena", "company_id": company,
                         "workplace": kind, "mentor": m_id, "hours_per_week": 10 + i % 3 * 5,
                         "tasks": [{"task": "varepåfyldning", "goal_ids": [goals[0]]}],
                         "start_date": (now - timedelta(weeks=10)).date().isoformat()})["id"]
        for what, owner, days in [("Søg om buskort", cw_id, 10), ("Visit the football club once", m_id, 20)]:
            call(base, "POST", p + "/actions", cw, {"what": what, "owner": owner, "due": (now + timedelta(days=days)).date().isoformat(),
                 "method": None, "goal_id": goals[1], "agreed_by": [yp, cw_id]})
        for week in range(10, 0, -1):
            t = now - timedelta(weeks=week)
            call(base, "POST", p + "/check-ins", mentor, check_in_body(rnd, placement) | {"occurred_at": iso(t)})
            if week % 2 == 0:
                call(base, "POST", p + "/contacts", cw, contact_body(rnd, yp) | {"occurred_at": iso(t + timedelta(days=1))})
        return {"id": c, "cw": cw, "mentor": mentor, "placement": placement, "young": yp}

    with ThreadPoolExecutor(workers * 4) as ex:
        courses = list(ex.map(course, range(n_courses)))
    return courses, [t for _, t in cws], [t for _, t in mentors]


def check_in_body(rnd, placement):
    return {"placement_id": placement, "attendance": rnd.choice(["present"] * 6 + ["late", "absent_notified"]),
            "wellbeing": rnd.randint(1, 5), "tasks_done": rnd.sample(TASKS, rnd.randint(0, 3)),
            "concerns": rnd.choice(CONCERNS), "next_step": rnd.choice(NEXT_STEPS)}


def contact_body(rnd, young):
    return {"with": [young], "channel": rnd.choice(["phone", "phone", "in_person", "text", "video"]),
            "direction": rnd.choice(["to_young_person", "to_young_person", "from_young_person"]),
            "outreach": rnd.random() < 0.7, "individual": True, "duration_minutes": rnd.choice([5, 10, 15, 20, 30, 45]),
            "summary": rnd.choice(SUMMARIES)}


def mix_script(path, courses, cw_tokens, mentor_tokens, rate, threads, pool=400):
    """The wrk script: weighted kinds, a pool of prepared requests per kind, status counts, and
    (when rate > 0) pacing with `delay()` on a monotonic clock."""
    rnd = random.Random(7)
    pools = {}
    for kind, _, method in MIX:
        items = []
        for _ in range(pool):
            c = rnd.choice(courses)
            reader = rnd.choice([c["cw"], c["mentor"]])
            body = None
            if kind == "history":
                path_, token = f"/v1/courses/{c['id']}/contacts?limit=20", reader
            elif kind == "status":
                path_, token = f"/v1/courses/{c['id']}", reader
            elif kind == "actions":
                path_, token = f"/v1/courses/{c['id']}/actions", reader
            elif kind == "frequency":
                path_, token = f"/v1/courses/{c['id']}/contact-frequency", reader
            elif kind == "my_courses":
                path_, token = "/v1/me/courses", rnd.choice(mentor_tokens + cw_tokens)
            elif kind == "worklist":
                path_, token = "/v1/me/contact-worklist", rnd.choice(cw_tokens)
            elif kind == "check_in":
                path_, token, body = f"/v1/courses/{c['id']}/check-ins", c["mentor"], check_in_body(rnd, c["placement"])
            else:
                path_, token, body = f"/v1/courses/{c['id']}/contacts", reader, contact_body(rnd, c["young"])
            # A write's body without its opening brace: each request gets its own event_id.
            items.append((method, path_, token, json.dumps(body, ensure_ascii=False)[1:] if body else None))
        pools[kind] = items
    out = ['local ffi = require("ffi")',
           'ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } vv_timespec; int clock_gettime(int, vv_timespec *); ]]',
           'local ts = ffi.new("vv_timespec")',
           'local function now_ms() ffi.C.clock_gettime(1, ts); return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6 end',
           'local kinds, weights, pools = {}, {}, {}']
    for kind, weight, _ in MIX:
        out.append(f'table.insert(kinds, "{kind}"); table.insert(weights, {weight})')
        out.append(f'pools["{kind}"] = {{')
        for method, p, token, body in pools[kind]:
            b = lua_str(body) if body else "nil"
            out.append(f'  {{"{method}", "{p}", "{token}", {b}}},')
        out.append("}")
    out.append(f"""
local threads, counter = {{}}, 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end
local prepared, total = {{}}, 0
sent, statuses = {{}}, {{}}
local function uuid()
  local r = math.random
  return string.format("%04x%04x-%04x-4%03x-%04x-%04x%04x%04x", r(0, 65535), r(0, 65535), r(0, 65535),
    r(0, 4095), 32768 + r(0, 16383), r(0, 65535), r(0, 65535), r(0, 65535))
end
function init(args)
  math.randomseed(id * 1000003 + now_ms())
  for _, k in ipairs(kinds) do
    prepared[k] = {{}}
    sent[k] = 0
    for _, r in ipairs(pools[k]) do
      if r[4] then
        table.insert(prepared[k], r)  -- a write: formatted per request
      else
        table.insert(prepared[k], wrk.format(r[1], r[2], {{["authorization"] = "Bearer " .. r[3]}}))
      end
    end
  end
  for _, w in ipairs(weights) do total = total + w end
end
function request()
  local x, k = math.random(total), nil
  for i, w in ipairs(weights) do
    if x <= w then k = kinds[i]; break end
    x = x - w
  end
  sent[k] = sent[k] + 1
  local p = prepared[k]
  local r = p[math.random(#p)]
  if type(r) == "string" then return r end
  -- Like the app's outbox: a client event id and an Idempotency-Key, new for every write.
  local id = uuid()
  return wrk.format(r[1], r[2], {{["authorization"] = "Bearer " .. r[3], ["content-type"] = "application/json",
    ["idempotency-key"] = uuid()}}, '{{"event_id":"' .. id .. '",' .. r[4])
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local s, st = {{}}, {{}}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("sent")) do s[k] = (s[k] or 0) + v end
    for k, v in pairs(t:get("statuses")) do st[tostring(k)] = (st[tostring(k)] or 0) + v end
  end
  local parts = {{}}
  for k, v in pairs(s) do table.insert(parts, '"' .. k .. '":' .. v) end
  local sparts = {{}}
  for k, v in pairs(st) do table.insert(sparts, '"' .. k .. '":' .. v) end
  io.write('SOAK-COUNTS {{"sent":{{' .. table.concat(parts, ",") .. '}},"statuses":{{' .. table.concat(sparts, ",") .. '}}}}\\n')
end
""")
    if rate > 0:
        # Each wrk thread sends its share at fixed intervals: delay() hands out the next slot; a
        # connection that finds the slot in the past sends at once (at most 1 s of backlog).
        out.append(f"""
local interval = {1000.0 * threads / rate!r}
local next_at = nil
function delay()
  local t = now_ms()
  if next_at == nil or next_at < t - 1000 then next_at = t end
  local d = next_at - t
  next_at = next_at + interval
  if d < 0 then return 0 end
  return math.floor(d)
end
""")
    with open(path, "w") as f:
        f.write("\n".join(out))


def memory(pid):
    """(VmRSS, anonymous) in KiB."""
    rss = anon = 0
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith("VmRSS:"):
                rss = int(l.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for l in f:
                if l.startswith("Anonymous:"):
                    anon = int(l.split()[1])
    except OSError:
        pass
    return rss, anon


def run_wrk(server, script, seconds, connections, threads, timeout, out_path, samples=None, t0=None):
    """Runs wrk; while it runs, samples memory and the log head every second into `samples`."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", f"{timeout}s", "-s",
           script, server.base]
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
        while proc.poll() is None:
            if samples is not None:
                try:
                    rss, anon = memory(server.pid)
                    m = server.metrics()
                    samples.append((time.time() - t0, rss, anon, int(m.get("vivirk_log_head_position", 0)),
                                    int(m.get("vivirk_malloc_in_use_bytes", 0)) // 1024,
                                    int(m.get("vivirk_malloc_free_bytes", 0)) // 1024))
                except Exception as e:  # the sample is lost, the run goes on; errors show in wrk's counts
                    print(f"  (sample failed: {e})", file=sys.stderr)
            time.sleep(1)
    text = open(out_path).read()
    if proc.returncode != 0:
        sys.exit(f"wrk failed ({proc.returncode}):\n{text}")
    counts = next((json.loads(l.split(" ", 1)[1]) for l in text.splitlines() if l.startswith("SOAK-COUNTS ")), {})
    return text, counts


def mean(xs):
    return sum(xs) / len(xs) if xs else 0.0


def fresh_rss(binary, data, config, log_path, settle=3.0):
    """RSS of a server just started on `data`: what the data itself costs in memory (the index
    and projections are loaded at open), without caches filled by traffic."""
    s = Server(binary, data, config=config, stderr_path=log_path)
    time.sleep(settle)
    rss, anon = memory(s.pid)
    head = int(s.metrics().get("vivirk_log_head_position", 0))
    s.stop()
    return rss, anon, head


def main():
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(target, "release", "vivirk"))
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--seconds", type=int, help="the duration in seconds (overrides --minutes)")
    ap.add_argument("--rate", type=float, help="requests/s (default: half the measured peak)")
    ap.add_argument("--peak-seconds", type=int, default=20)
    ap.add_argument("--courses", type=int, default=200)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--warmup", type=float, default=0.10, help="fraction of the run before the baseline (min 10 s)")
    ap.add_argument("--max-growth", type=float, default=10.0, help="fail at this memory growth, percent")
    ap.add_argument("--timeout", type=float, default=5, help="a response slower than this (s) is an error")
    ap.add_argument("--durability", default="fsync")
    ap.add_argument("--out", help="directory for samples.csv, wrk output, server logs and summary.json")
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--no-access-log", action="store_true", help="turn the access log off (to measure its share)")
    ap.add_argument("--reads-only", action="store_true", help="the mix without its writes (to measure their share)")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    if not os.path.exists(a.binary):
        sys.exit(f"{a.binary} not found (cargo build --release, or --binary)")
    seconds = a.seconds or int(a.minutes * 60)
    out_dir = a.out or tempfile.mkdtemp(prefix="vivirk-soak-")
    os.makedirs(out_dir, exist_ok=True)
    data = tempfile.mkdtemp(prefix="vivirk-soak-data-")
    if not a.keep_data:
        atexit.register(shutil.rmtree, data, True)
    ttl = seconds + a.peak_seconds + 3600
    config = (f"[auth]\naccess_ttl_secs = {ttl}\n\n[auth.rate_limits]\nusername_failures = 5\n"
              "username_window_secs = 900\naddress_attempts = 100000\naddress_window_secs = 60\nmax_keys = 100000\n")
    if a.no_access_log:
        config += "\n[audit]\naccess_log_enabled = false\n"
    if a.reads_only:
        MIX[:] = [m for m in MIX if m[2] == "GET"]
    log_path = os.path.join(out_dir, "server.log")
    t_start = time.time()
    failures = []

    server = Server(a.binary, data, durability=a.durability, config=config,
                    stderr_path=os.path.join(out_dir, "server-setup.log"))
    try:
        courses, cw_tokens, mentor_tokens = setup(server.base, server.admin_password, a.courses,
                                                  workers=os.cpu_count() or 2)
    finally:
        server.stop()
    fresh0 = fresh_rss(a.binary, data, config, os.path.join(out_dir, "server-fresh-before.log"))
    print(f"setup: {a.courses} courses, {len(cw_tokens)} caseworkers, {len(mentor_tokens)} mentors, "
          f"{fresh0[2]} events, {time.time() - t_start:.0f} s; a fresh server on this data: {fresh0[0] / 1024:.1f} MiB")

    # The soak proper, on a server started afresh (the setup's account creation is not part of it).
    server = Server(a.binary, data, durability=a.durability, config=config, stderr_path=log_path)
    try:
        rate = a.rate
        peak = None
        if not rate:
            script = os.path.join(out_dir, "peak.lua")
            mix_script(script, courses, cw_tokens, mentor_tokens, 0, a.threads)
            text, counts = run_wrk(server, script, a.peak_seconds, a.connections, a.threads, a.timeout,
                                   os.path.join(out_dir, "wrk-peak.txt"))
            peak, lat, _ = parse_wrk(text)
            print(f"peak: {peak:.0f} req/s unpaced at {a.connections} connections for {a.peak_seconds} s "
                  f"(p50 {lat.get('50%', 0):.1f} ms, p99 {lat.get('99%', 0):.1f} ms; statuses {counts.get('statuses')})")
            rate = peak / 2
        script = os.path.join(out_dir, "soak.lua")
        mix_script(script, courses, cw_tokens, mentor_tokens, rate, a.threads)
        rss_before, _ = memory(server.pid)
        print(f"soak: {rate:.0f} req/s for {seconds} s at {a.connections} connections; RSS before {rss_before / 1024:.1f} MiB")
        samples = []
        t0 = time.time()
        text, counts = run_wrk(server, script, seconds, a.connections, a.threads, a.timeout,
                               os.path.join(out_dir, "wrk-soak.txt"), samples, t0)
        m = server.metrics()
    finally:
        code = server.stop()

    achieved, lat, non2xx = parse_wrk(text)
    total_line = next((l.strip() for l in text.splitlines() if "requests in" in l), "")
    requests = int(total_line.split()[0]) if total_line else 0
    sock = socket_errors(text)
    statuses = counts.get("statuses", {})
    bad = {k: v for k, v in statuses.items() if k not in ("200", "201")}
    max_latency = next((l.split()[3] for l in text.splitlines() if l.strip().startswith("Latency") and len(l.split()) > 3), "?")
    print(f"  {requests} requests, {achieved:.1f} req/s achieved; p50 {lat.get('50%', 0):.2f} ms, p99 "
          f"{lat.get('99%', 0):.2f} ms, max {max_latency}")
    print(f"  sent by kind: {counts.get('sent')}")
    print(f"  statuses: {statuses}; socket errors: {sock}")
    print(f"  log: {m.get('vivirk_log_slow_syncs_total', 0):.0f} syncs over 10 ms, longest "
          f"{m.get('vivirk_log_max_sync_seconds', 0) * 1000:.0f} ms")
    if bad or non2xx:
        failures.append(f"non-2xx responses: {bad or non2xx}")
    if any(sock.values()):
        failures.append(f"socket errors (a timeout is a response slower than {a.timeout:g} s): {sock}")
    if achieved < rate * 0.9:
        # Not a failure by itself: on a shared machine other work can take the CPU or the disk.
        print(f"  WARNING: the achieved rate is {achieved:.0f} of {rate:.0f} req/s")

    # Memory of the running server.
    with open(os.path.join(out_dir, "samples.csv"), "w") as f:
        f.write("seconds,rss_kib,anon_kib,head_position,malloc_in_use_kib,malloc_free_kib\n")
        for s_ in samples:
            f.write(",".join([f"{s_[0]:.1f}"] + [str(x) for x in s_[1:]]) + "\n")
    warm_at = max(10.0, seconds * a.warmup)
    base_s = [s_ for s_ in samples if abs(s_[0] - warm_at) <= 5] or samples[:1]
    end_s = samples[-10:]
    rss_warm, rss_end = mean([s_[1] for s_ in base_s]), mean([s_[1] for s_ in end_s])
    anon_warm, anon_end = mean([s_[2] for s_ in base_s]), mean([s_[2] for s_ in end_s])
    head_warm, head_end = mean([s_[3] for s_ in base_s]), mean([s_[3] for s_ in end_s])
    use_warm, use_end = mean([s_[4] for s_ in base_s]), mean([s_[4] for s_ in end_s])
    free_warm, free_end = mean([s_[5] for s_ in base_s]), mean([s_[5] for s_ in end_s])
    growth = (rss_end / rss_warm - 1) * 100 if rss_warm else 0.0
    events = head_end - head_warm
    per_k = (rss_end - rss_warm) / events * 1000 if events > 0 else float("nan")
    rss_max = max(s_[1] for s_ in samples)
    print(f"memory (VmRSS): before load {rss_before / 1024:.1f} MiB, after warm-up ({warm_at:.0f} s) "
          f"{rss_warm / 1024:.1f} MiB, end {rss_end / 1024:.1f} MiB, max {rss_max / 1024:.1f} MiB: "
          f"growth {growth:+.1f} % (limit {a.max_growth:g} %)")
    print(f"  anonymous memory: after warm-up {anon_warm / 1024:.1f} MiB, end {anon_end / 1024:.1f} MiB")
    if use_end:
        print(f"  allocator (glibc): in use {use_warm / 1024:.1f} -> {use_end / 1024:.1f} MiB, kept free in its arenas "
              f"{free_warm / 1024:.1f} -> {free_end / 1024:.1f} MiB")
    print(f"  events appended after warm-up: {events:.0f} (head {head_warm:.0f} -> {head_end:.0f}); "
          f"RSS growth per 1,000 events: {per_k:.0f} KiB")
    if growth >= a.max_growth:
        failures.append(f"memory grew {growth:.1f} % (limit {a.max_growth:g} %)")

    # What the data costs: a fresh server on the data after the run against one before it.
    if code != 0:
        failures.append(f"the server exited with {code} on SIGTERM")
    for name in ("server-setup.log", "server.log"):
        lines = open(os.path.join(out_dir, name)).read().splitlines()
        bad_lines = [l for l in lines if " ERROR " in l or "panicked" in l]
        if bad_lines:
            failures.append(f"{len(bad_lines)} ERROR/panic lines in {name}, first: {bad_lines[0][:300]}")
    v = subprocess.run([a.binary, "verify", "--data-dir", data], capture_output=True, text=True)
    verify_line = (v.stdout.strip().splitlines() or [""])[-1]
    print(f"verify: exit {v.returncode}: {verify_line}")
    if v.returncode != 0:
        failures.append(f"vivirk verify failed: {v.stdout[-500:]} {v.stderr[-500:]}")
    fresh1 = fresh_rss(a.binary, data, config, os.path.join(out_dir, "server-fresh-after.log"))
    data_events = fresh1[2] - fresh0[2]
    data_per_k = (fresh1[0] - fresh0[0]) / data_events * 1000 if data_events > 0 else float("nan")
    print(f"data: a fresh server holds {fresh0[0] / 1024:.1f} MiB at {fresh0[2]} events and {fresh1[0] / 1024:.1f} MiB "
          f"at {fresh1[2]}: {data_per_k:.0f} KiB per 1,000 events (index and projections in memory)")
    summary = {"seconds": seconds, "rate": rate, "peak": peak, "connections": a.connections, "courses": a.courses,
               "requests": requests, "achieved_rps": achieved, "latency_ms": lat, "max_latency": max_latency,
               "statuses": statuses, "socket_errors": sock, "sent": counts.get("sent"),
               "rss_kib": {"before": rss_before, "warm": rss_warm, "end": rss_end, "max": rss_max},
               "anon_kib": {"warm": anon_warm, "end": anon_end}, "growth_percent": growth,
               "malloc_in_use_kib": {"warm": use_warm, "end": use_end},
               "malloc_free_kib": {"warm": free_warm, "end": free_end},
               "events_after_warmup": events, "rss_kib_per_1000_events": per_k,
               "fresh_rss_kib": {"before": fresh0[0], "after": fresh1[0]},
               "fresh_heads": {"before": fresh0[2], "after": fresh1[2]}, "fresh_kib_per_1000_events": data_per_k,
               "max_sync_ms": m.get("vivirk_log_max_sync_seconds", 0) * 1000, "verify_exit": v.returncode,
               "failures": failures, "total_seconds": time.time() - t_start}
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if a.keep_data:
        print(f"data kept in {data}")
    print(f"details in {out_dir} ({time.time() - t_start:.0f} s in all)")
    if failures:
        print("SOAK FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("soak passed: no errors, memory growth under the limit, the log verifies")


if __name__ == "__main__":
    main()
