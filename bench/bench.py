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
    args = ap.parse_args()
    if getattr(args, "cmd", None) and args.cmd and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    sys.exit(args.fn(args) or 0)


if __name__ == "__main__":
    main()
