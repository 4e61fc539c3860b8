"""Copies the header and the first TOTAL rows of a CSV to standard output at RATE rows per
second (in 10 ms steps), for latency measurements at a fixed load.

usage: python3 scripts/lib/pace.py FILE.csv RATE TOTAL | gridwatch ingest --readings -
"""
import sys
import time

path, rate, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = sys.stdout
with open(path) as f:
    out.write(f.readline())
    step = max(1, rate // 100)
    start = time.monotonic()
    sent = 0
    while sent < total:
        chunk = [f.readline() for _ in range(min(step, total - sent))]
        out.write("".join(chunk))
        out.flush()
        sent += len(chunk)
        delay = start + sent / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
