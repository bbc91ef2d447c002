#!/usr/bin/env python3
r"""The comparison's write load (or, with --reads, its history reads) alone, against vivirk only,
with what it does to the server: for working on one path between runs of `benches/compare.sh`
(which takes ~9 minutes).

    python3 benches/writes.py [--durability fsync|none] [--reads] [--rounds 3] [--seconds 20] [--work DIR]

Seeds the comparison's data set once into --work (1,000,000 events over 10,000 courses, `vivirk
bench seed`; kept and reused while its manifest is there), then per run: copies it, starts
`vivirk serve` on the copy, measures the start and the RSS at rest, runs the check-in POSTs of
compare.sh (random courses, 64 connections, wrk) — or its 50-item contact-history GETs with
--reads — for a warm-up and the rounds, and prints one JSON
line: throughput and p99 per round, the server's CPU time per request, peak and final RSS, the log's sync counters, and the moments
when appends fell below 5,000 events/s (the log head sampled every 100 ms): a stall of the whole
write path shows there, one connection's slow request does not.
"""
import argparse, json, os, shutil, sys, threading, time, types, urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as C  # noqa: E402  (the comparison's server handling, seed and wrk scripts)


def metrics(v):
    txt = urllib.request.urlopen(v.base + "/metrics", timeout=5).read().decode()
    return {l.split()[0]: float(l.split()[-1]) for l in txt.splitlines() if l.startswith("vivirk_")
            and " " in l and "{" not in l}


def cpu_s(pid):
    """The process's user + system CPU seconds so far."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(root, "target", "release", "vivirk"))
    ap.add_argument("--work", default="/var/tmp/vivirk-writes")
    ap.add_argument("--durability", default="fsync")
    ap.add_argument("--reads", action="store_true", help="the comparison's history reads instead of writes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--port", type=int, default=18290)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    seed, manifest = os.path.join(a.work, "seed"), os.path.join(a.work, "manifest.json")
    if not os.path.exists(manifest):
        shutil.rmtree(seed, ignore_errors=True)
        C.sh([a.binary, "bench", "seed", "--data-dir", seed, "--events", "1000000", "--courses", "10000",
              "--manifest", manifest], env=dict(os.environ, VIVIRK_LOG="warn"))
        s = C.Vivirk(a, seed, a.port, "fsync", "seed")
        s.start()  # the first start creates the audit store and brings the projections up to date
        s.stop()
    m = json.load(open(manifest))
    run = os.path.join(a.work, "run")
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(seed, run, symlinks=True)
    v = C.Vivirk(a, run, a.port, a.durability, "run")
    try:
        start = v.start()
        rest = C.proc_kb(v.proc.pid, "VmRSS") / 1024
        cs = m["courses"]
        if a.reads:
            cws = m["caseworkers"]
            lua = os.path.join(a.work, "get.lua")
            C.lua_random_requests(lua, "GET", [f"/v1/courses/{c['id']}/contacts?limit=50" for c in cs],
                                  [v.token(u, m["password"]) for u in cws], [cws.index(c["caseworker"]) for c in cs])
        else:
            mentors = m["mentors"]
            tokens = [v.token(u, m["password"]) for u in mentors]
            lua = os.path.join(a.work, "post.lua")
            C.lua_random_requests(lua, "POST", [f"/v1/courses/{c['id']}/check-ins" for c in cs], tokens,
                                  [mentors.index(c["mentor"]) for c in cs],
                                  [json.dumps({"placement_id": c["placement_id"], **C.CHECK_IN}) for c in cs])
        C.run_wrk(a, v, lua, 5)
        v.reset_peak_rss()
        heads, stop = [], [False]

        def sample():
            while not stop[0]:
                try:
                    heads.append((time.monotonic(), metrics(v).get("vivirk_log_head_position", 0)))
                except OSError:
                    pass
                time.sleep(0.1)

        t = threading.Thread(target=sample)
        t.start()
        cpu0 = cpu_s(v.proc.pid)
        rounds = [C.run_wrk(a, v, lua, a.seconds) for _ in range(a.rounds)]
        cpu = cpu_s(v.proc.pid) - cpu0
        stop[0] = True
        t.join()
        end = metrics(v)
        out = {
            "load": "reads" if a.reads else "writes",
            "durability": a.durability,
            "start_s": round(start, 3),
            "rss_at_rest_mb": round(rest),
            "rounds": [{"rps": round(r["rps"]), "p99_ms": r["p99"], "bad": r["bad"]} for r in rounds],
            "server_cpu_us_per_request": round(cpu * 1e6 / max(1, sum(r["n"] for r in rounds))),
            "peak_rss_mb": round(v.peak_rss_mb()),
            "end_rss_mb": round(C.proc_kb(v.proc.pid, "VmRSS") / 1024),
            "log_head": int(end.get("vivirk_log_head_position", 0)),
            "slow_syncs": int(end.get("vivirk_log_slow_syncs_total", 0)),
            "max_sync_ms": round(end.get("vivirk_log_max_sync_seconds", 0) * 1000, 1),
        }
        if not a.reads:
            out["dips_below_5000_per_s"] = [
                (round(t1 - heads[0][0], 1), int((h1 - h0) / (t1 - t0)))
                for (t0, h0), (t1, h1) in zip(heads, heads[1:]) if (h1 - h0) / (t1 - t0) < 5000
            ]
        print(json.dumps(out))
    finally:
        v.stop()
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
