#!/usr/bin/env python3
"""vivirk against PostgreSQL 15 on the same machine, the same data and the same load.

Run through `benches/compare.sh` (which installs PostgreSQL and wrk and builds the release
binary). Steps:
  1. `vivirk bench seed`: EVENTS course events over COURSES courses (generated like `vivirk bench
     projections`), with real caseworker and mentor accounts; `vivirk export` of the same log is
     loaded into PostgreSQL, so both hold the same events.
  2. Projection rebuild (events/s), cold start to /readyz, bytes on disk per event.
  3. History reads: 50-item contact-history pages over HTTP (wrk) against the equivalent indexed
     query (pgbench), alternated A B A B for ROUNDS rounds.
  4. Durable writes: check-in POSTs (durability fsync), pgbench single-row inserts with
     synchronous_commit=on, and the same POSTs with durability none, alternated A B C A B C.
  5. A markdown table: medians over the rounds, ratios, targets, met or missed and by how much.
Each load runs CONNECTIONS connections for SECONDS seconds after an unmeasured warm-up.
"""
import argparse, datetime, glob, json, os, shutil, signal, statistics, subprocess, sys, threading, time
import urllib.error, urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (wrk runner and JSON call helper shared with benches/load.py)

HISTORY_TYPES = ("ContactLogged", "CheckInLogged", "GuidanceSessionHeld", "MeetingHeld")
CHECK_IN = {"attendance": "present", "wellbeing": 4, "tasks_done": ["stocked shelves", "helped at the till"],
            "concerns": None, "next_step": "try the till with support on Thursday"}
# PostgreSQL settings: what a team would run for a durable service on this machine. Everything
# that decides durability stays at its safe default (fsync, synchronous_commit, full_page_writes,
# wal_sync_method = fdatasync on Linux); memory and checkpoint spacing are sized for the box.
PG_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "shared_buffers": "'1GB'",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_wal_size": "'4GB'",
    "checkpoint_timeout": "'15min'",
    "effective_cache_size": "'4GB'",
    "maintenance_work_mem": "'512MB'",
    "random_page_cost": "1.1",
    "jit": "off",
    "logging_collector": "off",
}
PG_SHOW = ["server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "wal_level",
           "commit_delay", "shared_buffers", "wal_buffers", "max_wal_size", "checkpoint_timeout", "max_connections",
           "effective_cache_size", "random_page_cost", "jit"]


def log(msg):
    print(f"[{datetime.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(cmd, **kw):
    p = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout[-4000:]}{p.stderr[-4000:]}")
    return p.stdout


def alloc_bytes(path):
    """Bytes allocated on disk (st_blocks) under path: what the data costs on this filesystem."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def proc_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def pct(sorted_vals, p):
    if not sorted_vals:
        return 0.0
    return sorted_vals[min(len(sorted_vals) - 1, int(round((len(sorted_vals) - 1) * p)))]


def med(xs):
    return statistics.median(xs) if xs else 0.0


# ----------------------------------------------------------------------------------------------
# vivirk
# ----------------------------------------------------------------------------------------------

class Vivirk:
    def __init__(self, a, data, port, durability, name):
        self.a, self.data, self.port, self.durability, self.name = a, data, port, durability, name
        self.base = f"http://127.0.0.1:{port}"
        self.proc = None

    def start(self):
        """Spawns the server; returns seconds from spawn to /readyz answering 200."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIVIRK_")}
        env["VIVIRK_LOG"] = "warn"
        out = open(os.path.join(self.a.work, f"serve-{self.name}.log"), "a")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([self.a.binary, "serve", "--data-dir", self.data, "--bind",
                                      f"127.0.0.1:{self.port}", "--durability", self.durability],
                                     env=env, stdout=out, stderr=out)
        with open(os.path.join(self.a.work, f"vivirk-{self.name}.pid"), "w") as f:
            f.write(str(self.proc.pid))
        while True:
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=5) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if self.proc.poll() is not None:
                sys.exit(f"vivirk serve ({self.name}) exited with {self.proc.returncode}; see {out.name}")
            if time.monotonic() - t0 > 600:
                sys.exit(f"vivirk serve ({self.name}) not ready after 600 s")
            time.sleep(0.005)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        try:
            os.remove(os.path.join(self.a.work, f"vivirk-{self.name}.pid"))
        except FileNotFoundError:
            pass

    def reset_peak_rss(self):
        # "5" resets VmHWM to the current RSS (Linux ≥ 4.0), so the peak covers the next load only.
        with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
            f.write("5")

    def peak_rss_mb(self):
        return proc_kb(self.proc.pid, "VmHWM") / 1024

    def token(self, username, password):
        return load.call(self.base, "POST", "/v1/auth/token", body={"username": username, "password": password})[
            "access_token"]


def lua_random_requests(path, method, paths, tokens, owner, bodies=None):
    """A wrk script: each request goes to a random course (own seed per wrk thread), with the
    token of the account that staffs it."""
    q = lambda s: json.dumps(s)  # JSON strings are valid Lua string literals for this content
    with open(path, "w") as f:
        f.write("local paths = {%s}\n" % ",".join(q(p) for p in paths))
        f.write("local tokens = {%s}\n" % ",".join(q("Bearer " + t) for t in tokens))
        f.write("local owner = {%s}\n" % ",".join(str(o + 1) for o in owner))
        if bodies is not None:
            f.write("local bodies = {%s}\n" % ",".join("[==[" + b + "]==]" for b in bodies))
        f.write("local threads = 0\n"
                "function setup(thread) threads = threads + 1; thread:set('tid', threads) end\n"
                "function init(args) math.randomseed(os.time() * 1000 + (tid or 0) * 7919) end\n"
                "request = function()\n"
                "  local k = math.random(#paths)\n")
        if bodies is not None:
            f.write(f'  return wrk.format("{method}", paths[k], {{["authorization"]=tokens[owner[k]], '
                    '["content-type"]="application/json"}, bodies[k])\nend\n')
        else:
            f.write(f'  return wrk.format("{method}", paths[k], {{["authorization"]=tokens[owner[k]]}})\nend\n')


def run_wrk(a, server, script, seconds):
    rps, lat, non2xx, out = load.wrk(None, server.base, script, seconds, a.connections)
    total = next((int(l.split()[0]) for l in out.splitlines() if "requests in" in l), 0)
    errors = next((l.strip() for l in out.splitlines() if "Socket errors" in l), None)
    bad = " ".join(x for x in (non2xx and non2xx.strip(), errors) if x)
    return {"rps": rps, "p50": lat.get("50%", 0.0), "p99": lat.get("99%", 0.0), "n": total, "bad": bad}


# ----------------------------------------------------------------------------------------------
# PostgreSQL
# ----------------------------------------------------------------------------------------------

class Postgres:
    def __init__(self, a):
        self.a = a
        self.dir = os.path.join(a.work, "pg")
        self.bin = a.pg_bin
        self.port = a.pg_port
        self.sock = os.path.join(a.work, "pgsock")

    def as_pg(self, *cmd):
        return sh(["runuser", "-u", "postgres", "--", *cmd], cwd="/")

    def init(self):
        for d in (self.sock, self.dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
            shutil.chown(d, "postgres", "postgres")
        self.as_pg(f"{self.bin}/initdb", "-D", self.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--locale=C")
        settings = dict(PG_SETTINGS, port=str(self.port), unix_socket_directories=f"'{self.sock}'")
        with open(os.path.join(self.dir, "postgresql.conf"), "a") as f:
            f.write("\n# benches/compare.py\n")
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")

    def start(self):
        t0 = time.monotonic()
        # -W: do not wait (pg_ctl polls at 100 ms); readiness is polled here with pg_isready.
        self.as_pg(f"{self.bin}/pg_ctl", "-D", self.dir, "-l", os.path.join(self.dir, "server.log"), "-W", "start")
        while subprocess.run([f"{self.bin}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode:
            if time.monotonic() - t0 > 120:
                sys.exit("PostgreSQL not ready after 120 s; see " + os.path.join(self.dir, "server.log"))
            time.sleep(0.005)
        return time.monotonic() - t0

    def stop(self, mode="fast"):
        if os.path.exists(os.path.join(self.dir, "postmaster.pid")):
            self.as_pg(f"{self.bin}/pg_ctl", "-D", self.dir, "-m", mode, "-w", "stop")

    def psql(self, sql, db="bench"):
        return sh([f"{self.bin}/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
                   "-U", "postgres", "-d", db, "-c", sql])

    def postmaster_pid(self):
        with open(os.path.join(self.dir, "postmaster.pid")) as f:
            return int(f.readline())

    def pss_mb(self):
        """Proportional set size of the postmaster and all its children: shared buffers are counted
        once, split over the processes that touched them."""
        root = self.postmaster_pid()
        pids = [root]
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    with open(f"/proc/{p}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == root:
                            pids.append(int(p))
                except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                    pass
        total = 0
        for p in pids:
            try:
                with open(f"/proc/{p}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1])
            except (FileNotFoundError, ProcessLookupError):
                pass
        return total / 1024


def pg_load(a, pg, export):
    """The vivirk export, course events only, in position order, into an events table that mirrors
    the envelope; keys and indexes built after the load (as one would for a bulk import)."""
    pg.psql("create database bench", db="postgres")
    pg.psql("""
        create unlogged table raw (line jsonb);
        create table events (
            global_position bigserial,
            stream text not null,
            version int not null,
            event_id uuid not null,
            type text not null,
            data jsonb not null,
            metadata jsonb not null,
            recorded_at timestamptz not null default now()
        );
        -- A time-ordered UUID (v7 layout) like the ids vivirk gives new events.
        create function uuid_v7() returns uuid language sql volatile as $$
          select encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing
            substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::bigint) from 3)
            from 1 for 6), 52, 1), 53, 1), 'hex')::uuid
        $$;
    """)
    t0 = time.monotonic()
    sh([f"{pg.bin}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
        "-d", "bench", "-c", f"\\copy raw (line) from '{export}' with (format csv, quote e'\\x01', delimiter e'\\x02')"])
    pg.psql("""
        insert into events (stream, version, event_id, type, data, metadata, recorded_at)
        select line->>'stream', (line->>'stream_version')::int, (line->>'event_id')::uuid, line->>'event_type',
               line->'data',
               jsonb_build_object('schema_version', line->'schema_version', 'occurred_at', line->'occurred_at',
                                  'actor', line->'actor') || coalesce(line->'metadata', '{}'::jsonb),
               (line->>'recorded_at')::timestamptz
        from raw where line->>'stream' like 'course-%' order by (line->>'position')::bigint;
        drop table raw;
        alter table events add primary key (global_position);
        alter table events add constraint events_event_id_key unique (event_id);
        alter table events add constraint events_stream_version_key unique (stream, version);
        create index events_history on events (stream, version)
          where type in ('ContactLogged', 'CheckInLogged', 'GuidanceSessionHeld', 'MeetingHeld');
    """)
    pg.psql("vacuum (analyze) events")
    pg.psql("checkpoint")
    rows = int(pg.psql("select count(*) from events"))
    log(f"PostgreSQL: loaded {rows} events and built the indexes in {time.monotonic() - t0:.1f}s")
    return rows


def stream_expr(var):
    # 'course-' + the course uuid: Uuid::from_u128(0xC0_0000 + k), as the seed generates them.
    return f"'course-00000000-0000-0000-0000-' || lpad(to_hex(12582912 + :{var}::int), 12, '0')"


def pg_scripts(a, tmp):
    """pgbench scripts. Writes: one check-in event per transaction (autocommit, one statement)
    into a random course's stream at the next version. Each client draws from its own share of the
    courses (course mod clients = client id), so no two in-flight inserts ever compute the same
    version: no unique-violation aborts and no retry loop, the best case for PostgreSQL; the
    unique (stream, version) constraint still checks every insert."""
    # ": " with a space: pgbench would take `:4` or `:null` for a variable.
    body = json.dumps({"placement_id": "PLACEMENT", **CHECK_IN})
    before, after = body.split("PLACEMENT")
    placement = "'00000000-0000-0000-0000-' || lpad(to_hex(:k::int), 12, '0')"
    write = f"""\\set k :client_id + :clients * random(0, (:courses - 1 - :client_id) / :clients)
insert into events (stream, version, event_id, type, data, metadata, recorded_at)
select s.stream, coalesce((select max(version) from events where stream = s.stream), 0) + 1, uuid_v7(),
  'CheckInLogged', ('{before}' || {placement} || '{after}')::jsonb,
  jsonb_build_object('schema_version', 1, 'occurred_at', now(),
    'actor', jsonb_build_object('account_id', {placement}, 'role', 'mentor'),
    'correlation_id', null, 'causation_id', null, 'device_id', null),
  now()
from (select {stream_expr('k')} as stream) s;
"""
    types = ", ".join(f"'{t}'" for t in HISTORY_TYPES)
    read = f"""\\set k random(0, :courses - 1)
select global_position, version, event_id, type, data, metadata, recorded_at from events
where stream = {stream_expr('k')} and type in ({types})
order by version desc limit 50;
"""
    paths = {}
    for name, text in (("write", write), ("read", read)):
        paths[name] = os.path.join(tmp, f"pg-{name}.sql")
        with open(paths[name], "w") as f:
            f.write(text)
    return paths


def run_pgbench(a, pg, script, seconds, sample_pss=False):
    prefix = os.path.join(a.work, "pgbench-log")
    for f in glob.glob(prefix + "*"):
        os.remove(f)
    cmd = [f"{pg.bin}/pgbench", "-n", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-M", "prepared",
           "-c", str(a.connections), "-j", "2", "-T", str(seconds), "-f", script,
           "-D", f"clients={a.connections}", "-D", f"courses={a.courses}",
           "--log", f"--log-prefix={prefix}", "bench"]
    peak = [0.0]
    stop = threading.Event()

    def sampler():
        # Every 5 s (reading smaps of every backend costs CPU); memory plateaus within seconds.
        while not stop.wait(min(5.0, max(1.0, seconds - 1.0))):
            peak[0] = max(peak[0], pg.pss_mb())

    t = threading.Thread(target=sampler, daemon=True)
    if sample_pss:
        t.start()
    p = subprocess.run(cmd, text=True, capture_output=True)
    stop.set()
    if sample_pss:
        t.join()
    if p.returncode != 0 or "aborted" in p.stderr:
        sys.exit(f"pgbench failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    tps = float(next(l for l in p.stdout.splitlines() if l.startswith("tps")).split()[2])
    n = int(next(l for l in p.stdout.splitlines() if "actually processed" in l).split(":")[1].split("/")[0])
    failed = next((l.strip() for l in p.stdout.splitlines() if l.startswith("number of failed")), "")
    lat = []
    for f in glob.glob(prefix + "*"):
        with open(f) as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 6 and parts[2] not in ("skipped", "failed"):
                    lat.append(int(parts[2]) / 1000.0)
        os.remove(f)
    lat.sort()
    bad = "" if failed.endswith(" 0 (0.000%)") or not failed else failed
    return {"rps": tps, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "n": n, "bad": bad, "pss": peak[0]}


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------

def fmt_load(r):
    return f"{r['rps']:>9,.0f} /s   p50 {r['p50']:7.2f} ms   p99 {r['p99']:7.2f} ms   n {r['n']:>9,}" + (
        f"   !! {r['bad']}" if r["bad"] else "")


def summary(runs):
    return {"rps": med([r["rps"] for r in runs]), "p50": med([r["p50"] for r in runs]),
            "p99": med([r["p99"] for r in runs])}


def check(value, op, bound, unit=""):
    """(met, text): how far a figure is from its target, in both absolute and relative terms."""
    met = value >= bound if op == ">=" else value <= bound if op == "<=" else value < bound
    if met:
        return True, ""
    rel = (value - bound) / bound * 100 if bound else 0
    shown = {">=": "≥", "<=": "≤"}.get(op, op)
    return False, f"{value:,.2f}{unit}, target {shown} {bound:,.2f}{unit} ({rel:+.0f} %)"


def verdict(checks):
    misses = [t for ok, t in checks if not ok]
    return "met" if not misses else "**missed**: " + "; ".join(misses)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/vivirk")
    ap.add_argument("--work", required=True, help="scratch directory (both systems' data live here)")
    ap.add_argument("--results", default="target/compare")
    ap.add_argument("--seconds", type=int, default=20, help="duration of each measured load run")
    ap.add_argument("--warmup", type=int, default=5, help="unmeasured warm-up before each system's first run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--courses", type=int, default=10_000)
    ap.add_argument("--pg-bin", default="/usr/lib/postgresql/15/bin")
    ap.add_argument("--pg-port", type=int, default=55432)
    ap.add_argument("--port", type=int, default=18190, help="vivirk ports: this one and the next")
    a = ap.parse_args()
    a.binary = os.path.abspath(a.binary)
    a.work = os.path.abspath(a.work)
    rounds = max(1, a.rounds)
    if a.courses < a.connections:
        sys.exit("--courses must be at least --connections (each pgbench client writes its own share)")
    os.makedirs(a.results, exist_ok=True)
    os.chmod(a.work, 0o755)  # the postgres user must reach its data directory
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    nproc = os.cpu_count()
    load_start = open("/proc/loadavg").read().split()[:3]
    fs = sh(["stat", "-f", "-c", "%T", a.work]).strip()
    dev = sh(["df", "--output=source", a.work]).splitlines()[-1].strip()
    log(f"vivirk vs PostgreSQL: {a.events:,} events over {a.courses:,} courses, {a.connections} connections, "
        f"{a.seconds}s × {rounds} rounds, {nproc} cores; data in {a.work} ({dev}, {fs})")
    if fs == "tmpfs":
        log("WARNING: the scratch directory is on tmpfs, where fsync costs nothing; pass a disk-backed --work")

    d0 = os.path.join(a.work, "vivirk-seed")
    manifest_path = os.path.join(a.work, "manifest.json")
    t0 = time.monotonic()
    sh([a.binary, "bench", "seed", "--data-dir", d0, "--events", str(a.events), "--courses", str(a.courses),
        "--manifest", manifest_path], env=dict(os.environ, VIVIRK_LOG="warn"))
    m = json.load(open(manifest_path))
    log(f"vivirk: seeded {m['events']:,} course events (log head {m['head']:,}) in {time.monotonic() - t0:.1f}s")
    export = os.path.join(a.work, "export.ndjson")
    sh([a.binary, "export", "--data-dir", d0, "--out", export, "--purpose", "benchmark comparison"],
       env=dict(os.environ, VIVIRK_LOG="warn"))
    json_bytes, json_lines = 0, 0
    with open(export, "rb") as f:
        f.readline()  # the export's header
        for line in f:
            json_bytes += len(line)
            json_lines += 1
    log(f"envelopes as JSON lines: {json_bytes / 2**20:,.0f} MiB for {json_lines:,} events "
        f"({json_bytes / json_lines:,.0f} bytes/event)")

    # Projection rebuild, then cold starts, on the pristine seed.
    rebuild = []
    for i in range(rounds):
        out = sh([a.binary, "projections", "rebuild", "--data-dir", d0], env=dict(os.environ, VIVIRK_LOG="warn"))
        line = next(l for l in out.splitlines() if "projections rebuilt" in l)
        rebuild.append(float(line.rsplit("(", 1)[1].split()[0]))
        log(f"projection rebuild {i + 1}: {line.strip()}")
    seed = Vivirk(a, d0, a.port, "fsync", "seed")
    servers = [seed]
    seed.start()  # the first start after a seed creates the audit store and checkpoint key
    seed.stop()
    cold = []
    for i in range(max(3, rounds)):
        cold.append(seed.start())
        seed.stop()
        log(f"vivirk cold start {i + 1}: {cold[-1]:.3f}s to /readyz")
    v_disk = {d: alloc_bytes(os.path.join(d0, d)) for d in sorted(os.listdir(d0))
              if os.path.isdir(os.path.join(d0, d))}
    v_total = alloc_bytes(d0)
    log("vivirk data dir: " + ", ".join(f"{d} {b / 2**20:,.0f} MiB" for d, b in v_disk.items())
        + f"; total {v_total / 2**20:,.0f} MiB")

    pg = Postgres(a)
    try:
        pg.init()
        pg.start()
        settings = pg.psql("select name || ' = ' || current_setting(name) from pg_settings "
                           f"where name in ({', '.join(repr(s) for s in PG_SHOW)}) order by name", db="postgres").strip()
        log("PostgreSQL settings:\n    " + "\n    ".join(settings.split("\n")))
        rows = pg_load(a, pg, export)
        os.remove(export)
        sizes = dict(zip(["heap", "toast", "indexes", "total", "database"], map(int, pg.psql(
            "select pg_relation_size('events'), coalesce(pg_total_relation_size(reltoastrelid), 0), "
            "pg_indexes_size('events'), pg_total_relation_size('events'), pg_database_size('bench') "
            "from pg_class where relname = 'events'").split("|"))))
        log("PostgreSQL events table: " + ", ".join(f"{k} {v / 2**20:,.0f} MiB" for k, v in sizes.items()))
        pg_cold = []
        for i in range(max(3, rounds)):
            pg.stop()
            pg_cold.append(pg.start())
            log(f"PostgreSQL cold start {i + 1}: {pg_cold[-1]:.3f}s to pg_isready")
        scripts = pg_scripts(a, a.work)

        # Servers for the load runs, each on its own copy of the seeded data.
        d_f, d_n = os.path.join(a.work, "vivirk-fsync"), os.path.join(a.work, "vivirk-none")
        for d in (d_f, d_n):
            shutil.copytree(d0, d, symlinks=True)
        shutil.rmtree(d0)
        vf = Vivirk(a, d_f, a.port, "fsync", "fsync")
        vn = Vivirk(a, d_n, a.port + 1, "none", "none")
        servers += [vf, vn]
        vf.start()
        courses = m["courses"]
        password = m["password"]

        # --- history reads -------------------------------------------------------------------
        cws = m["caseworkers"]
        cw_tokens = [vf.token(u, password) for u in cws]
        get_lua = os.path.join(a.work, "get.lua")
        lua_random_requests(get_lua, "GET", [f"/v1/courses/{c['id']}/contacts?limit=50" for c in courses],
                            cw_tokens, [cws.index(c["caseworker"]) for c in courses])
        log(f"history reads: warm-up {a.warmup}s each")
        run_wrk(a, vf, get_lua, a.warmup)
        run_pgbench(a, pg, scripts["read"], a.warmup)
        vf.reset_peak_rss()
        reads = {"vivirk": [], "pg": []}
        for r in range(rounds):
            reads["vivirk"].append(run_wrk(a, vf, get_lua, a.seconds))
            log(f"round {r + 1} vivirk GET history   {fmt_load(reads['vivirk'][-1])}")
            reads["pg"].append(run_pgbench(a, pg, scripts["read"], a.seconds))
            log(f"round {r + 1} PostgreSQL history   {fmt_load(reads['pg'][-1])}")
        rss_reads = vf.peak_rss_mb()

        # --- durable writes ------------------------------------------------------------------
        # Fresh servers, so the peak RSS is the write load's alone (warm-up included).
        vf.stop()
        vf.start()
        vn.start()
        mentors = m["mentors"]
        m_tokens = [vf.token(u, password) for u in mentors]
        post_lua = os.path.join(a.work, "post.lua")
        lua_random_requests(post_lua, "POST", [f"/v1/courses/{c['id']}/check-ins" for c in courses], m_tokens,
                            [mentors.index(c["mentor"]) for c in courses],
                            [json.dumps({"placement_id": c["placement_id"], **CHECK_IN}) for c in courses])
        pg_before = int(pg.psql("select count(*) from events"))
        log(f"writes: warm-up {a.warmup}s each")
        warm = [run_wrk(a, vf, post_lua, a.warmup), run_pgbench(a, pg, scripts["write"], a.warmup),
                run_wrk(a, vn, post_lua, a.warmup)]
        writes = {"fsync": [], "pg": [], "none": []}
        for r in range(rounds):
            writes["fsync"].append(run_wrk(a, vf, post_lua, a.seconds))
            log(f"round {r + 1} vivirk POST fsync    {fmt_load(writes['fsync'][-1])}")
            writes["pg"].append(run_pgbench(a, pg, scripts["write"], a.seconds, sample_pss=True))
            log(f"round {r + 1} PostgreSQL insert    {fmt_load(writes['pg'][-1])}   "
                f"PSS peak {writes['pg'][-1]['pss']:,.0f} MB")
            writes["none"].append(run_wrk(a, vn, post_lua, a.seconds))
            log(f"round {r + 1} vivirk POST none     {fmt_load(writes['none'][-1])}")
        rss_fsync, rss_none = vf.peak_rss_mb(), vn.peak_rss_mb()
        pg_pss = max(r["pss"] for r in writes["pg"])

        # Integrity: every PostgreSQL transaction inserted one event, versions gap-free per stream.
        pg_after = int(pg.psql("select count(*) from events"))
        pg_tx = warm[1]["n"] + sum(r["n"] for r in writes["pg"])
        gaps = int(pg.psql("select count(*) from (select stream from events group by stream "
                           "having max(version) <> count(*)) s"))
        integrity = (f"PostgreSQL: {pg_after - pg_before:,} rows inserted for {pg_tx:,} transactions; "
                     f"{gaps} streams with version gaps")
        log(integrity)
        vf.stop()
        vn.stop()
    finally:
        for v in servers:
            v.stop()
        pg.stop("immediate")

    # --- the table ---------------------------------------------------------------------------
    rv, rp = summary(reads["vivirk"]), summary(reads["pg"])
    wf, wp, wn = summary(writes["fsync"]), summary(writes["pg"]), summary(writes["none"])
    v_per = v_total / m["head"]
    logidx = v_disk.get("log", 0) + v_disk.get("index", 0)
    p_per = sizes["total"] / rows
    raw = json_bytes / json_lines
    x = lambda n: f"{n:,.0f}"
    lat = lambda s: f"{x(s['rps'])} /s ({s['p50']:.2f} / {s['p99']:.2f} ms)"
    rows_md = [
        ("durable writes: check-in POST vs insert, 64 conn.", lat(wf), lat(wp), f"{wf['rps'] / wp['rps']:.2f}×",
         "≥ 2.0× PostgreSQL, p99 ≤ 25 ms",
         verdict([check(wf["rps"] / wp["rps"], ">=", 2.0, "×"), check(wf["p99"], "<=", 25, " ms")])),
        ("durability cost: same POSTs, durability none", lat(wn), "–", f"fsync ÷ none {wf['rps'] / wn['rps']:.2f}",
         "fsync ÷ none ≥ 0.8", verdict([check(wf["rps"] / wn["rps"], ">=", 0.8)])),
        ("history reads: 50-item page, 64 conn.", lat(rv), lat(rp), f"{rv['rps'] / rp['rps']:.2f}×",
         "≥ 20,000 /s, p99 ≤ 10 ms, ≥ 1.5× PostgreSQL",
         verdict([check(rv["rps"], ">=", 20000, " /s"), check(rv["p99"], "<=", 10, " ms"),
                  check(rv["rps"] / rp["rps"], ">=", 1.5, "×")])),
        (f"projection rebuild of {m['head']:,} events", f"{x(med(rebuild))} events/s", "–", "–",
         "≥ 500,000 events/s", verdict([check(med(rebuild), ">=", 500000, " events/s")])),
        ("cold start to ready (vivirk /readyz; PostgreSQL pg_isready)", f"{med(cold):.3f} s",
         f"{med(pg_cold):.3f} s", f"{med(cold) / med(pg_cold):.1f}×", "< 1 s",
         verdict([check(med(cold), "<", 1.0, " s")])),
        ("disk bytes per event (÷ envelope JSON)", f"{x(v_per)} B ({v_per / raw:.2f}×)",
         f"{x(p_per)} B ({p_per / raw:.2f}×)", f"{v_per / p_per:.2f}×", "≤ 1.5× raw JSON",
         verdict([check(v_per / raw, "<=", 1.5, "×")])),
        ("peak memory under the write load", f"{x(rss_fsync)} MB RSS (none: {x(rss_none)})",
         f"{x(pg_pss)} MB PSS", f"{rss_fsync / pg_pss:.2f}×" if pg_pss else "–", "RSS ≤ 256 MB",
         verdict([check(rss_fsync, "<=", 256, " MB")])),
    ]
    now = datetime.datetime.now()
    md = [f"## vivirk vs PostgreSQL — {now.strftime('%Y-%m-%d %H:%M')}", "",
          f"{a.events:,} events over {a.courses:,} courses; {a.connections} connections; {a.seconds} s per run, "
          f"{rounds} alternated rounds after a {a.warmup} s warm-up; {nproc} cores shared with the load generators "
          f"(wrk -t2, pgbench -j 2); data on {dev} ({fs}). Load average at the start {' '.join(load_start)}, "
          f"at the end {' '.join(open('/proc/loadavg').read().split()[:3])} (anything well above 2 means other "
          "work shared the cores). Medians over the rounds; latency p50 / p99.", "",
          "| figure | vivirk | PostgreSQL 15 | ratio | target | result |", "|---|---:|---:|---:|---|---|"]
    md += ["| " + " | ".join(r) + " |" for r in rows_md]
    md += ["", "Rounds (req/s or tx/s, p50 / p99 ms):", "", "| round | load | vivirk | PostgreSQL | vivirk none |",
           "|---|---|---:|---:|---:|"]
    cell = lambda r: f"{x(r['rps'])} ({r['p50']:.2f} / {r['p99']:.2f})" + (f" !! {r['bad']}" if r["bad"] else "")
    for i in range(rounds):
        md.append(f"| {i + 1} | history reads | {cell(reads['vivirk'][i])} | {cell(reads['pg'][i])} | – |")
    for i in range(rounds):
        md.append(f"| {i + 1} | writes | {cell(writes['fsync'][i])} | {cell(writes['pg'][i])} | "
                  f"{cell(writes['none'][i])} |")
    md += ["", "Other figures:", "",
           f"- projection rebuild runs: {', '.join(x(r) for r in rebuild)} events/s; cold starts: "
           f"{', '.join(f'{c:.3f}' for c in cold)} s (PostgreSQL: {', '.join(f'{c:.3f}' for c in pg_cold)} s).",
           f"- vivirk disk (allocated blocks, whole data dir after the seed, rebuild and starts): "
           + ", ".join(f"{d} {b / 2**20:,.0f} MiB" for d, b in v_disk.items())
           + f"; log + index alone {logidx / m['head']:,.0f} B/event ({logidx / m['head'] / raw:.2f}×).",
           f"- PostgreSQL disk: pg_total_relation_size(events) = heap {sizes['heap'] / 2**20:,.0f} MiB + TOAST "
           f"{sizes['toast'] / 2**20:,.0f} MiB + indexes {sizes['indexes'] / 2**20:,.0f} MiB (after the bulk load, "
           f"vacuum and checkpoint; WAL not counted); database {sizes['database'] / 2**20:,.0f} MiB.",
           f"- raw JSON: the export's envelopes as JSON lines, {raw:,.0f} bytes/event (with ids, times, actor and "
           "the four SHA-256 hashes vivirk keeps; PostgreSQL stores no hashes).",
           f"- memory: vivirk VmHWM of the fsync server over the write warm-up and rounds (a fresh process; "
           f"{x(rss_reads)} MB over the read rounds); PostgreSQL: the largest 5-s sample of the summed PSS of the postmaster and its backends "
           f"during its write rounds (shared_buffers counted once, page cache not counted by either).",
           f"- {integrity}; vivirk answers other than 2xx are flagged with !! above.",
           "", "PostgreSQL settings: " + "; ".join(settings.split("\n"))]
    text = "\n".join(md) + "\n"
    out = os.path.join(a.results, f"compare-{now.strftime('%Y%m%d-%H%M%S')}.md")
    with open(out, "w") as f:
        f.write(text)
    print("\n" + text)
    log(f"saved {out}")


if __name__ == "__main__":
    main()
