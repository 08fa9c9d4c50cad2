#!/usr/bin/env python3
"""prom_check.py - checks for test_metrics.sh.

  prom_check.py lint PAGE...            each file is a /metrics page: parse it
                                        strictly as the text exposition format
                                        (0.0.4) and check the conventions
  prom_check.py dashboard JSON PAGE...  every query of the Grafana dashboard
                                        names only metrics the pages export

Exits 1 with a message per problem.
"""
import json
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
SAMPLE = re.compile(r"^(%s)(\{(?:%s)(?:,(?:%s))*\})? (\S+)$" % (NAME, LABEL, LABEL))
VALUE = re.compile(r"^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$")
SUFFIXES = ("_bucket", "_sum", "_count")


def parse(path):
    """{family: {"type", "help", "samples": [(name, labels, value)]}}"""
    fams, errs = {}, []
    cur = None
    with open(path) as f:
        text = f.read()
    if not text.endswith("\n"):
        errs.append("%s: does not end with a newline" % path)
    for n, line in enumerate(text.splitlines(), 1):
        where = "%s:%d" % (path, n)
        if line.startswith("# HELP "):
            parts = line.split(" ", 3)
            if len(parts) < 4 or not parts[3]:
                errs.append("%s: HELP without text" % where)
                continue
            fam = fams.setdefault(parts[2], {"type": None, "help": None, "samples": []})
            if fam["help"] is not None:
                errs.append("%s: second HELP for %s" % (where, parts[2]))
            fam["help"] = parts[3]
            cur = parts[2]
        elif line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or parts[3] not in ("counter", "gauge", "histogram", "summary", "untyped"):
                errs.append("%s: bad TYPE line" % where)
                continue
            fam = fams.setdefault(parts[2], {"type": None, "help": None, "samples": []})
            if fam["type"] is not None or fam["samples"]:
                errs.append("%s: TYPE for %s repeated or after its samples" % (where, parts[2]))
            fam["type"] = parts[3]
            cur = parts[2]
        elif line.startswith("#") or not line.strip():
            continue
        else:
            m = SAMPLE.match(line)
            if not m or not VALUE.match(m.group(3)):
                errs.append("%s: not a sample line: %r" % (where, line))
                continue
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            fam = name
            if cur and name != cur and name.startswith(cur) and name[len(cur):] in SUFFIXES:
                fam = cur
            if fam != cur:
                errs.append("%s: sample %s outside its family's block" % (where, name))
            fams.setdefault(fam, {"type": None, "help": None, "samples": []})
            fams[fam]["samples"].append((name, labels, float(value)))
    for name, fam in fams.items():
        if fam["type"] is None or fam["help"] is None:
            errs.append("%s: %s has no TYPE or HELP" % (path, name))
        if not name.startswith("troop_"):
            errs.append("%s: %s lacks the troop_ prefix" % (path, name))
        if fam["type"] == "counter" and not name.endswith("_total"):
            errs.append("%s: counter %s does not end in _total" % (path, name))
        if fam["type"] != "counter" and name.endswith("_total"):
            errs.append("%s: %s ends in _total but is a %s" % (path, name, fam["type"]))
        if fam["type"] == "counter" and any(v < 0 for _, _, v in fam["samples"]):
            errs.append("%s: counter %s is negative" % (path, name))
        if fam["type"] == "histogram":
            check_histogram(path, name, fam, errs)
        if not fam["samples"]:
            errs.append("%s: %s has no samples" % (path, name))
        seen = set()
        for s in fam["samples"]:
            if (s[0], s[1]) in seen:
                errs.append("%s: %s%s appears twice" % (path, s[0], s[1]))
            seen.add((s[0], s[1]))
    return fams, errs


def check_histogram(path, name, fam, errs):
    if not (name.endswith("_seconds") or name.endswith("_second") or name.endswith("_ratio")
            or name.endswith("_per_second")):
        errs.append("%s: histogram %s is not in a base unit (_seconds, ...)" % (path, name))
    buckets = [(l, v) for n, l, v in fam["samples"] if n == name + "_bucket"]
    count = [v for n, l, v in fam["samples"] if n == name + "_count"]
    total = [v for n, l, v in fam["samples"] if n == name + "_sum"]
    if not buckets or len(count) != 1 or len(total) != 1:
        errs.append("%s: histogram %s lacks buckets, _sum or _count" % (path, name))
        return
    les = []
    for l, v in buckets:
        m = re.search(r'le="([^"]*)"', l)
        if not m:
            errs.append("%s: %s bucket without le" % (path, name))
            return
        les.append((float(m.group(1)), v))
    if les[-1][0] != float("inf"):
        errs.append("%s: %s has no +Inf bucket" % (path, name))
    if [b for b, _ in les] != sorted(b for b, _ in les):
        errs.append("%s: %s buckets not ascending" % (path, name))
    if any(les[i][1] > les[i + 1][1] for i in range(len(les) - 1)):
        errs.append("%s: %s buckets not cumulative" % (path, name))
    if les[-1][1] != count[0]:
        errs.append("%s: %s +Inf bucket %g != _count %g" % (path, name, les[-1][1], count[0]))


def exported(pages):
    names, errs = set(), []
    for p in pages:
        fams, e = parse(p)
        errs += e
        for fam, d in fams.items():
            names.add(fam)
            for s in d["samples"]:
                names.add(s[0])
    return names, errs


def exprs_of(dash):
    out = []
    def walk(o):
        if isinstance(o, dict):
            if "expr" in o and isinstance(o["expr"], str):
                out.append(o["expr"])
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(dash)
    return out


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    errs = []
    if sys.argv[1] == "lint":
        for p in sys.argv[2:]:
            fams, e = parse(p)
            errs += e
            print("%s: %d families, %d samples" % (p, len(fams),
                  sum(len(f["samples"]) for f in fams.values())))
    elif sys.argv[1] == "dashboard":
        with open(sys.argv[2]) as f:
            dash = json.load(f)
        names, errs = exported(sys.argv[3:])
        exprs = exprs_of(dash)
        if not exprs:
            errs.append("the dashboard has no queries")
        used = set()
        for e in exprs:
            for ident in re.findall(r"\btroop_[a-zA-Z0-9_:]*", e):
                used.add(ident)
                if ident not in names:
                    errs.append("query %r names %s, which no role exports" % (e, ident))
        print("dashboard: %d queries, %d metrics, all exported: %s"
              % (len(exprs), len(used), "no" if errs else "yes"))
        for n in sorted(used):
            print("  " + n)
    else:
        print(__doc__)
        return 2
    for e in errs:
        print("FAIL: " + e)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
