"""The benchmark's arithmetic: medians over rounds, the verdict on each target, the tables.

Pure functions over the result dictionaries bench/run.py builds, so they are tested without timing.
A round maps each target ("direct", "baseline", then one per relaylog store) to its measurements.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

# DESIGN.md section 10, one relaylog process against one bare proxy process.
THROUGHPUT_RATIO = 0.85
CPU_RATIO = 1.4
ADDED_P50_MS = 0.1
ADDED_P99_MS = 0.5
TTFB_ADDED_P50_MS = 1.0
STREAMS_RSS_RATIO = 1.5
POSTGRES_VS_SQLITE = 0.8
# Held-stream RSS is flat when the second round is within 10% (+4 MiB) of the first.
FLAT_RATIO, FLAT_SLACK_KIB = 1.10, 4096

Round = dict[str, dict[str, Any]]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _per_round(rounds: Sequence[Round], fn: Callable[[Round], float]) -> float:
    return median([fn(r) for r in rounds])


def summarise(rounds: Sequence[Round], stores: Sequence[str]) -> dict[str, Any]:
    """Medians over rounds; every ratio and added latency is taken within a round first."""
    out: dict[str, Any] = {}
    for target in ("direct", "baseline", *stores):
        out[target] = {
            "rps": _per_round(rounds, lambda r, t=target: r[t]["load"]["rps"]),
            "cpu_us": _per_round(
                rounds, lambda r, t=target: r[t]["load"].get("cpu_us_per_request", float("nan"))
            ),
            "p50_ms": _per_round(rounds, lambda r, t=target: r[t]["latency"]["latency_us"]["p50"])
            / 1000,
            "p99_ms": _per_round(rounds, lambda r, t=target: r[t]["latency"]["latency_us"]["p99"])
            / 1000,
            "ttfb_p50_ms": _per_round(rounds, lambda r, t=target: r[t]["ttfb"]["p50_ms"]),
        }
    for store in stores:
        s = out[store]
        s["rps_ratio"] = _per_round(
            rounds, lambda r, t=store: r[t]["load"]["rps"] / r["baseline"]["load"]["rps"]
        )
        s["rps_ratio_each_round"] = [
            round(r[store]["load"]["rps"] / r["baseline"]["load"]["rps"], 3) for r in rounds
        ]
        s["cpu_ratio"] = _per_round(
            rounds,
            lambda r, t=store: (
                r[t]["load"]["cpu_us_per_request"] / r["baseline"]["load"]["cpu_us_per_request"]
            ),
        )
        for q in ("p50", "p99"):
            s[f"added_{q}_ms"] = (
                _per_round(
                    rounds,
                    lambda r, t=store, q=q: (
                        r[t]["latency"]["latency_us"][q] - r["baseline"]["latency"]["latency_us"][q]
                    ),
                )
                / 1000
            )
        s["added_ttfb_p50_ms"] = _per_round(
            rounds, lambda r, t=store: r[t]["ttfb"]["p50_ms"] - r["direct"]["ttfb"]["p50_ms"]
        )
    if "sqlite" in stores and "postgresql" in stores:
        out["postgresql"]["vs_sqlite"] = _per_round(
            rounds, lambda r: r["postgresql"]["load"]["rps"] / r["sqlite"]["load"]["rps"]
        )
    return out


def streams_verdict(
    held: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]], wanted: int
) -> tuple[str, bool]:
    """Every stream held in every round, RSS within the ratio of the bare proxy's, and flat."""
    if not held or not baseline:
        return "not measured", False
    base = max(r["rss_held_kib"] for r in baseline)
    ratio = max(r["rss_held_kib"] for r in held) / base
    flat = held[-1]["rss_held_kib"] <= held[0]["rss_held_kib"] * FLAT_RATIO + FLAT_SLACK_KIB
    all_held = all(r["held"] == wanted and r["completed"] == wanted for r in held)
    mib = " / ".join(f"{r['rss_held_kib'] / 1024:.0f}" for r in held)
    measured = f"{mib} MiB, {ratio:.2f}x bare{'' if flat else ', growing'}"
    if not all_held:
        measured += f", held {' / '.join(str(r['held']) for r in held)} of {wanted}"
    return measured, all_held and flat and ratio <= STREAMS_RSS_RATIO


def writer_verdict(run: dict[str, Any] | None, batch_size: int) -> tuple[str, bool]:
    """The writer keeps up: nothing dropped, and the queue's peak in the last third of the run
    is no higher than in the first third plus one batch (a backlog that grows fails)."""
    if not run or not run["depth_samples"]:
        return "not measured", False
    depths = [d for _, d in run["depth_samples"]]
    third = max(1, len(depths) // 3)
    early, late = max(depths[:third]), max(depths[-third:])
    measured = (
        f"{run['rows_per_s']:,.0f} rows/s, peak depth {max(depths):,.0f} "
        f"(last third {late:,.0f}), dropped {run['dropped']:.0f}"
    )
    return measured, run["dropped"] == 0 and late <= early + batch_size


def check_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One verdict per target and store."""
    s = result["summary"]
    cfg = result["config"]
    checks: list[tuple[str, str, str, bool]] = []
    for store in result["stores"]:
        rl = s[store]
        checks += [
            (
                store,
                f"throughput @c{cfg['connections']} >= {THROUGHPUT_RATIO}x bare",
                f"{rl['rps_ratio']:.2f}x",
                rl["rps_ratio"] >= THROUGHPUT_RATIO,
            ),
            (
                store,
                f"CPU/request <= {CPU_RATIO}x bare",
                f"{rl['cpu_us']:.0f} vs {s['baseline']['cpu_us']:.0f} us, {rl['cpu_ratio']:.2f}x",
                rl["cpu_ratio"] <= CPU_RATIO,
            ),
            (
                store,
                f"c1 p50 <= bare + {ADDED_P50_MS} ms",
                f"{rl['added_p50_ms']:+.3f} ms",
                rl["added_p50_ms"] <= ADDED_P50_MS,
            ),
            (
                store,
                f"c1 p99 <= bare + {ADDED_P99_MS} ms",
                f"{rl['added_p99_ms']:+.3f} ms",
                rl["added_p99_ms"] <= ADDED_P99_MS,
            ),
            (
                store,
                f"stream TTFB p50 <= direct + {TTFB_ADDED_P50_MS:g} ms",
                f"{rl['added_ttfb_p50_ms']:+.3f} ms",
                rl["added_ttfb_p50_ms"] <= TTFB_ADDED_P50_MS,
            ),
        ]
        held = result["open_streams"].get(store, {}).get("rounds", [])
        base = result["open_streams"].get("baseline", {}).get("rounds", [])
        measured, ok = streams_verdict(held, base, cfg["streams"])
        label = f"{cfg['streams']} open streams: RSS <= {STREAMS_RSS_RATIO}x bare, flat"
        checks.append((store, label, measured, ok))
        log = result["log"][store]
        checks.append(
            (
                store,
                "rows logged == responses served",
                f"{log['rows']:,} / {log['served']:,}",
                log["rows"] == log["served"] and log["rows"] > 0,
            )
        )
        measured, ok = writer_verdict(result["sustained"].get(store), cfg["batch_size"])
        checks.append(
            (store, f"writer keeps up for {cfg['sustain_s']:g}s at full load", measured, ok)
        )
    if "vs_sqlite" in s.get("postgresql", {}):
        ratio = s["postgresql"]["vs_sqlite"]
        checks.append(
            (
                "postgresql",
                f"throughput >= {POSTGRES_VS_SQLITE}x the SQLite run",
                f"{ratio:.2f}x",
                ratio >= POSTGRES_VS_SQLITE,
            )
        )
    return [{"store": st, "target": t, "measured": m, "met": ok} for st, t, m, ok in checks]


def writer_cell(run: dict[str, Any] | None) -> str:
    """`rows/s, peak depth` of a sustained run, or `-`."""
    if not run:
        return "-"
    peak = max((d for _, d in run["depth_samples"]), default=0)
    return f"{run['rows_per_s']:,.0f}, {peak:,.0f}"


def _ms(value: float) -> str:
    return f"{value:.3f}"


def markdown(result: dict[str, Any]) -> str:
    """The measurements table, then the targets table."""
    s = result["summary"]
    cfg = result["config"]
    stores = list(result["stores"])
    targets = ["direct", "baseline", *stores]
    peak = result["peak_rss_mib"]

    def row(label: str, cells: Sequence[str]) -> str:
        return "| " + " | ".join([label, *cells]) + " |"

    def each(fn: Callable[[str], str], skip: Sequence[str] = ()) -> list[str]:
        return ["-" if t in skip else fn(t) for t in targets]

    def held(t: str, key: str = "rss_held_kib") -> str:
        rounds = result["open_streams"].get(t, {}).get("rounds", [])
        return " / ".join(f"{r.get(key, r['rss_held_kib']) / 1024:.0f}" for r in rounds) or "-"

    header = ["direct", "baseline", *(f"relaylog {st}" for st in stores)]
    lines = [
        f"relaylog bench: {cfg['rounds']} rounds x {cfg['duration_s']:g}s, one process each, "
        f"c{cfg['connections']}, uvloop {cfg['uvloop']}, {cfg['cpus']} CPUs, "
        f"load average {cfg['loadavg_start']} -> {result['loadavg_end']}",
        "",
        row("metric", header),
        "|---|" + "---:|" * len(header),
        row(f"requests/s @c{cfg['connections']}", each(lambda t: f"{s[t]['rps']:,.0f}")),
        row(
            "  x bare",
            each(lambda t: f"{s[t]['rps_ratio']:.2f}", skip=("direct", "baseline")),
        ),
        row(
            "CPU us/request (all threads and processes)",
            each(lambda t: f"{s[t]['cpu_us']:.0f}", skip=("direct",)),
        ),
        row("  x bare", each(lambda t: f"{s[t]['cpu_ratio']:.2f}", skip=("direct", "baseline"))),
        row("p50 @c1 (ms)", each(lambda t: _ms(s[t]["p50_ms"]))),
        row("p99 @c1 (ms)", each(lambda t: _ms(s[t]["p99_ms"]))),
        row(
            "added p50 / p99 vs bare (ms)",
            each(
                lambda t: f"{s[t]['added_p50_ms']:+.3f} / {s[t]['added_p99_ms']:+.3f}",
                skip=("direct", "baseline"),
            ),
        ),
        row("stream TTFB p50 (ms)", each(lambda t: _ms(s[t]["ttfb_p50_ms"]))),
        row(f"{cfg['streams']} open streams, RSS MiB round 1 / 2 (each page once)", each(held)),
        row(
            "  the same, each process's RSS added up",
            each(lambda t: held(t, "rss_sum_held_kib")),
        ),
        row("peak RSS (MiB, each process's peak added up)", each(lambda t: f"{peak[t]:.0f}")),
        row(
            "rows logged / responses served",
            each(
                lambda t: f"{result['log'][t]['rows']:,} / {result['log'][t]['served']:,}",
                skip=("direct", "baseline"),
            ),
        ),
        row(
            f"writer over {cfg['sustain_s']:g}s: rows/s, peak queue depth",
            each(
                lambda t: writer_cell(result["sustained"].get(t)),
                skip=("direct", "baseline"),
            ),
        ),
        "",
        "| store | target (DESIGN §10) | measured | met |",
        "|---|---|---:|:---:|",
    ]
    lines += [
        f"| {c['store']} | {c['target']} | {c['measured']} | {'yes' if c['met'] else 'NO'} |"
        for c in result["targets"]
    ]
    lines.append("")
    for store in stores:
        lines.append(f"{store} throughput ratio per round: {s[store]['rps_ratio_each_round']}")
    return "\n".join(lines)
