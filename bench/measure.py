#!/usr/bin/env python3
"""Runs one command once and appends what it cost to a JSON-lines file.

usage: measure.py --out FILE --scenario S --tool T --round N
                  [--access-log FILE] [--registry-pid PID] [--log FILE] -- COMMAND...

Measured, for the command and every descendant it waits for:
  wall_s        wall time, from fork to reaped (monotonic clock)
  cpu_s         user + system CPU time, from wait4(2) at microsecond
                resolution (`/usr/bin/time` prints it in hundredths)
  peak_rss_mib  the largest resident set of any one process of the tree,
                as `/usr/bin/time -f %M` reports it
The command runs under `/usr/bin/time`: a child forked from this Python
process would inherit its resident set until exec, and the kernel counts
that in the child's peak, whereas /usr/bin/time forks the command from a
process of about 2 MiB. Wall and CPU time include /usr/bin/time's own start,
well under a millisecond, alike for every tool.
and around it:
  requests      the registry's access-log lines the run caused, by kind
                (manifest, blob, other), counted once the log is quiet
  registry_cpu_s  CPU time the registry process spent meanwhile
  other_cpu_s   CPU time the rest of the machine spent meanwhile: kernel
                threads (writeback) and other users, whose load makes a
                run suspect
  disk_busy_s   how long the busiest block device had I/O in flight
                meanwhile (fsync stalls show here, not in CPU time)

Round 0 is the warm-up: recorded, never counted in medians. The command's
standard output is discarded, its standard error goes to --log; a command
that fails prints that log and makes this script fail.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Combined log format: ... "METHOD PATH PROTO" STATUS ...
REQUEST = re.compile(r'"([A-Z]+) (\S+) HTTP/[^"]*" (\d{3})')
# How long the access log must stay unchanged before it counts as complete.
QUIET_S = 0.05
QUIET_MAX_S = 2.0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--access-log")
    parser.add_argument("--registry-pid", type=int)
    parser.add_argument("--log", default=os.devnull)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command given")
    return args


def process_cpu_s(pid):
    """CPU seconds (user + system) a process has used so far, or 0."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_s():
    """CPU seconds all cores have spent not idle since boot."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    busy = sum(values[:8]) - idle  # guest time is already in user time
    return busy / CLOCK_TICKS


def disk_busy_s():
    """Per block device, the seconds it has had I/O in flight since boot."""
    busy = {}
    with open("/proc/diskstats") as stats:
        for line in stats:
            fields = line.split()
            if len(fields) > 12:
                busy[fields[2]] = int(fields[12]) / 1000
    return busy


def log_size(path):
    return os.path.getsize(path) if path else 0


def wait_until_quiet(path):
    """Waits until the access log stops growing; returns its size."""
    size = log_size(path)
    if not path:
        return size
    deadline = time.monotonic() + QUIET_MAX_S
    while time.monotonic() < deadline:
        time.sleep(QUIET_S)
        now = log_size(path)
        if now == size:
            break
        size = now
    return size


def count_requests(path, start, end):
    """Counts the access-log lines between two offsets, by kind."""
    counts = {"manifest": 0, "blob": 0, "other": 0, "total": 0}
    if not path or end <= start:
        return counts
    with open(path, "rb") as log:
        log.seek(start)
        text = log.read(end - start).decode("utf-8", "replace")
    for line in text.splitlines():
        match = REQUEST.search(line)
        if not match:
            continue
        request_path = match.group(2)
        if "/manifests/" in request_path:
            kind = "manifest"
        elif "/blobs/" in request_path:
            kind = "blob"
        else:
            kind = "other"
        counts[kind] += 1
        counts["total"] += 1
    return counts


def run(command, log_path):
    """Runs the command under /usr/bin/time; returns (status, wall seconds,
    rusage, peak RSS in KiB)."""
    with tempfile.NamedTemporaryFile("r", prefix="measure-rss.") as rss, \
            open(log_path, "wb") as log, open(os.devnull, "wb") as null:
        timed = ["/usr/bin/time", "-f", "%M", "-o", rss.name, "--", *command]
        start = time.monotonic_ns()
        child = subprocess.Popen(timed, stdout=null, stderr=log)
        _, status, usage = os.wait4(child.pid, 0)
        wall_ns = time.monotonic_ns() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        lines = rss.read().split()
    peak_kib = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    return child.returncode, wall_ns / 1e9, usage, peak_kib


def main():
    args = parse_args()
    log_start = log_size(args.access_log)
    registry_before = process_cpu_s(args.registry_pid)
    busy_before, disks_before = machine_busy_s(), disk_busy_s()
    status, wall_s, usage, peak_kib = run(args.command, args.log)
    busy_after, disks_after = machine_busy_s(), disk_busy_s()
    disk_s = max((disks_after[d] - disks_before.get(d, 0) for d in disks_after), default=0)
    registry_cpu_s = process_cpu_s(args.registry_pid) - registry_before
    log_end = wait_until_quiet(args.access_log)

    if status != 0:
        sys.stderr.write(f"measure: {args.tool} failed ({status}) in {args.scenario}, "
                         f"round {args.round}: {' '.join(args.command)}\n")
        if args.log != os.devnull:
            with open(args.log, errors="replace") as log:
                sys.stderr.write(log.read()[-4000:])
        sys.exit(1)

    cpu_s = usage.ru_utime + usage.ru_stime
    record = {
        "scenario": args.scenario,
        "tool": args.tool,
        "round": args.round,
        "wall_s": round(wall_s, 6),
        "cpu_s": round(cpu_s, 6),
        "user_s": round(usage.ru_utime, 6),
        "sys_s": round(usage.ru_stime, 6),
        "peak_rss_mib": round(peak_kib / 1024, 2),
        "requests": count_requests(args.access_log, log_start, log_end),
        "registry_cpu_s": round(registry_cpu_s, 2),
        "other_cpu_s": round(max(0.0, busy_after - busy_before - cpu_s - registry_cpu_s), 2),
        "disk_busy_s": round(disk_s, 3),
    }
    with open(args.out, "a") as out:
        out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
