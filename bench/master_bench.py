#!/usr/bin/env python3
"""Master benchmarks: clusterd vs PM2 (and nginx) side by side in one run.

Measures, for the same Node worker (bench/master/server.js, 2 workers):
  1. master daemon RSS and private (anonymous) memory (and clusterd's orphan reaper's)
  2. `clusterd status` vs `pm2 list` wall time (hyperfine)
  3. SIGKILL of a worker -> replacement online / serving
  4. memory limit: time from a leaking worker passing max_memory_restart to
     its replacement, and the RSS it reached
  5. failed requests during a reload under wrk -c100
  6. new-connection throughput (Connection: close) through the shared socket,
     with nginx (2 workers, static reply) as the reference
  7. spread of new connections across the workers
Usage: bench/master_vs_pm2.sh (sets CLUSTERD, PM2, NODE_PATH).
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTERD = os.environ["CLUSTERD"]
PM2 = os.environ["PM2"]
TESTAPP = os.environ.get("TESTAPP", "")
SERVER_JS = os.path.join(HERE, "master", "server.js")
LEAK_JS = os.path.join(HERE, "master", "leak.js")
NODE = shutil.which("node")
TMP = tempfile.mkdtemp(prefix="clusterd-bench-")
CD_HOME = os.path.join(TMP, "cd-home")
PM2_HOME = os.path.join(TMP, "pm2-home")
ENV = dict(os.environ, PM2_HOME=PM2_HOME)
REPS = int(os.environ.get("REPS", "5"))
results = {}


def log(*a):
    print("[%s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def ctl(req):
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.path.join(CD_HOME, "clusterd.sock"))
    s.sendall((json.dumps(req) + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    return json.loads(buf)


def cd(*args, check=True):
    return subprocess.run([CLUSTERD, "--home", CD_HOME, *args], check=check, capture_output=True, text=True)


def pm2(*args, check=True):
    return subprocess.run([PM2, *args], env=ENV, check=check, capture_output=True, text=True, timeout=120)


def mem(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])
    return out


def http_get(port, path="/", timeout=0.5):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.sendall(("GET %s HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n" % path).encode())
        data = b""
        while True:
            c = s.recv(4096)
            if not c:
                break
            data += c
        s.close()
        return data.split(b"\r\n\r\n", 1)[1].decode() if b"\r\n\r\n" in data else None
    except OSError:
        return None


def wait_serving(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        if http_get(port, "/pid"):
            return True
        time.sleep(0.05)
    raise SystemExit("nothing serves on port %d" % port)


def node_app(name, script, port, instances=2, extra=None):
    a = {"name": name, "script": NODE, "args": [script], "exec_mode": "cluster", "instances": instances,
         "listen": {"kind": "tcp", "host": "127.0.0.1", "port": port, "text": "127.0.0.1:%d" % port},
         "base_dir": HERE, "env": {}}
    a.update(extra or {})
    return a


def cd_start(app):
    r = ctl({"cmd": "start", "apps": [app]})
    if not r.get("ok"):
        raise SystemExit("clusterd start failed: %s" % r)


def cd_rows(name):
    return [w for w in ctl({"cmd": "status"})["workers"] if w["app"] == name and w["role"] == "main"]


def wait_cd_online(name, n, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        rows = cd_rows(name)
        if len(rows) == n and all(w["state"] == "online" for w in rows):
            return rows
        time.sleep(0.01)
    raise SystemExit("clusterd app %s not online" % name)


def pm2_pids(name):
    out = pm2("jlist").stdout
    return [p["pid"] for p in json.loads(out) if p["name"] == name and p["pm2_env"]["status"] == "online"]


def god_pid():
    with open(os.path.join(PM2_HOME, "pm2.pid")) as f:
        return int(f.read())


def wrk(url, seconds, conns=100, extra=()):
    out = subprocess.run(["wrk", "-t2", "-c%d" % conns, "-d%ds" % seconds, *extra, url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    req = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    sock = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(m.group(1)) if m else 0
    return {"requests": req, "rps": rps, "errors": sock + non2xx, "raw": out}


def ratio(a, b):
    return (a / b) if b else float("nan")


# ---------------------------------------------------------------- setup
def setup():
    os.makedirs(PM2_HOME, exist_ok=True)
    cd("daemon")
    global CD_PORT, PM2_PORT
    CD_PORT, PM2_PORT = free_port(), free_port()
    cd_start(node_app("web", SERVER_JS, CD_PORT))
    wait_cd_online("web", 2)
    wait_serving(CD_PORT)
    subprocess.run([PM2, "start", SERVER_JS, "-i", "2", "--name", "web"], env=dict(ENV, PORT=str(PM2_PORT)),
                   check=True, capture_output=True, timeout=120)
    wait_serving(PM2_PORT)
    time.sleep(1)


def bench_memory():
    ping = ctl({"cmd": "ping"})
    cdm = mem(int(ping["pid"]))
    pmm = mem(god_pid())
    results["memory"] = {"clusterd": cdm, "pm2": pmm}
    log("daemon RSS: clusterd %d kB (anon %d kB), PM2 %d kB (anon %d kB)" %
        (cdm["VmRSS"], cdm["RssAnon"], pmm["VmRSS"], pmm["RssAnon"]))
    # The orphan reaper runs beside the daemon (docs/MASTER.md); PM2 has none.
    if ping.get("reaper"):
        rm = mem(int(ping["reaper"]))
        results["reaper_memory"] = rm
        log("clusterd's orphan reaper RSS: %d kB (anon %d kB)" % (rm["VmRSS"], rm["RssAnon"]))


def bench_status():
    out = os.path.join(TMP, "status.json")
    subprocess.run(["hyperfine", "-N", "--warmup", "3", "--runs", "30", "--export-json", out,
                    "%s --home %s status" % (CLUSTERD, CD_HOME),
                    "%s --home %s status --json" % (CLUSTERD, CD_HOME),
                    "%s list" % PM2, "%s jlist" % PM2],
                   env=ENV, check=True, capture_output=True, timeout=600)
    with open(out) as f:
        r = json.load(f)["results"]
    med = [x["median"] * 1000 for x in r]
    results["status_ms"] = {"clusterd status": med[0], "clusterd status --json": med[1],
                            "pm2 list": med[2], "pm2 jlist": med[3]}
    log("status: clusterd %.2f ms, pm2 list %.1f ms" % (med[0], med[2]))


def cd_killtest(name, port, reps):
    """SIGKILL one worker; time until status shows its replacement online, and
    until a new connection is answered by a pid that was not there before."""
    online, serving = [], []
    for i in range(reps):
        rows = cd_rows(name)
        before = {str(w["pid"]) for w in rows}
        victim = rows[i % len(rows)]
        old, slot = victim["pid"], victim["id"]
        t0 = time.perf_counter()
        os.kill(old, signal.SIGKILL)
        t_on = t_serve = None
        while time.perf_counter() - t0 < 20 and (t_on is None or (port and t_serve is None)):
            if t_on is None:
                w = [x for x in cd_rows(name) if x["id"] == slot]
                if w and w[0]["pid"] not in (0, old) and w[0]["state"] == "online":
                    t_on = time.perf_counter() - t0
            if port and t_serve is None:
                body = http_get(port, "/pid", 0.05)
                m = re.search(r"\d+", body or "")
                if m and m.group(0) not in before:
                    t_serve = time.perf_counter() - t0
            time.sleep(0.0005)
        online.append(t_on * 1000)
        if t_serve:
            serving.append(t_serve * 1000)
        time.sleep(1.2)  # past min_uptime: each kill is a healthy-exit restart
    return (statistics.median(online), statistics.median(serving) if serving else float("nan"))


def bench_kill():
    on, serve = cd_killtest("web", CD_PORT, REPS)
    res = {"clusterd_node": {"online_ms": on, "serving_ms": serve}}
    if TESTAPP:
        port = free_port()
        cd_start({"name": "own", "script": TESTAPP, "args": ["--ready"], "exec_mode": "cluster", "instances": 2,
                  "wait_ready": True, "base_dir": HERE,
                  "listen": {"kind": "tcp", "host": "127.0.0.1", "port": port, "text": "x"}})
        wait_cd_online("own", 2)
        o2, s2 = cd_killtest("own", port, REPS)
        res["clusterd_testapp"] = {"online_ms": o2, "serving_ms": s2}
        ctl({"cmd": "delete", "target": "own"})
    out = subprocess.run([NODE, os.path.join(os.environ["PEERS"], "lib", "pm2_killtest.js"), "web", str(PM2_PORT), str(REPS)],
                         env=ENV, capture_output=True, text=True, timeout=300).stdout
    summary = json.loads(re.search(r"KILLTEST_SUMMARY (.*)", out).group(1))
    res["pm2_node"] = {"online_ms": summary["median_online_ms"], "serving_ms": summary["median_serving_ms"]}
    results["kill"] = res
    log("SIGKILL -> online/serving: clusterd %.1f/%.1f ms, PM2 %.1f/%.1f ms" %
        (on, serve, res["pm2_node"]["online_ms"], res["pm2_node"]["serving_ms"]))


def watch_leak(pids_fn, limit_mb, cycles, timeout):
    """Samples RSS every 20 ms; per worker: time from first RSS > limit to its exit, and peak RSS."""
    seen = {}
    done = []
    end = time.time() + timeout
    while time.time() < end and len(done) < cycles:
        for pid in pids_fn():
            if pid in seen or pid <= 0:
                continue
            seen[pid] = {"cross": None, "peak": 0}
        for pid, st in seen.items():
            if st.get("gone"):
                continue
            try:
                rss = mem(pid)["VmRSS"] / 1024
            except (OSError, KeyError):
                st["gone"] = time.time()
                if st["cross"]:
                    done.append({"pid": pid, "reaction_s": st["gone"] - st["cross"], "peak_mb": st["peak"]})
                continue
            st["peak"] = max(st["peak"], rss)
            if rss > limit_mb and st["cross"] is None:
                st["cross"] = time.time()
        time.sleep(0.02)
    return done


def bench_leak():
    limit = 150
    port = free_port()
    cd_start(node_app("leak", LEAK_JS, port, 1, {"max_memory_restart": limit << 20, "memory_check_interval": 500}))
    wait_cd_online("leak", 1)
    cd_res = watch_leak(lambda: [w["pid"] for w in cd_rows("leak")], limit, 2, 60)
    ctl({"cmd": "delete", "target": "leak"})
    pm_port = free_port()
    subprocess.run([PM2, "start", LEAK_JS, "-i", "1", "--name", "leak", "--max-memory-restart", "%dM" % limit],
                   env=dict(ENV, PORT=str(pm_port)), check=True, capture_output=True, timeout=120)
    pm_res = watch_leak(lambda: pm2_pids("leak"), limit, 1, 90)
    pm2("delete", "leak", check=False)
    results["leak"] = {"clusterd": cd_res, "pm2": pm_res}
    log("memory limit: clusterd %s, PM2 %s" % (cd_res, pm_res))


def bench_reload():
    res = {}
    for label, port, cmd in (("clusterd", CD_PORT, [CLUSTERD, "--home", CD_HOME, "reload", "web"]),
                             ("pm2", PM2_PORT, [PM2, "reload", "web"])):
        runs = []
        for _ in range(3):
            def trigger():
                time.sleep(2)
                subprocess.run(cmd, env=ENV, capture_output=True, timeout=120)
            t = threading.Thread(target=trigger)
            t.start()
            w = wrk("http://127.0.0.1:%d/" % port, 6)
            t.join()
            runs.append(w["errors"])
            time.sleep(1.5)
        res[label] = runs
    results["reload_failed"] = res
    log("failed requests per reload under wrk -c100: %s" % res)


def bench_throughput():
    nginx_port = free_port()
    ndir = os.path.join(TMP, "nginx")
    os.makedirs(ndir, exist_ok=True)
    conf = os.path.join(ndir, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""worker_processes 2; pid %s/nginx.pid; error_log %s/error.log; daemon off;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:%d reuseport; location / { return 200 "ok"; } } }
""" % (ndir, ndir, nginx_port))
    # A session of its own, as the clusterd and PM2 daemons have (see bench/master_accept.py).
    ng = subprocess.Popen(["nginx", "-c", conf, "-p", ndir], stderr=subprocess.DEVNULL,
                          start_new_session=True)
    try:
        wait_serving(nginx_port)
        res = {}
        for label, port in (("clusterd_node", CD_PORT), ("pm2_node", PM2_PORT), ("nginx", nginx_port)):
            wrk("http://127.0.0.1:%d/" % port, 2, extra=("-H", "Connection: close"))  # warm-up
            res[label] = wrk("http://127.0.0.1:%d/" % port, 8, extra=("-H", "Connection: close"))["rps"]
        if TESTAPP:
            port = free_port()
            cd_start({"name": "own", "script": TESTAPP, "args": ["--ready"], "exec_mode": "cluster", "instances": 2,
                      "wait_ready": True, "base_dir": HERE,
                      "listen": {"kind": "tcp", "host": "127.0.0.1", "port": port, "text": "x"}})
            wait_cd_online("own", 2)
            res["clusterd_testapp"] = wrk("http://127.0.0.1:%d/" % port, 8, extra=("-H", "Connection: close"))["rps"]
            ctl({"cmd": "delete", "target": "own"})
    finally:
        ng.send_signal(signal.SIGQUIT)
        ng.wait(timeout=10)
    results["conn_close_rps"] = res
    log("new-connection throughput: %s" % res)


def bench_spread():
    res = {}
    for label, port in (("clusterd", CD_PORT), ("pm2", PM2_PORT)):
        counts = {}
        for _ in range(2000):
            pid = http_get(port, "/pid")
            counts[pid] = counts.get(pid, 0) + 1
        res[label] = sorted(counts.values(), reverse=True)
    results["spread"] = res
    log("connection spread over 2000 connections: %s" % res)


def main():
    try:
        setup()
        bench_memory()
        bench_status()
        bench_kill()
        bench_leak()
        bench_reload()
        bench_throughput()
        bench_spread()
        bench_memory()
    finally:
        subprocess.run([CLUSTERD, "--home", CD_HOME, "kill"], capture_output=True, timeout=60)
        subprocess.run([PM2, "kill"], env=ENV, capture_output=True, timeout=60)
        shutil.rmtree(TMP, ignore_errors=True)
    print(json.dumps(results, indent=1, default=str))
    m, s, k = results["memory"], results["status_ms"], results["kill"]
    rows = [
        ("daemon RSS (kB)", m["clusterd"]["VmRSS"], m["pm2"]["VmRSS"]),
        ("daemon private/anon RSS (kB)", m["clusterd"]["RssAnon"], m["pm2"]["RssAnon"]),
        ("orphan reaper RSS / private (kB)", "%d / %d" % (results["reaper_memory"]["VmRSS"],
                                                          results["reaper_memory"]["RssAnon"])
         if "reaper_memory" in results else "-", "-"),
        ("status wall time (ms, median)", s["clusterd status"], s["pm2 list"]),
        ("status --json / jlist (ms)", s["clusterd status --json"], s["pm2 jlist"]),
        ("SIGKILL -> replacement online (ms, Node)", k["clusterd_node"]["online_ms"], k["pm2_node"]["online_ms"]),
        ("SIGKILL -> replacement serving (ms, Node)", k["clusterd_node"]["serving_ms"], k["pm2_node"]["serving_ms"]),
    ]
    lk = results["leak"]
    if lk["clusterd"] and lk["pm2"]:
        rows.append(("over memory limit -> replaced (s)", statistics.median(x["reaction_s"] for x in lk["clusterd"]),
                     statistics.median(x["reaction_s"] for x in lk["pm2"])))
        rows.append(("peak RSS of the leaking worker (MB, limit 150)", max(x["peak_mb"] for x in lk["clusterd"]),
                     max(x["peak_mb"] for x in lk["pm2"])))
    rl = results["reload_failed"]
    rows.append(("failed requests per reload, wrk -c100 (3 runs)", "/".join(map(str, rl["clusterd"])),
                 "/".join(map(str, rl["pm2"]))))
    t = results["conn_close_rps"]
    rows.append(("req/s, Connection: close, Node x2", t["clusterd_node"], t["pm2_node"]))
    sp = results["spread"]
    rows.append(("connections per worker (of 2000)", "/".join(map(str, sp["clusterd"])), "/".join(map(str, sp["pm2"]))))
    print("\n| metric | clusterd | PM2 | clusterd / PM2 |\n|---|---|---|---|")
    for name, a, b in rows:
        r = "%.3g" % ratio(a, b) if isinstance(a, (int, float)) and isinstance(b, (int, float)) else ""
        fa = "%.4g" % a if isinstance(a, float) else str(a)
        fb = "%.4g" % b if isinstance(b, float) else str(b)
        print("| %s | %s | %s | %s |" % (name, fa, fb, r))
    print("\nnginx (2 workers, static reply) Connection: close req/s: %.0f; clusterd+Node / nginx = %.3g"
          % (t["nginx"], ratio(t["clusterd_node"], t["nginx"])))
    if "clusterd_testapp" in t:
        print("clusterd + C++ test worker: %.0f req/s (%.3g of nginx); SIGKILL -> online %.1f ms, serving %.1f ms"
              % (t["clusterd_testapp"], ratio(t["clusterd_testapp"], t["nginx"]),
                 k["clusterd_testapp"]["online_ms"], k["clusterd_testapp"]["serving_ms"]))


if __name__ == "__main__":
    main()
