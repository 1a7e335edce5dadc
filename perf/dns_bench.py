#!/usr/bin/env python3
"""Starts NSD on 127.0.0.1 (a wildcard zone) and runs build/perf/dns_bench's three modes.

Usage: perf/dns_bench.py [BUILD_DIR] [-n LOOKUPS] [-c CONCURRENCY] [--runs N]
Figures: cold lookups/s (distinct names, one resolver, one ring), cache hits/s (ADDR and MX),
and the latency the resolver adds over plain blocking send/recv to the same server. On a
machine with two or more CPUs NSD runs on CPU 1 and the benchmark (one shard) on CPU 0, so that
the server keeps up with one shard.
"""
import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from dnsharness import Nsd, make_workdir  # noqa

ZONE = "* A 127.0.0.1\nmx MX 10 mx1\nmx MX 20 mx2\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("-n", type=int, default=200000)
    ap.add_argument("-c", type=int, default=256)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    pinned = (os.cpu_count() or 1) >= 2
    bench = os.path.join(args.build, "perf", "dns_bench")
    work = make_workdir()
    nsd = Nsd(work, {"bench.test": ZONE}, cpu=1 if pinned else None)
    try:
        server = "127.0.0.1:%d" % nsd.port
        pin = ["taskset", "-c", "0"] if pinned else []
        with open("/proc/loadavg") as f:
            print("load average before: %s" % " ".join(f.read().split()[:3]))
        for _ in range(args.runs):
            for mode, n in (("cold", args.n), ("cached", args.n * 10), ("latency", 10000)):
                out = subprocess.run(pin + [bench, "-s", server, "-n", str(n), "-c",
                                            str(args.c), mode],
                                     capture_output=True, text=True, check=True).stdout
                sys.stdout.write(out)
                sys.stdout.flush()
    finally:
        nsd.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
