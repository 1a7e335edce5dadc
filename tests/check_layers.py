#!/usr/bin/env python3
"""The layers point one way: a file of a top-level folder may include only headers of its own
folder and of the folders below it, in the order docs/ARCHITECTURE.md gives. Stricter than "no
cycle": a new edge that goes up fails here even before it closes a circle. Exits 1 with every
offending include listed. Usage: check_layers.py [ROOT]"""
import os
import re
import sys

# Bottom first. Folders on one line are side by side: none may include another of that line.
LAYERS = [["base"], ["proto"], ["conf"], ["queue", "dns", "tls"], ["engine"], ["deliver"],
          ["src"]]
RANK = {d: i for i, line in enumerate(LAYERS) for d in line}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"/]+)/[^"]+"', re.M)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))
    bad = []
    for folder, rank in sorted(RANK.items()):
        top = os.path.join(root, folder)
        for dirpath, _, files in os.walk(top):
            for name in sorted(files):
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, errors="replace") as f:
                    text = f.read()
                for target in INCLUDE.findall(text):
                    if target == folder or target not in RANK:
                        continue
                    if RANK[target] >= rank:
                        bad.append("%s includes %s/ (layer %d >= %d)" % (
                            os.path.relpath(path, root), target, RANK[target], rank))
    for line in bad:
        print(line)
    print("%d includes against the layers" % len(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
