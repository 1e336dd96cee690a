#!/usr/bin/python3
"""Counts test cases across meson test logs and prints one closing line.

A TAP test (cmocka) counts each of its cases; any other test counts once.
Reads every meson-logs/testlog*.json (one per `meson test` run, named by
--logbase). Usage: test-summary.py BUILD_DIR [BUILD_DIR...]
"""
import glob
import json
import re
import sys

passed = failed = skipped = 0
failures = []
paths = [p for build in sys.argv[1:]
         for p in sorted(glob.glob(f"{build}/meson-logs/testlog*.json"))]
lines = []
for path in paths:
    with open(path, encoding="utf-8", errors="replace") as f:
        lines += f.read().splitlines()
for line in lines:
    if not line.strip():
        continue
    t = json.loads(line)
    result = t.get("result", "")
    out = t.get("stdout") or ""
    cases = re.findall(r"^(ok|not ok)\b(.*)$", out, re.M)
    if cases:
        for status, rest in cases:
            if status == "not ok" and "# TODO" not in rest:
                failed += 1
                failures.append(f"{t.get('name')}: not ok{rest}")
            elif "# SKIP" in rest:
                skipped += 1
            else:
                passed += 1
        if result not in ("OK", "SKIP", "EXPECTEDFAIL") and \
                all(s == "ok" for s, _ in cases):
            failed += 1  # crashed or timed out after its last case
            failures.append(f"{t.get('name')}: {result} after its last case")
    elif result == "SKIP":
        skipped += 1
    elif result in ("OK", "EXPECTEDFAIL"):
        passed += 1
    else:
        failed += 1
        failures.append(f"{t.get('name')}: {result}")
# Named last so that a CI log's tail says which test failed.
for f in failures:
    print(f"FAILED {f}")
print(f"baton: {passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
