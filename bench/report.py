"""The table: one row per figure, Stepline vs DBOS, the ratio, the target and whether it was met."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import Sizes

Results = dict[str, dict[str, dict[str, Any]]]  # workload -> system -> figures


@dataclass(frozen=True)
class Row:
    label: str
    workload: str
    key: str
    unit: str
    higher_better: bool
    target: str = ""
    # (stepline value, dbos value or None, all results) -> met? (None: no verdict)
    check: Callable[[float, float | None, Results], bool | None] | None = None
    compare: bool = True  # show a Stepline-vs-DBOS ratio


def _value(results: Results, workload: str, system: str, key: str) -> float | None:
    figures = results.get(workload, {}).get(system) or {}
    value = figures.get(key)
    if isinstance(value, int | float) and not math.isnan(value):
        return float(value)
    return None


def _floor(results: Results) -> float | None:
    """One durable commit: the floor workload's, else the one measured next to per_step."""
    floor = _value(results, "floor", "stepline", "commit_p50_ms")
    return floor if floor is not None else _value(results, "per_step", "stepline", "floor_ms")


def _better(s: float, d: float | None, higher: bool) -> float | None:
    if d is None or s <= 0 or d <= 0:
        return None
    return s / d if higher else d / s


def rows(sizes: Sizes, results: Results) -> list[Row]:
    # Per-step overhead is judged against the commits timed alongside it (same minute, same
    # disk); the floor row is the standalone measurement.
    floor = _value(results, "per_step", "stepline", "floor_ms") or _floor(results)
    floor_text = f"2 x {floor:.3f} = {2 * floor:.2f} ms" if floor else "2x floor"
    ttl = sizes.lease_ttl

    def per_step(s: float, d: float | None, r: Results) -> bool | None:
        ok = floor is not None and s <= 2 * floor
        ratio = _better(s, d, False)
        return ok and (ratio is None or ratio >= 4)

    def throughput(s: float, d: float | None, r: Results) -> bool | None:
        ratio = _better(s, d, True)
        return s >= 1000 and (ratio is None or ratio >= 10)

    def at_most(limit: float) -> Callable[[float, float | None, Results], bool | None]:
        return lambda s, d, r: s <= limit

    def at_least(limit: float) -> Callable[[float, float | None, Results], bool | None]:
        return lambda s, d, r: s >= limit

    runs, waits = sizes.throughput_runs, sizes.waits
    core = [
        Row("Durable SQLite commit (floor, median)", "floor", "commit_p50_ms", "ms", False,
            "reference (~0.19 ms class)", None, compare=False),
        Row(f"Per-step overhead ({sizes.per_step_steps}-step run)", "per_step", "ms_per_step",
            "ms", False, f"≤ 2x commit ({floor_text}); ≥ 4x DBOS", per_step),
        Row(f"Throughput, {runs:,} runs x 3 steps", "throughput", "runs_per_s", "runs/s", True,
            "≥ 1,000 runs/s; ≥ 10x DBOS", throughput),
        Row("  … steps per second", "throughput", "steps_per_s", "steps/s", True,
            "≥ 3,000 steps/s", at_least(3000)),
        Row("  … group commit (write jobs per transaction)", "throughput",
            "jobs_per_transaction", "jobs/tx", True, "> 1 (shared fsyncs)", at_least(1.5),
            compare=False),
        Row("Event → first step, p50 (idle worker)", "latency", "p50_ms", "ms", False,
            "≤ 2 ms", at_most(2.0)),
        Row("Event → first step, p99", "latency", "p99_ms", "ms", False, "≤ 10 ms",
            at_most(10.0)),
        Row(f"Wait matching, {waits:,} waits: non-matching event", "waits", "nonmatch_us",
            "µs/event", False, "≤ 50 µs", at_most(50.0)),
        Row("  … matching event (resolves its wait), with its checkpoint", "waits", "match_us",
            "µs/event", False, "≤ 35 µs", at_most(35.0)),
        Row("  … the send alone (its WAL pages not checkpointed)", "waits", "match_send_us",
            "µs/event", False, "info"),
        Row("  … store ingest only, non-matching", "waits", "nonmatch_store_us", "µs/event",
            False, "info"),
        Row("  … store ingest only, matching", "waits", "match_store_us", "µs/event", False,
            "info"),
        Row("  … resolved waits' rows purged later (per wait)", "waits", "purge_us", "µs/wait",
            False, "info"),
        Row("  … the checkpoint of its WAL pages (per event)", "waits", "checkpoint_us",
            "µs/event", False, "info"),
        Row("  … baseline: event nothing waits for", "waits", "baseline_us", "µs/event", False,
            "info"),
        Row("  … one event per send_async (own commit)", "waits", "single_us", "µs/event",
            False, "info"),
        Row("Recovery after SIGKILL: restart, same worker id", "recovery", "same_id_s", "s",
            False, "at once (≤ 1 s)", at_most(1.0)),
        Row("Recovery after SIGKILL: other worker", "recovery", "new_id_s", "s", False,
            f"≤ lease TTL ({ttl:g} s)", at_most(ttl)),
    ]  # fmt: skip
    return [
        *core,
        *_flow_rows(sizes, results),
        *_cancel_on_rows(sizes, at_most(50.0)),
        *_scale_rows(sizes, results),
        *_fairness_rows(sizes, at_most(50.0)),
        *_http_rows(),
        *_inngest_rows(),
    ]


def _fairness_rows(
    sizes: Sizes, at_most_50: Callable[[float, float | None, Results], bool | None]
) -> list[Row]:
    """Fair leasing (issue 8): a new run of one function behind another's queued backlog."""
    n = sizes.fairness_backlog
    return [
        Row(f"First step of a function behind {n:,} queued runs of another: SQLite, p50",
            "fairness", "sqlite_p50_ms", "ms", False, "≤ 50 ms", at_most_50, compare=False),
        Row("  … SQLite, max", "fairness", "sqlite_max_ms", "ms", False, "info", compare=False),
        Row("  … memory store, p50", "fairness", "memory_p50_ms", "ms", False, "≤ 50 ms",
            at_most_50, compare=False),
        Row("  … memory store, max", "fairness", "memory_max_ms", "ms", False, "info",
            compare=False),
    ]  # fmt: skip


def _http_rows() -> list[Row]:
    """The event API over loopback (issue 9), 64 concurrent clients, 1 KB events."""

    def at_most(limit: float) -> Callable[[float, float | None, Results], bool | None]:
        return lambda s, d, r: s <= limit

    def at_least(limit: float) -> Callable[[float, float | None, Results], bool | None]:
        return lambda s, d, r: s >= limit

    w = "http_events"
    return [
        Row("POST /e/{key}, 64 clients, 1 event/request", w, "single_events_per_s", "events/s",
            True, "≥ 3,000 events/s", at_least(3000), compare=False),
        Row("  … request latency p50", w, "single_p50_ms", "ms", False, "info", compare=False),
        Row("  … request latency p99", w, "single_p99_ms", "ms", False, "≤ 20 ms",
            at_most(20.0), compare=False),
        Row("POST /e/{key}, 64 clients, 100 events/request", w, "batch_events_per_s",
            "events/s", True, "≥ 30,000 events/s", at_least(30000), compare=False),
        Row("  … request latency p50", w, "batch_p50_ms", "ms", False, "info", compare=False),
        Row("  … request latency p99", w, "batch_p99_ms", "ms", False, "≤ 20 ms",
            at_most(20.0), compare=False),
        Row("Event → first step through HTTP, p50", w, "first_step_p50_ms", "ms", False,
            "≤ 3 ms", at_most(3.0), compare=False),
        Row("  … p99", w, "first_step_p99_ms", "ms", False, "info", compare=False),
    ]  # fmt: skip


def _inngest_rows() -> list[Row]:
    """An Inngest Python SDK app (FastAPI) driven over loopback HTTP (issue 10)."""

    def at_most(limit: float) -> Callable[[float, float | None, Results], bool | None]:
        return lambda s, d, r: s <= limit

    w = "inngest_sdk"
    return [
        Row("Inngest SDK app (Python, FastAPI): per step p50", w, "per_step_ms_p50", "ms", False,
            "≤ 3 ms", at_most(3.0), compare=False),
        Row("  … inside a POST p50 (loopback HTTP and the SDK)", w, "inside_post_ms_p50", "ms",
            False, "info", compare=False),
        Row("  … between POSTs p50 (the commit, the next request)", w, "between_posts_ms_p50",
            "ms", False, "info", compare=False),
        Row("  … CPU per step: Stepline's process", w, "cpu_ms_per_step_stepline", "ms", False,
            "info", compare=False),
        Row("  … CPU per step: the SDK app's process", w, "cpu_ms_per_step_sdk_app", "ms", False,
            "info", compare=False),
        Row("  … requests per step", w, "requests_per_step", "requests", False, "info",
            compare=False),
        Row("  … event → first request p50", w, "event_to_first_request_ms_p50", "ms", False,
            "≤ 5 ms", at_most(5.0), compare=False),
    ]  # fmt: skip


def _scale_rows(sizes: Sizes, results: Results) -> list[Row]:
    """Many runs sleeping or waiting on one file, then a minute in which many wake (issue 6)."""
    n = int(_value(results, "scale", "stepline", "runs") or sizes.scale_runs)
    wake = int(_value(results, "scale", "stepline", "wake") or 0)
    window = _value(results, "scale", "stepline", "window_s") or 0.0

    def flat(s: float, d: float | None, r: Results) -> bool | None:
        return s <= 64.0

    def at_most(limit: float) -> Callable[[float, float | None, Results], bool | None]:
        return lambda s, d, r: s <= limit

    def at_least(limit: float) -> Callable[[float, float | None, Results], bool | None]:
        return lambda s, d, r: s >= limit

    return [
        Row(f"Scale, {n:,} runs sleeping/waiting: creation", "scale", "create_per_s", "runs/s",
            True, "info (each: event, first pass, suspend)", compare=False),
        Row("  … database size (file + WAL)", "scale", "db_mb", "MB", False, "info",
            compare=False),
        Row("  … worker RSS before creation", "scale", "rss_before_mb", "MB", False, "info",
            compare=False),
        Row("  … worker RSS with every run suspended", "scale", "rss_after_mb", "MB", False,
            "info", compare=False),
        Row("  … RSS growth", "scale", "rss_growth_mb", "MB", False,
            "flat (≤ 64 MB whatever the count)", flat, compare=False),
        Row(f"  … {wake:,} waking in {window:g} s: lateness p50", "scale", "late_p50_ms", "ms",
            False, "info", compare=False),
        Row("  … lateness p99", "scale", "late_p99_ms", "ms", False, "≤ 50 ms", at_most(50.0),
            compare=False),
        Row("  … throughput while waking", "scale", "wake_per_s", "runs/s", True,
            "≥ 1,500 runs/s", at_least(1500.0), compare=False),
        Row("  … wait matching at scale: non-matching event", "scale", "nonmatch_us", "µs/event",
            False, "info", compare=False),
        Row("  … matching event (resolves its wait)", "scale", "match_us", "µs/event", False,
            "info", compare=False),
    ]  # fmt: skip


def _flow_rows(sizes: Sizes, results: Results) -> list[Row]:
    """``Admit: <option>``: µs per event admitted through each flow-control option (issue 3),
    the overhead over the baseline (a function with no option) in the target column."""
    from bench.flow import OPTIONS

    out = [Row(f"Admit: none (baseline; {sizes.waits:,} distinct keys)", "flow", "none_us",
               "µs/event", False, "info (run created, no option)", compare=False)]  # fmt: skip
    for option in OPTIONS[1:]:
        extra = _value(results, "flow", "stepline", f"{option}_overhead_us")
        pct = _value(results, "flow", "stepline", f"{option}_overhead_pct")
        what = {
            "debounce": "; deferred, no run yet",
            "batch_events": "; deferred, no run yet",
            "cancel_on": "; registers the matcher",
            "concurrency": "; admission only",
        }
        target = "info" if extra is None or pct is None else (
            f"info: {extra:+.1f} µs ({pct:+.0f} %) vs none{what.get(option, '')}"
        )  # fmt: skip
        out.append(Row(f"Admit: {option}", "flow", f"{option}_us", "µs/event", False, target,
                       compare=False))  # fmt: skip
    return out


def _cancel_on_rows(
    sizes: Sizes, target: Callable[[float, float | None, Results], bool | None]
) -> list[Row]:
    """Cancel-on matching with ``sizes.waits`` cancellable runs pending (issue 3)."""
    return [
        Row(f"Cancel-on matching, {sizes.waits:,} runs: non-matching event", "cancel_on",
            "nonmatch_us", "µs/event", False, "≤ 50 µs", target),
        Row("  … matching event (cancels its run, stores function.cancelled)", "cancel_on",
            "match_us", "µs/event", False, "info"),
        Row("  … announcements it left owed, written later (per run)", "cancel_on",
            "announce_later_us", "µs/event", False, "info"),
        Row("  … matching event in all (the two rows above)", "cancel_on", "match_total_us",
            "µs/event", False, "≤ 50 µs", target),
        Row("  … matching event, matcher cache cold (runs made elsewhere)", "cancel_on",
            "cold_match_us", "µs/event", False, "≤ 50 µs", target),
        Row("  … runs SLEEPING: non-matching event", "cancel_on", "sleeping_nonmatch_us",
            "µs/event", False, "≤ 50 µs", target),
        Row("  … runs SLEEPING: matching event, in all (with any owed later)", "cancel_on",
            "sleeping_match_total_us", "µs/event", False, "≤ 50 µs", target),
        Row("  … store ingest only, non-matching", "cancel_on", "nonmatch_store_us", "µs/event",
            False, "info"),
        Row("  … store ingest only, matching (with its announcements)", "cancel_on",
            "match_store_us", "µs/event", False, "info"),
        Row("  … baseline: event nothing listens to", "cancel_on", "baseline_us", "µs/event",
            False, "info"),
        Row("  … creating a cancellable run (per order/created)", "cancel_on", "create_us",
            "µs/event", False, "info"),
    ]  # fmt: skip


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit in ("runs/s", "steps/s"):
        return f"{value:,.0f} {unit}"
    if unit == "jobs/tx":
        return f"{value:.1f}"
    if unit in ("µs/event", "µs/wait"):
        return f"{value:,.1f} µs"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:,.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:,.1f} MB"
    return f"{value:g} {unit}"


def _cell(results: Results, row: Row, system: str) -> tuple[float | None, str]:
    figures = results.get(row.workload, {}).get(system)
    if figures is None:
        return None, ""
    if "skipped" in figures:
        return None, "skipped"
    if "error" in figures:
        return None, "error"
    if "na" in figures:
        return None, "n/a"
    value = _value(results, row.workload, system, row.key)
    if value is None:
        return None, "n/a" if system == "dbos" else "—"
    return value, fmt(value, row.unit)


def _at_most(limit: float) -> Callable[[float, float | None, Results], bool | None]:
    return lambda s, d, r: s <= limit


def _at_least(limit: float) -> Callable[[float, float | None, Results], bool | None]:
    return lambda s, d, r: s >= limit


def pg_rows(sizes: Sizes, results: Results) -> list[Row]:
    """``python -m bench --pg`` (issue 8): Stepline and DBOS on one durable PostgreSQL."""
    floor = _value(results, "per_step", "stepline", "floor_ms") or _value(
        results, "floor", "stepline", "commit_p50_ms"
    )
    floor_text = f"2 x {floor:.3f} = {2 * floor:.2f} ms" if floor else "2x commit"
    ttl = sizes.lease_ttl
    runs = sizes.throughput_runs

    def per_step(s: float, d: float | None, r: Results) -> bool | None:
        return floor is not None and s <= 2 * floor

    def throughput(s: float, d: float | None, r: Results) -> bool | None:
        ratio = _better(s, d, True)
        return s >= 1000 and (ratio is None or ratio >= 8)

    at_most = _at_most
    procs = [
        row
        for k in (1, 2, 4)
        for row in (
            Row(f"Throughput, {k} worker process{'es' if k > 1 else ''} ({2 * runs:,} runs x 3)",
                "processes", f"p{k}_runs_per_s", "runs/s", True, "info", compare=False),
            Row("  … worker processes' CPU (cores busy)", "processes", f"p{k}_workers_cpu",
                "cores", False, "info", compare=False),
            Row("  … PostgreSQL server's CPU (cores busy)", "processes", f"p{k}_server_cpu",
                "cores", False, "info", compare=False),
            Row("  … WAL fsyncs per run", "processes", f"p{k}_fsyncs_per_run", "fsyncs",
                False, "info", compare=False),
        )
    ]  # fmt: skip
    return [
        Row("Synchronous PostgreSQL commit (floor, median)", "floor", "commit_p50_ms", "ms",
            False, "reference (~0.29 ms class)", None, compare=False),
        Row(f"Per-step overhead ({sizes.per_step_steps}-step run)", "per_step", "ms_per_step",
            "ms", False, f"≤ 2x commit ({floor_text})", per_step),
        Row(f"Throughput, 1 process, {runs:,} runs x 3 steps", "throughput", "runs_per_s",
            "runs/s", True, "≥ 1,000 runs/s; ≥ 8x DBOS", throughput),
        Row("  … group commit (write jobs per transaction)", "throughput",
            "jobs_per_transaction", "jobs/tx", True, "> 1 (shared fsyncs)", _at_least(1.5),
            compare=False),
        *procs,
        Row("Event → first step, p50, sent from another process (NOTIFY)", "remote_latency",
            "p50_ms", "ms", False, "≤ 3 ms", at_most(3.0)),
        Row("  … p99", "remote_latency", "p99_ms", "ms", False, "info", compare=False),
        Row("Event → first step, p50, same process", "latency", "p50_ms", "ms", False, "info"),
        Row("Recovery after SIGKILL: restart, same worker id", "recovery", "same_id_s", "s",
            False, "at once (≤ 1 s)", at_most(1.0)),
        Row("Recovery after SIGKILL: other worker", "recovery", "new_id_s", "s", False,
            f"≤ lease TTL ({ttl:g} s)", at_most(ttl)),
        Row(f"First step of a function behind {sizes.fairness_backlog:,} queued runs of "
            "another, p50", "fairness", "postgres_p50_ms", "ms", False, "≤ 50 ms",
            at_most(50.0), compare=False),
        Row("  … max", "fairness", "postgres_max_ms", "ms", False, "info", compare=False),
    ]  # fmt: skip


def table_rows(sizes: Sizes, results: Results, *, postgres: bool = False) -> list[dict[str, Any]]:
    """The table as data (also what ``--json`` writes)."""
    out = []
    for row in pg_rows(sizes, results) if postgres else rows(sizes, results):
        if row.workload not in results:
            continue
        s, s_text = _cell(results, row, "stepline")
        d, d_text = _cell(results, row, "dbos")
        ratio = _better(s, d, row.higher_better) if (s is not None and row.compare) else None
        ratio_text = (
            "—"
            if ratio is None
            else (f"{ratio:.1f}x better" if ratio >= 1 else f"{1 / ratio:.1f}x worse")
        )
        met = row.check(s, d, results) if (row.check is not None and s is not None) else None
        out.append({
            "label": row.label, "workload": row.workload, "key": row.key, "unit": row.unit,
            "stepline": s, "dbos": d, "stepline_text": s_text or "—", "dbos_text": d_text or "—",
            "ratio": ratio, "ratio_text": ratio_text, "target": row.target,
            "met": met, "result": "—" if met is None else ("met" if met else "MISSED"),
        })  # fmt: skip
    return out


HEADERS = ("Workload", "Stepline", "DBOS", "Stepline vs DBOS", "Target", "Result")


def _columns(entry: dict[str, Any]) -> tuple[str, ...]:
    return (entry["label"], entry["stepline_text"], entry["dbos_text"], entry["ratio_text"],
            entry["target"], entry["result"])  # fmt: skip


def render_plain(entries: list[dict[str, Any]]) -> str:
    lines = [HEADERS, *(_columns(e) for e in entries)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]
    right = {1, 2, 3}

    def join(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([join(HEADERS), rule, *(join(c) for c in lines[1:])])


def render(entries: list[dict[str, Any]], title: str, plain: bool = False) -> None:
    if not plain:
        try:
            from rich import box
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            plain = True
    if plain:
        print(title)
        print(render_plain(entries))
        return
    console = Console(width=None if sys.stdout.isatty() else 170)
    table = Table(title=title, box=box.SIMPLE_HEAVY, title_justify="left")
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="right" if i in (1, 2, 3) else "left", no_wrap=i < 4)
    for entry in entries:
        cells = list(_columns(entry))
        if entry["met"] is True:
            cells[5] = "[green]met[/green]"
        elif entry["met"] is False:
            cells[5] = "[bold red]MISSED[/bold red]"
        table.add_row(*cells)
    console.print(table)
