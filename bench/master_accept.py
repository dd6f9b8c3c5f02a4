#!/usr/bin/env python3
"""New-connection throughput through the master's shared sockets, against nginx, in one run.

One request per connection (`wrk -H 'Connection: close'`), so every request is an accept on a
listening socket. The systems, each with the same number of processes:
  nginx       nginx, `return 200`, `listen ... reuseport` (one socket per worker)
  clusterd    the C++ test worker (tests/master/programs/testapp.cpp) in cluster mode under
              the clusterd master: one SO_REUSEPORT socket per slot, held by the master
  standalone  the same test worker without a master: WORKERS processes, each binding its
              own SO_REUSEPORT socket on one port (the backlog is the test worker's 128)
Each server runs in a session of its own, as a daemon does (see the comment at nginx's start).
  builtin     the built-in worker (`script: builtin:worker`, libuv/epoll) in cluster mode
              under the master, answering GET /health (its Redis check cached for a second;
              a redis-server is started for it)
Rounds alternate between the systems in a rotating order so that a change in the machine's
load hits each alike; the medians and the ratio to nginx are printed, with errors (socket errors and non-2xx answers).

Usage: bench/master_accept.py [BUILD_DIR]   (env: ROUNDS=5, DUR=5, CONNS=100, WORKERS=2)
"""
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
CLUSTERD = os.path.join(BUILD, "cli", "clusterd")
TESTAPP = os.path.join(BUILD, "tests", "master", "master_testapp")
ROUNDS = int(os.environ.get("ROUNDS", "5"))
DUR = int(os.environ.get("DUR", "5"))
CONNS = int(os.environ.get("CONNS", "100"))
WORKERS = int(os.environ.get("WORKERS", "2"))
TMP = tempfile.mkdtemp(prefix="clusterd-accept-")
HOME = os.path.join(TMP, "home")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_serving(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nothing serves on port %d" % port)


def wrk(port, path="/"):
    out = subprocess.run(["wrk", "-t2", "-c%d" % CONNS, "-d%ds" % DUR, "-H", "Connection: close",
                          "http://127.0.0.1:%d%s" % (port, path)], capture_output=True, text=True,
                         timeout=DUR + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, (sum(int(x) for x in m.groups()) if m else 0) + (int(bad.group(1)) if bad else 0)


def main():
    for tool in ("wrk", "nginx", "redis-server"):
        if not shutil.which(tool):
            raise SystemExit("%s is required" % tool)
    ports = {"nginx": free_port(), "clusterd": free_port()}
    ndir = os.path.join(TMP, "nginx")
    os.makedirs(ndir)
    conf = os.path.join(ndir, "nginx.conf")
    with open(conf, "w") as f:
        f.write("worker_processes %d; pid %s/nginx.pid; error_log %s/error.log; daemon off;\n"
                "events { worker_connections 4096; }\n"
                "http { access_log off; server { listen 127.0.0.1:%d reuseport; "
                "location / { return 200 \"ok\"; } } }\n" % (WORKERS, ndir, ndir, ports["nginx"]))
    # Each server in a session of its own, away from wrk's, as when it runs as a daemon: Linux's
    # scheduler autogroups share the CPU between sessions first (the clusterd master and its
    # workers are one session, nginx's master and workers another).
    procs = [subprocess.Popen(["nginx", "-c", conf, "-p", ndir], stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        subprocess.run([CLUSTERD, "--home", HOME, "daemon"], check=True, capture_output=True)
        app = {"name": "accept", "script": TESTAPP, "args": ["--ready"], "exec_mode": "cluster",
               "instances": WORKERS, "wait_ready": True, "base_dir": TMP,
               "listen": {"kind": "tcp", "host": "127.0.0.1", "port": ports["clusterd"],
                          "text": "127.0.0.1:%d" % ports["clusterd"]}}
        s = socket.socket(socket.AF_UNIX)
        s.connect(os.path.join(HOME, "clusterd.sock"))
        s.sendall((json.dumps({"cmd": "start", "apps": [app]}) + "\n").encode())
        reply = json.loads(s.makefile().readline())
        if not reply.get("ok"):
            raise SystemExit("clusterd start failed: %s" % reply)
        ports["standalone"] = free_port()
        one = "%s --port %d --reuseport & " % (TESTAPP, ports["standalone"])
        procs.append(subprocess.Popen(["sh", "-c", one * WORKERS + "wait"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))
        redis_port = free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "yes", "--dir", TMP],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        wait_serving(redis_port)
        ports["builtin"] = free_port()
        eco = os.path.join(TMP, "builtin.yaml")
        with open(eco, "w") as f:
            f.write("apps:\n  - name: builtin\n    script: builtin:worker\n    exec_mode: cluster\n"
                    "    instances: %d\n    listen: 127.0.0.1:%d\n    wait_ready: true\n"
                    "queue:\n  redis_url: redis://127.0.0.1:%d\n" % (WORKERS, ports["builtin"], redis_port))
        subprocess.run([CLUSTERD, "--home", HOME, "start", eco], check=True, capture_output=True, timeout=60)
        for port in ports.values():
            wait_serving(port)
        names = list(ports)
        paths = {n: "/health" if n == "builtin" else "/" for n in names}
        for name in names:
            wrk(ports[name], paths[name])  # warm-up
        rps = {n: [] for n in names}
        errors = {n: 0 for n in names}
        for r in range(ROUNDS):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                x, e = wrk(ports[name], paths[name])
                rps[name].append(x)
                errors[name] += e
            print("round %d: %s" % (r + 1, ", ".join("%s %.0f" % (n, rps[n][-1]) for n in names)),
                  file=sys.stderr, flush=True)
        base = statistics.median(rps["nginx"])
        print("date %s, %d worker(s) each, wrk -t2 -c%d -d%ds Connection: close, %d rounds"
              % (time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()), WORKERS, CONNS, DUR, ROUNDS))
        for name in names:
            med = statistics.median(rps[name])
            print("%-10s median %8.0f req/s  (%.3f of nginx)  rounds %s  errors %d"
                  % (name, med, med / base, " / ".join("%.0f" % x for x in rps[name]), errors[name]))
    finally:
        subprocess.run([CLUSTERD, "--home", HOME, "kill"], capture_output=True, timeout=60)
        for p in procs:
            # A server started in its own session leads its process group: stop all of it.
            try:
                os.killpg(p.pid, 15)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
