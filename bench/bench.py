#!/usr/bin/env python3
"""Helpers for bench/run.sh (see ../shared/BENCH.md and docs/benchmarks.md).

Subcommands:
  ports N                      print N free loopback TCP ports
  run  [options] -- CMD...     run one load command, sampling the proxies' CPU/RSS and the
                               machine's steal time; append one JSON record to --runs
  conns HOST PORT N [--host H] [--bare]
                               open N keep-alive connections (one request each, unless --bare),
                               print "ready", hold them until stdin closes
  rss PID...                   print each PID's VmRSS in KiB
  summarize DIR                read DIR/runs.jsonl (+ DIR/meta.json, DIR/memory.jsonl) and write
                               DIR/summary.json and DIR/summary.md
  hs [options]                 (bench/handshakes.sh) full TLS 1.3 handshakes with a client
                               certificate in a loop, each followed by one HTTP/2 GET; samples the
                               server process's CPU; appends one JSON record to --runs
  hs-summarize DIR             DIR/runs.jsonl of `hs` -> DIR/summary.json and DIR/summary.md
"""

import argparse
import json
import os
import re
import select
import socket
import statistics
import subprocess
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# /proc sampling


def proc_cpu_seconds(pid):
    """utime+stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is state (field 3); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stat_snapshot():
    """{'cpu': [...], 'cpu0': [...], ...} from /proc/stat (jiffies)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu"):
                parts = line.split()
                out[parts[0]] = [int(x) for x in parts[1:]]
    return out


def steal_pct(before, after, cpu="cpu"):
    b, a = before[cpu], after[cpu]
    d = [x - y for x, y in zip(a, b)]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest is in user already.
    total = sum(d[:8])
    return 100.0 * d[7] / total if total > 0 else 0.0


def busy_pct(before, after, cpu):
    b, a = before[cpu], after[cpu]
    d = [x - y for x, y in zip(a, b)]
    total = sum(d[:8])
    idle = d[3] + d[4]
    return 100.0 * (total - idle - d[7]) / total if total > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Load-tool output parsing


def parse_oha(text):
    j = json.loads(text)
    s = j["summary"]
    lat = j.get("latencyPercentiles", {})
    codes = j.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if str(k).startswith("2"))
    errs = j.get("errorDistribution", {})
    # Requests still in flight when -z ends are reported as "aborted due to deadline".
    aborted = sum(v for k, v in errs.items() if "deadline" in k)
    return {
        "ok": ok,
        "non2xx": sum(codes.values()) - ok,
        "errors": sum(errs.values()) - aborted,
        "aborted_at_end": aborted,
        "rps": s.get("requestsPerSec"),
        "total_s": s.get("total"),
        "p50_ms": lat.get("p50") * 1000 if lat.get("p50") is not None else None,
        "p90_ms": lat.get("p90") * 1000 if lat.get("p90") is not None else None,
        "p99_ms": lat.get("p99") * 1000 if lat.get("p99") is not None else None,
        "p999_ms": lat.get("p99.9") * 1000 if lat.get("p99.9") is not None else None,
        "mean_ms": s.get("average") * 1000 if s.get("average") is not None else None,
    }


def parse_wrk(text):
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    total = int(m.group(1)) if m else 0
    bad = int(non2xx.group(1)) if non2xx else 0
    return {
        "ok": total - bad,
        "non2xx": bad,
        "errors": sum(int(x) for x in sock.groups()) if sock else 0,
        "rps": float(rps.group(1)) if rps else None,
    }


def parse_h2load(text):
    fin = re.search(r"finished in ([\d.]+)(\w+), ([\d.]+) req/s", text)
    req = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    ok = int(codes.group(1)) if codes else 0
    return {
        "ok": ok,
        "non2xx": sum(int(x) for x in codes.groups()[1:]) if codes else 0,
        "errors": (int(req.group(5)) + int(req.group(6))) if req else 0,
        "rps": float(fin.group(3)) if fin else None,
    }


PARSERS = {"oha": parse_oha, "wrk": parse_wrk, "h2load": parse_h2load}


# ---------------------------------------------------------------------------------------------
# run


class Sampler(threading.Thread):
    def __init__(self, pids, interval):
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.samples = {p: [] for p in pids}
        self.compilers = set()
        self.stop = threading.Event()

    def run(self):
        n = 0
        while not self.stop.wait(self.interval):
            n += 1
            if n % 4 == 0:
                self.compilers.update(compilers_running())
            for p in self.pids:
                try:
                    self.samples[p].append(proc_rss_kib(p))
                except OSError:
                    pass


# `cargo` itself is left out: it mostly waits (on its children, or on the build directory lock).
BUSY_COMMS = {"rustc", "cc", "cc1", "cc1plus", "ld", "ld.lld", "rust-lld", "clippy-driver", "build-script-build", "rustdoc"}


def compilers_running():
    """Names of compiler-like processes running now (other people's builds skew a run)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                comm = open(f"/proc/{pid}/comm").read().strip()
                # The state follows the parenthesised command name; a stopped (T) compiler does
                # not compete for the CPU.
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if comm in BUSY_COMMS and state not in ("T", "t", "Z"):
                found.append(comm)
    return sorted(found)


def wait_quiet(max_wait):
    """Waits (up to max_wait s) until no compiler has run for 5 s; returns the seconds waited."""
    t0 = time.monotonic()
    quiet_since = None
    while time.monotonic() - t0 < max_wait:
        if compilers_running():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 5:
            break
        time.sleep(1)
    return round(time.monotonic() - t0, 1)


def cmd_run(args):
    pids = [int(p) for p in args.pids.split(",") if p] if args.pids else []
    names = args.names.split(",") if args.names else [str(p) for p in pids]
    attempts = []
    for attempt in range(args.retries + 1):
        waited = wait_quiet(args.wait_quiet)
        busy_before = compilers_running()
        sampler = Sampler(pids, 0.25)
        cpu0 = {p: proc_cpu_seconds(p) for p in pids}
        st0 = stat_snapshot()
        t0 = time.monotonic()
        sampler.start()
        proc = subprocess.run(args.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler.stop.set()
        sampler.join()
        elapsed = time.monotonic() - t0
        st1 = stat_snapshot()
        cpu1 = {p: proc_cpu_seconds(p) for p in pids}
        raw_path = f"{args.raw}.{attempt}" if attempt else args.raw
        with open(raw_path, "w") as f:
            f.write(proc.stdout)
            if proc.stderr:
                f.write("\n--- stderr ---\n" + proc.stderr)
        rec = {
            "round": args.round,
            "setup": args.setup,
            "proto": args.proto,
            "kind": args.kind,
            "tool": args.tool,
            "cmd": args.cmd,
            "attempt": attempt,
            "exit": proc.returncode,
            "elapsed_s": round(elapsed, 3),
            "steal_pct": round(steal_pct(st0, st1), 3),
            "steal_cpu1_pct": round(steal_pct(st0, st1, "cpu1"), 3) if "cpu1" in st0 else None,
            "busy_cpu0_pct": round(busy_pct(st0, st1, "cpu0"), 1) if "cpu0" in st0 else None,
            "busy_cpu1_pct": round(busy_pct(st0, st1, "cpu1"), 1) if "cpu1" in st0 else None,
            "loadavg": open("/proc/loadavg").read().split()[:3],
            "compilers": sorted(set(busy_before) | set(compilers_running()) | sampler.compilers),
            "waited_for_quiet_s": waited,
            "raw": os.path.basename(raw_path),
        }
        try:
            rec.update(PARSERS[args.tool](proc.stdout))
        except Exception as e:  # noqa: BLE001 - keep the record, mark it failed
            rec["parse_error"] = repr(e)
        rec["procs"] = {}
        for p, n in zip(pids, names):
            cpu = cpu1[p] - cpu0[p]
            s = sampler.samples[p]
            rec["procs"][n] = {
                "cpu_s": round(cpu, 3),
                "cpu_us_per_req": round(cpu * 1e6 / rec["ok"], 2) if rec.get("ok") else None,
                "rss_kib_median": int(statistics.median(s)) if s else None,
                "rss_kib_max": max(s) if s else None,
            }
        limit = args.max_steal
        reasons = []
        if rec["steal_pct"] > limit:
            reasons.append(f"steal {rec['steal_pct']:.2f}% > {limit}%")
        if rec["compilers"]:
            reasons.append("compilers running: " + ",".join(rec["compilers"]))
        rec["discarded"] = bool(reasons) and attempt < args.retries
        if reasons:
            rec["discard_reason" if rec["discarded"] else "kept_despite"] = "; ".join(reasons)
        attempts.append(rec)
        with open(args.runs, "a") as f:
            f.write(json.dumps(rec) + "\n")
        short = (
            f"r{args.round} {args.setup:13} {args.proto} {args.kind:8} rps={rec.get('rps') or 0:9.1f} "
            f"ok={rec.get('ok')} bad={rec.get('non2xx')}/{rec.get('errors')} "
            f"p50={fmt(rec.get('p50_ms'))} p99={fmt(rec.get('p99_ms'))} steal={rec['steal_pct']:.2f}% "
            + " ".join(f"{n}:{v['cpu_us_per_req']}us" for n, v in rec["procs"].items())
            + (f" COMPILERS={','.join(rec['compilers'])}" if rec["compilers"] else "")
            + (" DISCARDED" if rec["discarded"] else "")
        )
        print(short, flush=True)
        if not rec["discarded"]:
            break
    return 0


def fmt(x, d=3):
    return "-" if x is None else f"{x:.{d}f}"


# ---------------------------------------------------------------------------------------------
# ports / rss / conns


def cmd_ports(args):
    socks = []
    for _ in range(args.n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def cmd_rss(args):
    print(" ".join(str(proc_rss_kib(int(p))) for p in args.pids))


def cmd_conns(args):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.n + 100)), hard))
    host_hdr = args.host or f"{args.addr}:{args.port}"
    req = f"GET / HTTP/1.1\r\nHost: {host_hdr}\r\nUser-Agent: weft-bench\r\n\r\n".encode()
    conns = []
    failed = 0
    for _ in range(args.n):
        s = socket.create_connection((args.addr, args.port), timeout=5)
        conns.append(s)
        if args.bare:
            continue
        s.sendall(req)
        buf = b""
        while b"hello world\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                failed += 1
                break
            buf += chunk
        if not buf.startswith(b"HTTP/1.1 200"):
            failed += 1
    print(f"ready {len(conns)} failed={failed}", flush=True)
    # Hold until stdin closes (or a signal ends us).
    try:
        while True:
            r, _, _ = select.select([sys.stdin], [], [], 3600)
            if r and not sys.stdin.readline():
                break
    except KeyboardInterrupt:
        pass
    for s in conns:
        s.close()


def cmd_mem(args):
    pids = [int(p) for p in args.pids.split(",")]
    names = args.names.split(",")
    idle = [int(x) for x in args.idle.split(",")] if args.idle else [None] * len(pids)
    before = [proc_rss_kib(p) for p in pids]
    cmd = [sys.executable, os.path.abspath(__file__), "conns", args.addr, str(args.port), str(args.n)]
    if args.host:
        cmd += ["--host", args.host]
    if args.mode == "bare":
        cmd.append("--bare")
    if args.taskset:
        cmd = ["taskset", "-c", args.taskset] + cmd
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline().strip()
    time.sleep(args.settle)
    with_ = [proc_rss_kib(p) for p in pids]
    child.stdin.close()
    child.wait(timeout=60)
    time.sleep(args.settle)
    after = [proc_rss_kib(p) for p in pids]
    rec = {"setup": args.setup, "mode": args.mode, "n": args.n, "client": line, "procs": {}}
    for i, n in enumerate(names):
        rec["procs"][n] = {
            "idle_start_kib": idle[i],
            "before_kib": before[i],
            "with_kib": with_[i],
            "after_kib": after[i],
            "per_conn_kib": (with_[i] - before[i]) / args.n,
        }
    with open(args.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), flush=True)


# ---------------------------------------------------------------------------------------------
# summarize


def med_range(xs, d=3):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": round(statistics.median(xs), d), "min": round(min(xs), d), "max": round(max(xs), d), "n": len(xs)}


def mr_str(m, d=3, unit=""):
    if m is None:
        return "–"
    if m["n"] == 1:
        return f"{m['median']:.{d}f}{unit}"
    return f"{m['median']:.{d}f}{unit} ({m['min']:.{d}f}–{m['max']:.{d}f})"


def cmd_summarize(args):
    d = args.dir
    runs = [json.loads(l) for l in open(os.path.join(d, "runs.jsonl")) if l.strip()]
    meta = json.load(open(os.path.join(d, "meta.json"))) if os.path.exists(os.path.join(d, "meta.json")) else {}
    mem_path = os.path.join(d, "memory.jsonl")
    memory = [json.loads(l) for l in open(mem_path) if l.strip()] if os.path.exists(mem_path) else []
    kept = [r for r in runs if not r.get("discarded")]
    by = {}
    for r in kept:
        by[(r["round"], r["setup"], r["proto"], r["kind"])] = r  # a later re-run replaces a row
    setups = meta.get("setups") or sorted({r["setup"] for r in kept})
    protos = sorted({r["proto"] for r in kept})
    rounds = sorted({r["round"] for r in kept})
    kinds = sorted({r["kind"] for r in kept})
    summary = {"meta": meta, "latency": {}, "max": {}, "cpu": {}, "steal": {}, "memory": {}, "failures": []}

    for r in kept:
        if r.get("exit") not in (0, None) or r.get("non2xx") or r.get("errors") or not r.get("ok"):
            summary["failures"].append(
                {k: r.get(k) for k in ("round", "setup", "proto", "kind", "exit", "ok", "non2xx", "errors", "raw")}
            )

    for proto in protos:
        for kind in [k for k in kinds if k.startswith("lat")]:
            for setup in setups:
                p50, p99, p999, ap50, ap99, rss = [], [], [], [], [], []
                cpu = {}
                for rnd in rounds:
                    r = by.get((rnd, setup, proto, kind))
                    base = by.get((rnd, "direct", proto, kind))
                    if not r:
                        continue
                    p50.append(r.get("p50_ms"))
                    p99.append(r.get("p99_ms"))
                    p999.append(r.get("p999_ms"))
                    if base and base.get("p50_ms") is not None and r.get("p50_ms") is not None:
                        ap50.append(r["p50_ms"] - base["p50_ms"])
                        ap99.append(r["p99_ms"] - base["p99_ms"])
                    for n, v in r.get("procs", {}).items():
                        cpu.setdefault(n, []).append(v.get("cpu_us_per_req"))
                        rss.append((n, v.get("rss_kib_median"), v.get("rss_kib_max")))
                summary["latency"][f"{setup}|{proto}|{kind}"] = {
                    "p50_ms": med_range(p50),
                    "p99_ms": med_range(p99),
                    "p999_ms": med_range(p999),
                    "added_p50_ms": med_range(ap50),
                    "added_p99_ms": med_range(ap99),
                    "cpu_us_per_req": {n: med_range(v, 1) for n, v in cpu.items()},
                    "rss_kib": {
                        n: {"median": med_range([m for nn, m, _ in rss if nn == n], 0),
                            "max": max([x for nn, _, x in rss if nn == n and x is not None], default=None)}
                        for n in cpu
                    },
                }
        for setup in setups:
            rps, ratio, cpu = [], [], {}
            for rnd in rounds:
                r = by.get((rnd, setup, proto, "max"))
                base = by.get((rnd, "direct", proto, "max"))
                if not r:
                    continue
                rps.append(r.get("rps"))
                if base and base.get("rps") and r.get("rps"):
                    ratio.append(r["rps"] / base["rps"])
                for n, v in r.get("procs", {}).items():
                    cpu.setdefault(n, []).append(v.get("cpu_us_per_req"))
            if rps:
                summary["max"][f"{setup}|{proto}"] = {
                    "rps": med_range(rps, 0),
                    "ratio": med_range(ratio, 3),
                    "cpu_us_per_req": {n: med_range(v, 1) for n, v in cpu.items()},
                }
    steals = [r["steal_pct"] for r in runs]
    summary["steal"] = {
        "kept": med_range([r["steal_pct"] for r in kept], 2),
        "all": med_range(steals, 2),
        "discarded_runs": sum(1 for r in runs if r.get("discarded")),
        "runs": len(runs),
    }
    summary["kept_despite"] = [
        {k: r.get(k) for k in ("round", "setup", "proto", "kind", "kept_despite")} for r in by.values() if r.get("kept_despite")
    ]
    summary["loadavg"] = med_range([float(r["loadavg"][0]) for r in runs], 2)
    summary["memory"] = memory
    summary["rss_idle"] = {}
    for tag in ("fresh", "after-smoke", "after-load"):
        path = os.path.join(d, f"rss-{tag}.txt")
        if os.path.exists(path):
            for line in open(path):
                if line.strip():
                    setup, vals = line.split()
                    summary["rss_idle"].setdefault(setup, {})[tag] = [int(v) for v in vals.split(",")]

    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write(render_md(summary, setups, protos, kinds))
    print(open(os.path.join(d, "summary.md")).read())


def render_md(s, setups, protos, kinds):
    out = []
    m = s["meta"]
    out.append(f"# Benchmark summary {m.get('date', '')}\n")
    for k in ("commit", "dirty", "machine", "kernel", "nproc", "rounds", "duration_s", "warmup_s", "quick"):
        if k in m:
            out.append(f"- {k}: {m[k]}")
    st = s["steal"]
    out.append(f"- steal over kept runs: {mr_str(st['kept'], 2, '%')}; discarded and repeated (steal or compilers): {st['discarded_runs']} of {st['runs']} runs")
    out.append(f"- 1-min load average during runs: {mr_str(s['loadavg'], 2)}")
    out.append("\nMedian over rounds (min–max). Added latency = setup minus direct in the same round.\n")
    for proto in protos:
        for kind in [k for k in kinds if k.startswith("lat")]:
            out.append(f"\n## Latency {proto} {kind[3:]} rps (oha, latency-corrected)\n")
            out.append("| setup | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU µs/req per proxy | RSS KiB (median, max) |")
            out.append("|---|---|---|---|---|---|---|")
            for setup in setups:
                L = s["latency"].get(f"{setup}|{proto}|{kind}")
                if not L:
                    continue
                cpu = "; ".join(f"{n} {mr_str(v, 1)}" for n, v in L["cpu_us_per_req"].items()) or "–"
                rss = "; ".join(f"{n} {int(v['median']['median']) if v['median'] else '–'}, {v['max']}" for n, v in L["rss_kib"].items()) or "–"
                out.append(
                    f"| {setup} | {mr_str(L['p50_ms'])} | {mr_str(L['p99_ms'])} | {mr_str(L['added_p50_ms'])} | "
                    f"{mr_str(L['added_p99_ms'])} | {cpu} | {rss} |"
                )
        out.append(f"\n## Max throughput {proto}\n")
        out.append("| setup | rps | ratio to direct | CPU µs/req per proxy at saturation |")
        out.append("|---|---|---|---|")
        for setup in setups:
            M = s["max"].get(f"{setup}|{proto}")
            if not M:
                continue
            cpu = "; ".join(f"{n} {mr_str(v, 1)}" for n, v in M["cpu_us_per_req"].items()) or "–"
            out.append(f"| {setup} | {mr_str(M['rps'], 0)} | {mr_str(M['ratio'])} | {cpu} |")
    if s.get("rss_idle"):
        out.append("\n## Idle RSS (KiB; two values = out, in)\n")
        out.append("| setup | fresh, no request | after one request per protocol | after all load runs |")
        out.append("|---|---|---|---|")
        for setup, v in s["rss_idle"].items():
            cells = [", ".join(str(x) for x in v.get(t, [])) or "–" for t in ("fresh", "after-smoke", "after-load")]
            out.append(f"| {setup} | " + " | ".join(cells) + " |")
    if s["memory"]:
        out.append("\n## Memory (VmRSS, KiB)\n")
        out.append("\nOn freshly restarted proxies. idle = before any request; before = after one request per protocol.\n")
        out.append("| setup | proxy | idle | before conns | with N conns | N | KiB per conn | after close |")
        out.append("|---|---|---|---|---|---|---|---|")
        for mrec in s["memory"]:
            for n, v in mrec["procs"].items():
                out.append(
                    f"| {mrec['setup']} ({mrec['mode']}) | {n} | {v.get('idle_start_kib')} | {v['before_kib']} | {v['with_kib']} | "
                    f"{mrec['n']} | {v['per_conn_kib']:.2f} | {v.get('after_kib')} |"
                )
    despite = [r for r in s.get("kept_despite", [])]
    if despite:
        out.append("\n## Runs kept although disturbed (retries exhausted)\n")
        for r in despite:
            out.append(f"- round {r['round']} {r['setup']} {r['proto']} {r['kind']}: {r['kept_despite']}")
    if s["failures"]:
        out.append("\n## Runs with errors\n")
        for fl in s["failures"]:
            out.append(f"- {json.dumps(fl)}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# hs: TLS handshakes per second per core (bench/handshakes.sh)


class HsError(Exception):
    pass


def h2_get_bytes(authority, headers):
    """Client connection preface + empty SETTINGS + HEADERS (GET, stream 1, END_STREAM)."""

    def lit(name, value):  # literal without indexing, new name, no Huffman (lengths < 127)
        n, v = name.encode(), value.encode()
        return bytes([0x00, len(n)]) + n + bytes([len(v)]) + v

    a = authority.encode()
    # :method GET (static 2), :scheme http (6), :path / (4), :authority (name index 1).
    block = bytes([0x82, 0x86, 0x84, 0x01, len(a)]) + a
    for name, value in headers:
        block += lit(name, value)
    frame = len(block).to_bytes(3, "big") + bytes([0x01, 0x05]) + (1).to_bytes(4, "big") + block
    return b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + frame


def h2_read_response(sock, expect_body):
    """Reads frames until stream 1 ends; checks :status 200 and the body."""
    buf = b""
    status_ok = None
    body = b""
    while True:
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            ftype, flags, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload = buf[9:9 + length]
            buf = buf[9 + length:]
            if ftype == 0x7:  # GOAWAY
                raise HsError("GOAWAY")
            if sid != 1:
                continue
            if ftype == 0x3:
                raise HsError("RST_STREAM")
            if ftype in (0x0, 0x1) and flags & 0x8:  # PADDED
                payload = payload[1:len(payload) - payload[0]]
            if ftype == 0x1:
                if flags & 0x20:  # PRIORITY
                    payload = payload[5:]
                if status_ok is None:
                    # :status 200 is static table index 8 (0x88) for both hyper/h2 and HAProxy.
                    status_ok = bool(payload) and payload[0] == 0x88
            elif ftype == 0x0:
                body += payload
            if ftype in (0x0, 0x1) and flags & 0x1:  # END_STREAM
                if not status_ok:
                    raise HsError("status not 200")
                if expect_body is not None and body != expect_body:
                    raise HsError("unexpected body")
                return
        chunk = sock.recv(65536)
        if not chunk:
            raise HsError("EOF before the response ended")
        buf += chunk


def hs_worker(a, deadline, wid, q):
    import ssl
    import traceback

    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the server chain and name
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_verify_locations(a.ca)
        ctx.load_cert_chain(a.cert, a.key)
        ctx.set_alpn_protocols(["h2"])
        req = h2_get_bytes(a.authority, [("l5d-orig-proto", "HTTP/1.1"), ("weft-dst-port", str(a.dst_port))])
        expect = a.expect_body.encode() if a.expect_body else None
        ok, errors, hs_lat, tot_lat, info = 0, {}, [], [], None
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                with socket.create_connection((a.host, a.port), timeout=5) as raw:
                    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    # A fresh context-level session each time: no resumption, a full handshake.
                    with ctx.wrap_socket(raw, server_hostname=a.sni) as s:
                        t1 = time.perf_counter()
                        if s.selected_alpn_protocol() != "h2":
                            raise HsError(f"ALPN {s.selected_alpn_protocol()!r}")
                        if info is None:
                            info = {"version": s.version(), "cipher": s.cipher()[0], "alpn": s.selected_alpn_protocol(),
                                    "session_reused": s.session_reused}
                        s.sendall(req)
                        h2_read_response(s, expect)
                ok += 1
                hs_lat.append(t1 - t0)
                tot_lat.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - counted by kind
                k = f"{type(e).__name__}: {str(e)[:100]}"
                errors[k] = errors.get(k, 0) + 1
                time.sleep(0.001)
        q.put({"wid": wid, "ok": ok, "errors": errors, "hs": hs_lat, "total": tot_lat, "info": info})
    except Exception:  # noqa: BLE001
        q.put({"wid": wid, "ok": 0, "errors": {"worker crashed": 1}, "hs": [], "total": [], "info": None,
               "trace": traceback.format_exc()})


def task_cpu_ns(pid):
    """Sum of the first field of /proc/PID/task/*/schedstat (ns on CPU), a cross-check."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def hs_clients(a, seconds):
    import multiprocessing as mp

    mpc = mp.get_context("fork")
    q = mpc.Queue()
    deadline = time.monotonic() + seconds
    procs = [mpc.Process(target=hs_worker, args=(a, deadline, i, q)) for i in range(a.procs)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return results


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def cmd_hs(a):
    pid = a.pid
    if a.warmup > 0:
        hs_clients(a, a.warmup)
        time.sleep(a.settle)
    for attempt in range(a.retries + 1):
        waited = wait_quiet(a.wait_quiet) if a.wait_quiet > 0 else 0
        # The server's CPU while idle (timers, identity client), to show it is negligible.
        i0, ti0 = proc_cpu_seconds(pid), time.monotonic()
        time.sleep(1.0)
        idle_cpu_ms_per_s = (proc_cpu_seconds(pid) - i0) * 1000 / (time.monotonic() - ti0)
        comp = set(compilers_running())
        st0 = stat_snapshot()
        c0, n0, t0 = proc_cpu_seconds(pid), task_cpu_ns(pid), time.monotonic()
        results = hs_clients(a, a.duration)
        t_load = time.monotonic() - t0
        time.sleep(a.settle)  # let the server finish closing the last connections
        c1, n1, t1 = proc_cpu_seconds(pid), task_cpu_ns(pid), time.monotonic()
        st1 = stat_snapshot()
        comp |= set(compilers_running())
        ok = sum(r["ok"] for r in results)
        errors = {}
        for r in results:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        hs = [x for r in results for x in r["hs"]]
        tot = [x for r in results for x in r["total"]]
        cpu = c1 - c0
        cpu_us = cpu * 1e6 / ok if ok else None
        rec = {
            "round": a.round, "setup": a.setup, "attempt": attempt, "procs": a.procs,
            "duration_s": a.duration, "elapsed_s": round(t1 - t0, 3), "load_s": round(t_load, 3),
            "ok": ok, "failed": sum(errors.values()), "errors": errors,
            "handshakes_per_s": round(ok / t_load, 1),
            "server_cpu_s": round(cpu, 3),
            "server_cpu_s_schedstat": round((n1 - n0) / 1e9, 3),
            "server_busy_pct": round(100 * cpu / t_load, 1),
            "server_idle_cpu_ms_per_s": round(idle_cpu_ms_per_s, 2),
            "cpu_us_per_handshake": round(cpu_us, 1) if cpu_us else None,
            "cpu_us_per_handshake_schedstat": round((n1 - n0) / 1e3 / ok, 1) if ok else None,
            "handshakes_per_s_per_core": round(1e6 / cpu_us) if cpu_us else None,
            "client_handshake_ms_p50": round(pct(hs, 50) * 1000, 3) if hs else None,
            "client_handshake_ms_p99": round(pct(hs, 99) * 1000, 3) if hs else None,
            "client_total_ms_p50": round(pct(tot, 50) * 1000, 3) if tot else None,
            "tls": next((r["info"] for r in results if r["info"]), None),
            "steal_pct": round(steal_pct(st0, st1), 3),
            "steal_cpu1_pct": round(steal_pct(st0, st1, "cpu1"), 3) if "cpu1" in st0 else None,
            "busy_cpu0_pct": round(busy_pct(st0, st1, "cpu0"), 1) if "cpu0" in st0 else None,
            "busy_cpu1_pct": round(busy_pct(st0, st1, "cpu1"), 1) if "cpu1" in st0 else None,
            "loadavg": open("/proc/loadavg").read().split()[:3],
            "compilers": sorted(comp),
            "waited_for_quiet_s": waited,
        }
        traces = [r["trace"] for r in results if r.get("trace")]
        if traces:
            rec["worker_trace"] = traces[0]
        reasons = []
        if rec["steal_pct"] > a.max_steal:
            reasons.append(f"steal {rec['steal_pct']:.2f}% > {a.max_steal}%")
        if not ok:
            reasons.append("no successful handshake")
        rec["discarded"] = bool(reasons) and attempt < a.retries
        if reasons:
            rec["discard_reason" if rec["discarded"] else "kept_despite"] = "; ".join(reasons)
        with open(a.runs, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(
            f"r{a.round} {a.setup:8} ok={ok} failed={rec['failed']} {rec['handshakes_per_s']:7.1f} hs/s "
            f"server cpu {cpu:.2f}s busy={rec['server_busy_pct']}% -> {fmt(cpu_us, 1)} us/hs "
            f"= {rec['handshakes_per_s_per_core']} hs/s/core  client hs p50={rec['client_handshake_ms_p50']}ms "
            f"steal={rec['steal_pct']:.2f}%"
            + (f" compilers={','.join(rec['compilers'])}" if rec["compilers"] else "")
            + (" DISCARDED" if rec["discarded"] else ""),
            flush=True,
        )
        if errors:
            print("   errors: " + "; ".join(f"{k} x{v}" for k, v in sorted(errors.items())), flush=True)
        if traces:
            print(traces[0], file=sys.stderr)
        if not rec["discarded"]:
            break
    return 0


def cmd_hs_summarize(a):
    d = a.dir
    runs = [json.loads(l) for l in open(os.path.join(d, "runs.jsonl")) if l.strip()]
    meta_path = os.path.join(d, "meta.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    by = {}
    for r in runs:
        if not r.get("discarded"):
            by[(r["round"], r["setup"])] = r
    setups = meta.get("setups") or sorted({s for _, s in by})
    rounds = sorted({r for r, _ in by})
    out = {"meta": meta, "setups": {}, "ratio": {}}
    for s in setups:
        rs = [by[(r, s)] for r in rounds if (r, s) in by]
        out["setups"][s] = {
            "cpu_us_per_handshake": med_range([r["cpu_us_per_handshake"] for r in rs], 1),
            "cpu_us_per_handshake_schedstat": med_range([r.get("cpu_us_per_handshake_schedstat") for r in rs], 1),
            "handshakes_per_s_per_core": med_range([r["handshakes_per_s_per_core"] for r in rs], 0),
            "handshakes_per_s": med_range([r["handshakes_per_s"] for r in rs], 0),
            "server_busy_pct": med_range([r["server_busy_pct"] for r in rs], 1),
            "client_handshake_ms_p50": med_range([r["client_handshake_ms_p50"] for r in rs], 3),
            "ok": sum(r["ok"] for r in rs),
            "failed": sum(r["failed"] for r in rs),
            "steal_pct": med_range([r["steal_pct"] for r in rs], 2),
            "tls": next((r["tls"] for r in rs if r.get("tls")), None),
        }
    base = setups[-1] if len(setups) > 1 else None
    for s in setups:
        if base and s != base:
            ratios = [by[(r, s)]["cpu_us_per_handshake"] / by[(r, base)]["cpu_us_per_handshake"]
                      for r in rounds if (r, s) in by and (r, base) in by
                      and by[(r, s)]["cpu_us_per_handshake"] and by[(r, base)]["cpu_us_per_handshake"]]
            out["ratio"][f"{s}/{base}"] = med_range(ratios, 3)
    out["steal"] = {"kept": med_range([r["steal_pct"] for r in by.values()], 2),
                    "discarded_runs": sum(1 for r in runs if r.get("discarded")), "runs": len(runs)}
    out["compilers_during_kept_runs"] = sum(1 for r in by.values() if r.get("compilers"))
    out["kept_despite"] = [{k: r.get(k) for k in ("round", "setup", "kept_despite")} for r in by.values() if r.get("kept_despite")]
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(out, f, indent=1)
    L = [f"# TLS handshakes per second per core, {meta.get('date', '')}\n"]
    for k in ("commit", "machine", "kernel", "rounds", "duration_s", "warmup_s", "client_procs", "versions"):
        if k in meta:
            L.append(f"- {k}: {meta[k]}")
    L.append(f"- steal over kept runs: {mr_str(out['steal']['kept'], 2, '%')}; discarded and repeated: "
             f"{out['steal']['discarded_runs']} of {out['steal']['runs']} runs; kept runs during which a compiler "
             f"ran: {out['compilers_during_kept_runs']} of {len(by)}")
    L.append("\nEach handshake: new TCP connection, TLS 1.3 with a client certificate, ALPN h2, one GET "
             "proxied to nginx, close. Server CPU = utime+stime of the server process over the run. "
             "Median over rounds (min–max).\n")
    L.append("| setup | server CPU µs per handshake | handshakes/s per core | achieved handshakes/s | "
             "server busy | client handshake p50 ms | ok / failed |")
    L.append("|---|---|---|---|---|---|---|")
    for s in setups:
        v = out["setups"][s]
        L.append(f"| {s} | {mr_str(v['cpu_us_per_handshake'], 1)} | {mr_str(v['handshakes_per_s_per_core'], 0)} | "
                 f"{mr_str(v['handshakes_per_s'], 0)} | {mr_str(v['server_busy_pct'], 1, '%')} | "
                 f"{mr_str(v['client_handshake_ms_p50'], 3)} | {v['ok']} / {v['failed']} |")
    for k, v in out["ratio"].items():
        L.append(f"\nCPU per handshake, {k} (same round): {mr_str(v, 3)}")
    tls = {s: v["tls"] for s, v in out["setups"].items() if v["tls"]}
    if tls:
        L.append("\nNegotiated: " + "; ".join(f"{s} {t['version']} {t['cipher']} ALPN {t['alpn']}" for s, t in tls.items()))
    for r in out["kept_despite"]:
        L.append(f"\n- kept although disturbed: round {r['round']} {r['setup']}: {r['kept_despite']}")
    md = "\n".join(L) + "\n"
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write(md)
    print(md)


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd_name", required=True)
    p = sub.add_parser("ports")
    p.add_argument("n", type=int)
    p.set_defaults(fn=cmd_ports)
    p = sub.add_parser("rss")
    p.add_argument("pids", nargs="+")
    p.set_defaults(fn=cmd_rss)
    p = sub.add_parser("conns")
    p.add_argument("addr")
    p.add_argument("port", type=int)
    p.add_argument("n", type=int)
    p.add_argument("--host")
    p.add_argument("--bare", action="store_true")
    p.set_defaults(fn=cmd_conns)
    p = sub.add_parser("mem")
    p.add_argument("--out", required=True)
    p.add_argument("--setup", required=True)
    p.add_argument("--mode", choices=["keepalive", "bare"], default="keepalive")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--addr", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host")
    p.add_argument("--pids", required=True)
    p.add_argument("--names", required=True)
    p.add_argument("--idle", default="")
    p.add_argument("--taskset", default="0")
    p.add_argument("--settle", type=float, default=2.0)
    p.set_defaults(fn=cmd_mem)
    p = sub.add_parser("run")
    p.add_argument("--runs", required=True)
    p.add_argument("--raw", required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--setup", required=True)
    p.add_argument("--proto", required=True)
    p.add_argument("--kind", required=True)
    p.add_argument("--tool", required=True, choices=sorted(PARSERS))
    p.add_argument("--pids", default="")
    p.add_argument("--names", default="")
    p.add_argument("--max-steal", type=float, default=2.0)
    p.add_argument("--retries", type=int, default=1)
    p.add_argument("--wait-quiet", type=float, default=0, help="wait up to this many s for compilers to stop")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("summarize")
    p.add_argument("dir")
    p.set_defaults(fn=cmd_summarize)
    p = sub.add_parser("hs")
    p.add_argument("--runs", required=True)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--setup", required=True)
    p.add_argument("--pid", type=int, required=True, help="the server process whose CPU is sampled")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", required=True)
    p.add_argument("--authority", required=True)
    p.add_argument("--dst-port", type=int, required=True, help="weft-dst-port header (the app port)")
    p.add_argument("--expect-body", default="hello world\n")
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True, help="client chain (leaf first)")
    p.add_argument("--key", required=True)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--settle", type=float, default=0.5)
    p.add_argument("--max-steal", type=float, default=5.0)
    p.add_argument("--retries", type=int, default=2)
    p.add_argument("--wait-quiet", type=float, default=0, help="wait up to this many s for compilers to stop")
    p.set_defaults(fn=cmd_hs)
    p = sub.add_parser("hs-summarize")
    p.add_argument("dir")
    p.set_defaults(fn=cmd_hs_summarize)
    args = ap.parse_args()
    if getattr(args, "cmd", None) and args.cmd and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    sys.exit(args.fn(args) or 0)


if __name__ == "__main__":
    main()
