#!/usr/bin/env python3
"""HTTP load benchmark: durable check-in POSTs and contact-history GETs against `vivirk serve`.

Starts the release binary on a temp data dir (loopback only), sets up accounts, a company and
COURSES courses each with a mentor on a placement, then runs wrk:
  - POST /v1/courses/{id}/check-ins at 64 connections, round-robin over the courses;
  - GET  /v1/courses/{id}/contacts?limit=50 at 64 connections.
Prints wrk's figures (requests/s, latency p50/p99). Usage:
  benches/load.py [--binary target/release/vivirk] [--seconds 15] [--courses 256] [--durability fsync]
"""
import argparse, json, os, shutil, signal, subprocess, sys, tempfile, time, urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the checkout
from vivirk_http import call, wrk

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/vivirk")
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--courses", type=int, default=256)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--durability", default="fsync")
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--no-access-log", action="store_true", help="turn the access log off, to measure its cost")
    ap.add_argument("--only", choices=["post", "get"], help="run one of the two loads")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    data = tempfile.mkdtemp(prefix="vivirk-load-")
    base = f"http://127.0.0.1:{a.port}"
    env = dict(os.environ, VIVIRK_LOG="warn")
    args = [a.binary, "serve", "--data-dir", data, "--bind", f"127.0.0.1:{a.port}", "--durability", a.durability]
    if a.no_access_log:
        cfg = os.path.join(tempfile.mkdtemp(prefix="vivirk-cfg-"), "vivirk.toml")
        with open(cfg, "w") as f:
            f.write("[audit]\naccess_log_enabled = false\n")
        args += ["--config", cfg]
    server = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/readyz")
                break
            except Exception:
                time.sleep(0.05)
        password = open(os.path.join(data, "initial-admin-password")).read().strip()
        admin = call(base, "POST", "/v1/auth/token", body={"username": "admin", "password": password})["access_token"]
        pw = "load-test-password-1"
        ids = {}
        for name, role in [("cw1", "caseworker"), ("yp1", "young_person"), ("mentor1", "mentor")]:
            ids[name] = call(base, "POST", "/v1/accounts", admin,
                             {"username": name, "display_name": name, "role": role, "password": pw})["account_id"]
        cw = call(base, "POST", "/v1/auth/token", body={"username": "cw1", "password": pw})["access_token"]
        mentor = call(base, "POST", "/v1/auth/token", body={"username": "mentor1", "password": pw})["access_token"]
        company = call(base, "POST", "/v1/companies", cw, {"name": "Load A/S", "industry": "retail", "kind": "ordinary", "cvr": None})["id"]
        courses = []
        for i in range(a.courses):
            c = call(base, "POST", "/v1/courses", cw, {"young_person": ids["yp1"], "programme": "jobafklaringsforloeb",
                     "referring_caseworker": ids["cw1"], "municipality": "Aarhus", "start_date": "2026-09-01"})["id"]
            call(base, "POST", f"/v1/courses/{c}/participants", cw, {"account_id": ids["mentor1"], "role": "mentor", "company_id": company, "relation": None})
            p = call(base, "POST", f"/v1/courses/{c}/placements", cw, {"kind": "practice_arena", "company_id": company,
                     "workplace": "ordinary", "mentor": ids["mentor1"], "hours_per_week": 12, "tasks": [], "start_date": "2026-09-01"})["id"]
            courses.append((c, p))
        # Seed history so the GET pages are full: 60 contacts per course on the first 32 courses.
        for c, _ in courses[:32]:
            for k in range(60):
                call(base, "POST", f"/v1/courses/{c}/contacts", cw, {"with": [ids["yp1"]], "channel": "phone",
                     "direction": "to_young_person", "outreach": True, "individual": True, "duration_minutes": 15,
                     "summary": f"weekly call {k}"})
        tmp = tempfile.mkdtemp(prefix="vivirk-wrk-")
        post_lua = os.path.join(tmp, "post.lua")
        with open(post_lua, "w") as f:
            f.write("local paths = {%s}\nlocal bodies = {%s}\nlocal i = 0\n" % (
                ",".join(f'"/v1/courses/{c}/check-ins"' for c, _ in courses),
                ",".join("'" + json.dumps({"placement_id": p, "attendance": "present", "wellbeing": 4,
                         "tasks_done": ["stocked shelves", "helped at the till"], "concerns": None,
                         "next_step": "try the till with support on Thursday"}) + "'" for _, p in courses)))
            f.write('request = function()\n  i = i + 1\n  local k = (i %% #paths) + 1\n  return wrk.format("POST", paths[k], '
                    '{["authorization"]="Bearer %s", ["content-type"]="application/json"}, bodies[k])\nend\n' % mentor)
        get_lua = os.path.join(tmp, "get.lua")
        with open(get_lua, "w") as f:
            f.write("local paths = {%s}\nlocal i = 0\n" % ",".join(f'"/v1/courses/{c}/contacts?limit=50"' for c, _ in courses[:32]))
            f.write('request = function()\n  i = i + 1\n  return wrk.format("GET", paths[(i %% #paths) + 1], '
                    '{["authorization"]="Bearer %s"})\nend\n' % cw)
        print(f"vivirk HTTP load, durability {a.durability}, access log {'off' if a.no_access_log else 'on'}, "
              f"{a.connections} connections, {a.seconds}s each, {a.courses} courses")
        if a.only in (None, "post"):
            rps, lat, non2xx, _ = wrk(a, base, post_lua, a.seconds, a.connections)
            print(f"check-in POST  : {rps:9.0f} req/s   p50 {lat.get('50%', 0):7.2f} ms   p99 {lat.get('99%', 0):7.2f} ms   {non2xx or 'all 2xx'}")
        if a.only in (None, "get"):
            rps, lat, non2xx, _ = wrk(a, base, get_lua, a.seconds, a.connections)
            print(f"history GET 50 : {rps:9.0f} req/s   p50 {lat.get('50%', 0):7.2f} ms   p99 {lat.get('99%', 0):7.2f} ms   {non2xx or 'all 2xx'}")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(data, ignore_errors=True)

if __name__ == "__main__":
    main()
