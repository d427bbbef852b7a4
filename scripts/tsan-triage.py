#!/usr/bin/env python3
"""Sorts the ThreadSanitizer reports of a test log into known false positives and real ones.

Known false positive: Swift's `Synchronization.Mutex` on Linux locks with futex calls inside the uninstrumented
Synchronization library, so TSan does not see the lock and reports the two accesses that the lock orders (seen
with Swift 6.3.1; reproduced by ten lines that append to a Mutex<[Int]> from one thread and read it from another).
A report is taken as that case when, in both the current and the previous access, one of the top three frames
is on a source line that calls `withLock`. Anything else is printed with its stacks and fails the run.

usage: tsan-triage.py LOG    (exit 0: no report or only the known false positive; 1: real reports)"""
import re
import sys

FRAME = re.compile(r"^\s+#(\d+) \S+ (/[^ :]+\.swift):(\d+)")
_sources = {}


def line_of(path, number):
    if path not in _sources:
        try:
            _sources[path] = open(path, encoding="utf-8", errors="replace").read().splitlines()
        except OSError:
            _sources[path] = []
    lines = _sources[path]
    return lines[number - 1] if 0 < number <= len(lines) else ""


def stacks(report):
    """The frames of each access stack in the report (the 'Location is' and thread sections end them)."""
    result, current = [], None
    for line in report:
        stripped = line.strip()
        if re.match(r"^(Read|Write|Modifying access|Previous|Atomic)", stripped) or " access of Swift variable" in stripped:
            current = []
            result.append(current)
        elif stripped.startswith(("Location is", "Thread T", "Mutex ", "SUMMARY")):
            current = None
        elif current is not None:
            m = FRAME.match(line)
            if m:
                current.append((int(m.group(1)), m.group(2), int(m.group(3))))
    return [s for s in result if s]


def under_mutex(stack):
    return any("withLock" in line_of(path, number) for _, path, number in stack[:3])


def main():
    text = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
    reports, current = [], None
    for line in text:
        if line.startswith("WARNING: ThreadSanitizer"):
            current = [line]
            reports.append(current)
        elif current is not None:
            current.append(line)
            if line.startswith("SUMMARY: ThreadSanitizer"):
                current = None
    known, real = 0, []
    for report in reports:
        accesses = stacks(report)
        if "race" in report[0] and len(accesses) >= 2 and all(under_mutex(s) for s in accesses[:2]):
            known += 1
        else:
            real.append(report)
    print(f"tsan-triage: {len(reports)} report(s): {known} known Synchronization.Mutex false positive(s), {len(real)} other")
    for report in real:
        print("\n".join(report[:60]))
        print("----")
    return 1 if real else 0


if __name__ == "__main__":
    sys.exit(main())
