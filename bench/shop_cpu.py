#!/usr/bin/env python3
"""CPU time of the shop stack's processes, for bench/shop.sh.

  shop_cpu.py snapshot HOME FILE     # CPU seconds per role of the stack in HOME
  shop_cpu.py diff BEFORE AFTER SEC  # print the cores each role used in SEC seconds

Only processes whose environment has CLUSTERD_HOME=HOME count (the master
passes its environment to its apps, and bench/shop.sh exports it to wrk),
so other stacks on the machine are left out. Roles: postgres (every postgres process), redis, shop-api and shop-jobs (the
built-in workers, by their --app), wrk, and master (the other clusterd
processes). Processes that exit between the snapshots are not counted.
"""
import json
import os
import sys

TICK = os.sysconf("SC_CLK_TCK")


def role(pid, home):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if b"CLUSTERD_HOME=" + home.encode() not in f.read().split(b"\0"):
                return None, 0.0
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None, 0.0
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
    exe = os.path.basename(args[0].decode(errors="replace")) if args and args[0] else comm
    if comm == "postgres" or exe == "postgres":
        return "postgres", cpu
    if comm.startswith("redis-server"):
        return "redis", cpu
    if comm == "wrk":
        return "wrk", cpu
    if exe == "clusterd" or comm == "clusterd":
        if b"worker" in args and b"--app" in args:
            return args[args.index(b"--app") + 1].decode(), cpu
        return "master", cpu
    return None, 0.0


def snapshot(home):
    out = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            r, cpu = role(pid, home)
            if r:
                out[r] = out.get(r, 0.0) + cpu
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
