"""Helpers shared by the HTTP benchmarks (`load.py`, `soak.py`): a tiny JSON client, starting
`vivirk serve` on a temp data dir, and running wrk and reading its output. Python 3.11 stdlib.
"""
import json, os, shutil, signal, subprocess, sys, tempfile, threading, time, urllib.error, urllib.request


def call(base, method, path, token=None, body=None, ok=(200, 201)):
    """One JSON request; exits with the problem on an unexpected status."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            if r.status not in ok:
                sys.exit(f"{method} {path}: {r.status}")
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        sys.exit(f"{method} {path}: {e.code} {e.read().decode(errors='replace')}")


def wrk(args, url, script, seconds, connections, threads=2, timeout=None, script_args=()):
    """Runs wrk; returns (requests/s, {percentile: ms}, the Non-2xx line or None, full output)."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script]
    if timeout:
        cmd += ["--timeout", timeout]
    cmd.append(url)
    if script_args:
        cmd += ["--", *map(str, script_args)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps, lat, non2xx = parse_wrk(out)
    return rps, lat, non2xx, out


def ms(v):
    """wrk's '1.23ms' / '456.00us' / '1.50s' / '2.00m' in milliseconds."""
    for suffix, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60000.0)):
        if v.endswith(suffix):
            return float(v[: -len(suffix)]) * f
    return float(v)


def parse_wrk(out):
    rps = float(next(l for l in out.splitlines() if l.startswith("Requests/sec")).split()[1])
    lat = {}
    in_dist = False
    for l in out.splitlines():
        if "Latency Distribution" in l:
            in_dist = True
            continue
        if in_dist:
            parts = l.split()
            if len(parts) == 2 and parts[0].endswith("%"):
                lat[parts[0]] = ms(parts[1])
            else:
                in_dist = False
    non2xx = next((l.strip() for l in out.splitlines() if "Non-2xx" in l), None)
    return rps, lat, non2xx


def socket_errors(out):
    """wrk's 'Socket errors: connect 0, read 0, write 0, timeout 0' as a dict (zeros if absent)."""
    errs = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    for l in out.splitlines():
        if "Socket errors:" in l:
            for part in l.split(":", 1)[1].split(","):
                k, v = part.split()
                errs[k] = int(v)
    return errs


class Server:
    """`vivirk serve` on a free loopback port (read from its stdout) and a data directory.

    `config` is TOML text written to a file and passed with `--config`; stderr goes to
    `stderr_path` (or nowhere)."""

    def __init__(self, binary, data_dir, durability="fsync", config=None, stderr_path=None, log_level="warn"):
        self.data_dir = data_dir
        args = [binary, "serve", "--data-dir", data_dir, "--bind", "127.0.0.1:0", "--durability", durability]
        self._cfg_dir = None
        if config:
            self._cfg_dir = tempfile.mkdtemp(prefix="vivirk-cfg-")
            cfg = os.path.join(self._cfg_dir, "vivirk.toml")
            with open(cfg, "w") as f:
                f.write(config)
            args += ["--config", cfg]
        self._stderr = open(stderr_path, "w") if stderr_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, env=dict(os.environ, VIVIRK_LOG=log_level), stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True)
        self.base = None
        self.admin_password = None
        deadline = time.time() + 120
        for line in self.proc.stdout:
            prefix = "First start: created the account `admin` with password: "
            if line.startswith(prefix):
                self.admin_password = line[len(prefix):].strip()
            if line.startswith("vivirk listening on "):
                self.base = line.split()[3]
                break
            if time.time() > deadline:
                break
        if not self.base:
            self.stop()
            sys.exit(f"{binary} serve did not start (exit code {self.proc.poll()})")
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        self.pid = self.proc.pid

    def stop(self, timeout=30):
        """SIGTERM (a graceful shutdown), SIGKILL after `timeout`. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._stderr is not subprocess.DEVNULL:
            self._stderr.close()
        if self._cfg_dir:
            shutil.rmtree(self._cfg_dir, ignore_errors=True)
        return self.proc.returncode

    def metrics(self):
        """The Prometheus text as {name{labels}: float}."""
        text = urllib.request.urlopen(self.base + "/metrics", timeout=30).read().decode()
        out = {}
        for l in text.splitlines():
            if l and not l.startswith("#"):
                k, _, v = l.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out
