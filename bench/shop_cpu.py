#!/usr/bin/env python3
"""CPU time of the shop stack's processes, for bench/shop.sh.

  shop_cpu.py snapshot HOME FILE     # CPU seconds per role of the stack in HOME
  shop_cpu.py diff BEFORE AFTER SEC  # print the cores each role used in SEC seconds

Only the master of HOME (its pid in HOME/daemon.pid) and its descendants
count, so other stacks on the machine are left out; bench/shop.sh measures
wrk's own CPU separately. Roles: postgres (every postgres process), redis, shop-api and shop-jobs (the
built-in workers, by their --app), wrk, and master (the other clusterd
processes). Processes that exit between the snapshots are not counted.
"""
import json
import os
import sys

TICK = os.sysconf("SC_CLK_TCK")


def stat_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
    return comm, ppid, cpu, args


def role(comm, args):
    exe = os.path.basename(args[0].decode(errors="replace")) if args and args[0] else comm
    if comm == "postgres" or exe == "postgres" or exe.startswith("postgres:"):
        return "postgres"
    if comm.startswith("redis-server"):
        return "redis"
    if b"worker" in args and b"--app" in args:
        return args[args.index(b"--app") + 1].decode()
    if exe == "clusterd" or comm == "clusterd":
        return "master"
    return "other"


def snapshot(home):
    with open(os.path.join(home, "daemon.pid")) as f:
        master = int(f.read().split()[0])
    procs = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            st = stat_of(pid)
            if st:
                procs[int(pid)] = st
    children = {}
    for pid, (_, ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    todo = [master]
    while todo:
        pid = todo.pop()
        if pid in procs:
            comm, _, cpu, args = procs[pid]
            r = role(comm, args)
            out[r] = out.get(r, 0.0) + cpu
        todo.extend(children.get(pid, []))
    return out


if sys.argv[1] == "snapshot":
    with open(sys.argv[3], "w") as f:
        json.dump(snapshot(sys.argv[2]), f)
else:
    before = json.load(open(sys.argv[2]))
    after = json.load(open(sys.argv[3]))
    sec = float(sys.argv[4])
    parts = []
    total = 0.0
    for r in sorted(after, key=lambda r: -(after[r] - before.get(r, 0.0))):
        cores = (after[r] - before.get(r, 0.0)) / sec
        total += cores
        parts.append(f"{r} {cores:.2f}")
    print(", ".join(parts) + f" (total {total:.2f} of {os.cpu_count()})")
