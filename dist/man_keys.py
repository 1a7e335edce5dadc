#!/usr/bin/python3
"""Writes ringmta.conf(5): the hand-written page with @KEYS@ replaced by every configuration key,
its meaning and its default, as `ringmta --print-man-keys` prints them from the daemon's table.

usage: man_keys.py RINGMTA IN OUT
"""
import subprocess
import sys

ringmta, src, dst = sys.argv[1:4]
keys = subprocess.run([ringmta, "--print-man-keys"], check=True, capture_output=True,
                      text=True).stdout
with open(src) as f:
    page = f.read()
if page.count("@KEYS@\n") != 1:
    sys.exit("man_keys.py: %s must hold one @KEYS@ line" % src)
with open(dst, "w") as f:
    f.write(page.replace("@KEYS@\n", keys))
