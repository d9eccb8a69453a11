"""Turn bench/out/raw.tsv into the tables (stdout and RESULTS.md) and the data
and gnuplot script for bench/results.png. Standard library only.

usage: report.py RAW VERSIONS RESULTS_MD OUT_DIR MODE
"""
import os
import statistics
import sys
import time

IMPLS = ["loom", "c-libuv", "luv-cb", "luv-co", "cqueues", "node",
         "asyncio", "uvloop", "trio", "anyio"]

COLORS = {"c-libuv": "#404040", "luv-cb": "#8fd175", "luv-co": "#2e8b3a",
          "cqueues": "#e6a33a", "node": "#f0dc4e", "asyncio": "#6fa8dc",
          "uvloop": "#1f5fa8", "trio": "#c27ba0", "anyio": "#7b3f9e"}

# row: (title, metric name, unit, lower_is_better, how to get it from a run)
def per_task_us(r):
    return r["seconds"] / r["n"] * 1e6


ROWS = {
    "W1-100k": ("W1 spawn+join", "per task", "µs", True, per_task_us),
    "W1-1M": ("W1 spawn+join", "per task", "µs", True, per_task_us),
    "W2": ("W2 spawn+sleep(0)+join", "per task", "µs", True, per_task_us),
    "W3-event": ("W3 ping-pong, events", "per switch", "ns", True,
                 lambda r: float(r["extra"]["ns_per_switch"])),
    "W3-channel": ("W3 ping-pong, channel(0)", "per switch", "ns", True,
                   lambda r: float(r["extra"]["ns_per_switch"])),
    "W4": ("W4 timers 0-100 ms", "total", "ms", True,
           lambda r: r["seconds"] * 1000),
    "W5": ("W5 tasks idle on one event", "per task", "B", True,
           lambda r: float(r["extra"]["bytes_per_task"])),
    "W6": ("W6 TCP echo, 50 clients, 64 B", "round trips/s", "/s", False,
           lambda r: r["ops"]),
    "W7": ("W7 cancel sleeping tasks", "per task", "µs", True, per_task_us),
}

# Cells that are not measured, and why.
NA = {}
for row in ("W1-100k", "W1-1M", "W2", "W3-event", "W3-channel", "W5"):
    NA[(row, "c-libuv")] = "n/a: C floor only for W4, W6, W7"
for impl in ("asyncio", "uvloop", "trio", "anyio"):
    NA[("W1-1M", impl)] = "skipped: time budget (see N=1e5)"
NA[("W3-channel", "luv-cb")] = "n/a: no channel (callbacks)"
NA[("W5", "luv-cb")] = "n/a: no tasks to block (callbacks)"
NA[("W3-channel", "cqueues")] = "n/a: no channel primitive"
NA[("W3-channel", "node")] = "n/a: no channel primitive"

# Cells measured with a stand-in; marked with a letter in the tables.
NOTES = {
    ("W1-100k", "luv-cb"): "a task is a callback queued on a fresh 0 ms uv timer",
    ("W1-1M", "luv-cb"): "a task is a callback queued on a fresh 0 ms uv timer",
    ("W2", "luv-cb"): "a task is a 0 ms uv timer that re-arms itself once",
    ("W3-event", "luv-cb"): "no tasks: a hop restarts the peer's 0 ms timer",
    ("W3-event", "cqueues"): "event = condition variable + flag",
    ("W3-channel", "asyncio"): "asyncio.Queue(1): asyncio has no rendezvous channel",
    ("W3-channel", "uvloop"): "asyncio.Queue(1): asyncio has no rendezvous channel",
    ("W5", "cqueues"): "event = condition variable + flag",
    ("W7", "c-libuv"): "N pending timers closed",
    ("W7", "luv-cb"): "N pending timers closed",
    ("W7", "cqueues"): "emulated: no cancellation; all wait on one condition, signalled",
    ("W7", "node"): "AbortSignal rejecting one shared promise",
    ("W7", "asyncio"): "TaskGroup has no cancel(): raise out of its body",
    ("W7", "uvloop"): "TaskGroup has no cancel(): raise out of its body",
}


def parse_raw(path):
    runs = {}  # (row, impl) -> list of parsed ok runs
    status = {}  # (row, impl) -> list of (status, text)
    for line in open(path):
        row, impl, rep, st, text = line.rstrip("\n").split("\t", 4)
        status.setdefault((row, impl), []).append((st, text))
        if st != "ok":
            continue
        f = text.split()
        extra = {}
        for tok in f[6:]:
            if tok.startswith("extra="):
                for kv in tok[len("extra="):].split(","):
                    k, _, v = kv.partition("=")
                    extra[k] = v
        want = row.split("-")[0] if row.startswith("W1") else row
        if f[0] != want or f[1] != impl:
            status[(row, impl)][-1] = ("fail", "unexpected output: " + text)
            continue
        runs.setdefault((row, impl), []).append({
            "n": int(f[2]), "seconds": float(f[3]), "ops": float(f[4]),
            "rss": int(f[5]), "extra": extra})
    return runs, status


def median(xs):
    return statistics.median(xs) if xs else None


def fmt(v):
    if v is None:
        return "—"
    if v >= 1e5:
        return "%.0f" % v if v < 1e6 else "%.2fM" % (v / 1e6)
    if v >= 100:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def fmt_ratio(r):
    if r is None:
        return "—"
    return ("%.1f×" if r >= 10 else "%.2f×") % r


class Results:
    def __init__(self, runs, status):
        self.runs, self.status = runs, status
        self.rows = [r for r in ROWS if any(k[0] == r for k in status)]
        self.impls = [i for i in IMPLS if any(k[1] == i for k in status)]

    def metric(self, row, impl):
        rs = self.runs.get((row, impl))
        return median([ROWS[row][4](r) for r in rs]) if rs else None

    def n(self, row, impl):
        rs = self.runs.get((row, impl))
        return rs[0]["n"] if rs else None

    def ratio(self, row, impl):
        """peer cost / loom cost: > 1 means loom is better."""
        lo, pe = self.metric(row, "loom"), self.metric(row, impl)
        if lo is None or pe is None or lo == 0 or pe == 0:
            return None
        if row == "W4" and self.n(row, impl) != self.n(row, "loom"):
            return None  # a total time: only comparable at the same N
        return pe / lo if ROWS[row][3] else lo / pe

    def why_missing(self, row, impl):
        if (row, impl) in NA:
            return NA[(row, impl)]
        sts = self.status.get((row, impl))
        if not sts:
            return "not run"
        st, text = sts[-1]
        return "%s: %s" % (st, text) if st != "pending" else text


def grid(res, cell, header_note):
    head = "| workload | metric | " + " | ".join(res.impls) + " |"
    sep = "|---|---|" + "---:|" * len(res.impls)
    lines = [head, sep]
    for row in res.rows:
        title, mname, unit, lower, _ = ROWS[row]
        cells = [cell(row, impl) for impl in res.impls]
        n = res.n(row, "loom") or next(
            (res.n(row, i) for i in res.impls if res.n(row, i)), None)
        if n:
            title += " (N=%s)" % ("{:,}".format(n))
        lines.append("| %s | %s (%s) | %s |" % (title, mname, unit, " | ".join(cells)))
    return header_note + "\n\n" + "\n".join(lines)


def targets(res):
    """The issue's targets: (text, value shown, pass?) — None when unknown."""
    def r(row, impl):
        return res.ratio(row, impl)

    def inv(row, impl):  # loom cost / peer cost (for "≤ k× peer")
        x = res.ratio(row, impl)
        return 1 / x if x else None

    t = []
    for row in ("W1-100k", "W1-1M"):
        t.append(("%s: loom ≥ 5× faster than cqueues" % row, r(row, "cqueues"), 5, ">="))
        t.append(("%s: loom at least as fast as Node.js per task" % row, r(row, "node"), 1, ">="))
    t.append(("W2: loom ≥ 5× faster than cqueues", r("W2", "cqueues"), 5, ">="))
    t.append(("W3 events: loom ≤ 120 ns per switch (absolute)", res.metric("W3-event", "loom"), 120, "<="))
    t.append(("W3 events: loom ≥ 2.5× faster than luv callbacks", r("W3-event", "luv-cb"), 2.5, ">="))
    t.append(("W4: loom ≥ 0.66× plain C on libuv (≤ 1.5× its time)", r("W4", "c-libuv"), 0.66, ">="))
    t.append(("W5: loom ≤ 1,200 bytes per blocked task", res.metric("W5", "loom"), 1200, "<="))
    t.append(("W6: loom ≥ 0.95× plain C on libuv (round trips/s)", r("W6", "c-libuv"), 0.95, ">="))
    t.append(("W6: loom ≥ 2× asyncio+uvloop", r("W6", "uvloop"), 2, ">="))
    t.append(("W7: loom ≥ 0.8× plain C on libuv (≤ 1.25× its time)", r("W7", "c-libuv"), 0.8, ">="))
    out = []
    for text, v, goal, op in t:
        row = text.split(":")[0].replace("W3 events", "W3-event")
        if row.split(" ")[0] not in res.rows and row not in res.rows:
            continue
        ok = None if v is None else (v >= goal if op == ">=" else v <= goal)
        loom_ran = res.metric(row.split(" ")[0], "loom") is not None
        out.append((text, v, op, goal, ok, loom_ran))
    return out


OTHER_MARK = "<!-- other benchmarks: bench/results/*.md -->"


def other_results(bench_dir):
    """The sections written by the per-area benchmarks (make bench-process,
    bench-io, bench-threads, bench-embed, bench-core), each in its own file
    under bench/results/, appended after this pass's tables."""
    d = os.path.join(bench_dir, "results")
    if not os.path.isdir(d):
        return ""
    parts = ["\n" + OTHER_MARK + "\n\n# Other benchmarks\n\nWritten by their own "
             "`make bench-<area>` targets (files in bench/results/), not by this pass.\n"]
    for name in sorted(os.listdir(d)):
        if name.endswith(".md"):
            with open(os.path.join(d, name)) as f:
                parts.append("\n" + f.read().strip().replace("\n## ", "\n### ")
                             .replace("\n# ", "\n## ") + "\n")
    return "".join(parts)


def main():
    raw, versions, results_md, out_dir, mode = sys.argv[1:6]
    runs, status = parse_raw(raw)
    res = Results(runs, status)
    marks, mark_of = [], {}
    for key in NOTES:
        if key[0] in res.rows and key[1] in res.impls and key in runs:
            mark_of[key] = chr(ord("a") + len(marks))
            marks.append((mark_of[key], key, NOTES[key]))

    def med_cell(row, impl):
        v = res.metric(row, impl)
        if v is None:
            return "*%s*" % res.why_missing(row, impl).split(":")[0]
        n = res.n(row, impl)
        tag = "" if n == res.n(row, "loom") or res.n(row, "loom") is None else " (N=%d)" % n
        m = mark_of.get((row, impl))
        return fmt(v) + tag + (" ^%s" % m if m else "")

    def ratio_cell(row, impl):
        if impl == "loom":
            return "1" if res.metric(row, "loom") is not None else "*pending*"
        return fmt_ratio(res.ratio(row, impl))

    t_lines = ["| target | measured | goal | result |", "|---|---:|---:|---|"]
    for text, v, op, goal, ok, loom_ran in targets(res):
        shown = "—" if v is None else ("%.0f" % v if goal >= 100 else "%.2f×" % v)
        goal_s = ("%s %s" % (op.replace(">=", "≥").replace("<=", "≤"),
                             "%g" % goal if goal >= 100 else "%g×" % goal))
        verdict = "PASS" if ok else "FAIL"
        if ok is None:
            verdict = "no data for the peer" if loom_ran else "pending (loom)"
        t_lines.append("| %s | %s | %s | %s |" % (text, shown, goal_s, verdict))

    detail = ["| workload | impl | N | runs ok | seconds | spread | ops/s | peak RSS kB | extra |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    spreads = []
    for row in res.rows:
        for impl in res.impls:
            sts = status.get((row, impl))
            if not sts:
                continue
            rs = runs.get((row, impl), [])
            if not rs:
                detail.append("| %s | %s | | 0/%d | | | | | %s |" % (
                    row, impl, len(sts), res.why_missing(row, impl)))
                continue
            ex = {}
            for k in rs[0]["extra"]:
                ex[k] = median([float(r["extra"][k]) for r in rs])
            secs = [r["seconds"] for r in rs]
            spread = max(secs) / min(secs)
            spreads.append(spread)
            detail.append("| %s | %s | %d | %d/%d | %.4f | %.2f× | %s | %d | %s |" % (
                row, impl, rs[0]["n"], len(rs), len(sts),
                median(secs), spread, fmt(median([r["ops"] for r in rs])),
                median([r["rss"] for r in rs]),
                ", ".join("%s=%s" % (k, fmt(v)) for k, v in ex.items())))

    medians = grid(res, med_cell, "Medians (lower is better, except W6).")
    ratios = grid(res, ratio_cell,
                  "Ratios against loom: peer's cost ÷ loom's cost, per operation "
                  "(W4: total time, only at equal N). **> 1 means loom is better.**")
    targets_md = "\n".join(t_lines)
    print("\n" + medians + "\n\n" + ratios + "\n\n" + targets_md + "\n")

    notes = ["^%s %s / %s: %s" % (m, k[0], k[1], text) for m, k, text in marks]
    missing = sorted({(row, impl, res.why_missing(row, impl))
                      for row in res.rows for impl in res.impls
                      if res.metric(row, impl) is None})
    with open(results_md, "w") as f:
        f.write("# loom benchmark results\n\n")
        f.write("Written by `bash bench/run.sh` on %s (%s). Every cell is the median "
                "of the repetitions, all implementations interleaved in one pass; read "
                "the **ratios**, not the absolute numbers (machines are noisy). How each "
                "workload is measured: [README.md](README.md).\n\n" %
                (time.strftime("%Y-%m-%d %H:%M %Z"), mode))
        if any(res.ratio(row, p) for row in res.rows for p in res.impls if p != "loom"):
            f.write("![loom against its peers](results.png)\n\n")
        f.write("## Targets\n\n" + targets_md + "\n\n")
        f.write("## " + medians.replace("\n", "\n", 1) + "\n\n")
        f.write("## " + ratios + "\n\n")
        if notes:
            f.write("Stand-ins used where a peer lacks the feature:\n\n")
            f.write("\n".join("- " + n for n in notes) + "\n\n")
        if missing:
            f.write("Cells without a number:\n\n")
            f.write("\n".join("- %s / %s: %s" % m for m in missing) + "\n\n")
        f.write("## Versions\n\n")
        f.write("\n".join("- " + v.strip() for v in open(versions) if v.strip()) + "\n\n")
        f.write("## Every row\n\n")
        if spreads:
            f.write("*spread* = slowest ÷ fastest repetition of a cell; its median over "
                    "all cells in this pass is **%.2f×**, a measure of the machine's noise "
                    "(the load average before the pass is under Versions).\n\n"
                    % median(spreads))
        f.write("\n".join(detail) + "\n")
        f.write(other_results(os.path.dirname(os.path.abspath(results_md))))

    # chart data: one line per workload, one column per peer (ratio, ? if none)
    peers = [i for i in res.impls if i != "loom"]
    if not any(res.ratio(row, p) for row in res.rows for p in peers):
        return  # nothing to draw (loom pending everywhere)
    with open(os.path.join(out_dir, "chart.dat"), "w") as f:
        f.write("workload " + " ".join(peers) + "\n")
        for row in res.rows:
            vals = [res.ratio(row, p) for p in peers]
            f.write(row + " " + " ".join("?" if v is None else "%.4g" % v for v in vals) + "\n")
    png = os.path.join(os.path.dirname(os.path.abspath(results_md)), "results.png")
    with open(os.path.join(out_dir, "chart.gp"), "w") as f:
        f.write("""set terminal pngcairo size 1400,640 font ",11"
set output "%s"
set title "loom against its peers: peer's cost / loom's cost per operation (log scale; above 1 = loom better)\\n%s"
set datafile missing "?"
set style data histograms
set style histogram clustered gap 2
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [0.05:*]
set grid ytics
set key outside right top
set xtics nomirror
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 dt 2 lc rgb "black"
colors = "%s"
plot for [i=2:%d] "%s" using i:xtic(1) title columnheader(i) lc rgb word(colors, i - 1)
""" % (png, mode, " ".join(COLORS[p] for p in peers), len(peers) + 1,
       os.path.join(out_dir, "chart.dat")))


if __name__ == "__main__":
    main()
