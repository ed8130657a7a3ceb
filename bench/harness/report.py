"""Progress lines, percentiles, number formatting, tables and the scripts' common main()."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Sequence


def progress(text: str) -> None:
    """Print a progress line to stderr, so stdout holds only the results."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The `pct`-th percentile (0-100) of `values` with linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def sleep_until(target: float) -> None:
    """Sleep until perf_counter() reaches `target` (returns at once when it already has)."""
    delay = target - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def fmt(value: float | None, digits: int = 1) -> str:
    """`value` with `digits` decimals, or "-" when unknown."""
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(numerator: float | None, denominator: float | None, digits: int = 2) -> str:
    """numerator / denominator with `digits` decimals, or "-" when either is unknown or the denominator is 0."""
    if not numerator or not denominator:
        return "-"
    return f"{numerator / denominator:.{digits}f}"


TARGET_PREFIX = "target |"  # the lines bench/run_all.py gathers into the report's table of issue 27's targets


def print_target(name: str, measured: float | None, goal: float, unit: str, *, at_most: bool = True,
                 baseline: str = "") -> None:
    """One target line (`target | name | measured | goal | baseline | met`): `measured` against `goal` (at most, or
    at least), with the baseline of the same run it was measured against. Printed, not asserted."""
    if measured is None:
        verdict = "no figure"
    else:
        verdict = "met" if (measured <= goal if at_most else measured >= goal) else "NOT met"
    shown = "-" if measured is None else f"{measured:.{2 if abs(measured) < 10 else 1}f} {unit}".rstrip()
    goal_shown = f"{'<=' if at_most else '>='} {goal:g} {unit}".rstrip()
    print(f"{TARGET_PREFIX} {name} | {shown} | {goal_shown} | {baseline} | {verdict}")


def print_table(columns: Sequence[tuple[str, int]], rows: Sequence[Sequence[object]], title: str | None = None) -> None:
    """Print `rows` under `columns` ((header, width) pairs; a negative width left-aligns), with a rule below."""
    if title:
        print(title)

    def line(cells: Sequence[object]) -> str:
        out = []
        for (_, width), cell in zip(columns, cells, strict=True):
            text = str(cell)
            out.append(text.ljust(-width) if width < 0 else text.rjust(width))
        return " ".join(out).rstrip()

    header = line([name for name, _ in columns])
    print(header)
    print("-" * len(header))
    for row in rows:
        print(line(row))


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def make_parser(prog: str, doc: str, epilog: str) -> argparse.ArgumentParser:
    """An ArgumentParser whose description is `doc`'s first paragraph and whose epilog keeps its layout."""
    return argparse.ArgumentParser(prog=prog, description=doc.strip().split("\n\n")[0], epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_common_options(parser: argparse.ArgumentParser, messages: int) -> None:
    """Options every bus benchmark takes: message count, phase timeout, bus log level, keeping logs."""
    parser.add_argument("--messages", "-n", type=int, default=messages, metavar="N",
                        help="messages per measured phase (default: %(default)s)")
    parser.add_argument("--phase-timeout", type=float, default=120.0, metavar="S",
                        help="upper bound in seconds on each phase (default: %(default)s)")
    add_bus_options(parser)


def add_bus_options(parser: argparse.ArgumentParser) -> None:
    """The options of the bus a benchmark starts (read by harness.servers.running_bus): log level, keeping logs."""
    parser.add_argument("--bus-log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="LOG_LEVEL of the bus processes (default: %(default)s; INFO logs every message)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the bus's data and log directories")


def add_list_option(parser: argparse.ArgumentParser, name: str, choices: Sequence[str], what: str) -> None:
    """A `--NAME LIST` option: comma-separated values among `choices` (default: all), parsed by `parse_list`."""
    parser.add_argument(f"--{name}", default=",".join(choices), metavar="LIST",
                        help=f"comma-separated {what} (default: %(default)s)")


def parse_list(parser: argparse.ArgumentParser, value: str, choices: Sequence[str], what: str) -> list[str]:
    """The values of a `--NAME LIST` option, in order; a parser error naming the choices for an unknown one."""
    values = [v.strip() for v in value.split(",") if v.strip()]
    if set(values) - set(choices):
        parser.error(f"unknown {what}; choose from {', '.join(choices)}")
    return values


def add_sender_options(parser: argparse.ArgumentParser, baselines: str) -> None:
    """`--senders K` (client connections, a sender sandbox each) and `--no-baselines` (skip `baselines`)."""
    parser.add_argument("--senders", type=int, default=8, metavar="K",
                        help="sender connections, each with a sender sandbox of its own (default: %(default)s)")
    parser.add_argument("--no-baselines", action="store_true", help=f"skip {baselines}")


def run_main(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run `run(args)`, turning SIGTERM into KeyboardInterrupt so every server is stopped on the way out."""
    sys.setswitchinterval(0.001)  # let the receiver thread take the GIL promptly
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(args)
    except KeyboardInterrupt:
        progress("interrupted; servers stopped")
        return 130
