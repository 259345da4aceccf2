"""The latency picture of a benchmark run: p50, p95 and p99 against offered load, direct LDAPS beside
pass-through sign-ins. Offered load is the number of closed-loop clients (LDAP connections for the direct
binds, HTTP clients for the sign-ins): each sends its next request as soon as the last one is answered. When the
run measured it, a third panel shows the open-loop windows at half the peak rate side by side: a direct bind +
read, the password POST and the whole sign-in, at the same arrivals."""

from __future__ import annotations

from pathlib import Path

PERCENTILES = (("p50", "-"), ("p95", "--"), ("p99", ":"))


def latency_plot(report: dict, paths: list[Path]) -> None:
    """Draw the run's main windows (not the profile, placement or scaling ones) and save the PNG to each path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    main = [row for row in report["passthrough"] if row["purpose"] == "main"]
    panels = [
        ("Direct LDAPS (the ceiling)", "LDAP connections", [
            ("bind", "tab:blue", [(r["connections"], r, "") for r in report["direct"] if r["op"] == "bind"]),
            ("bind + read-as-user", "tab:green",
             [(r["connections"], r, "") for r in report["direct"] if r["op"] == "bind+read"]),
        ]),
        ("Pass-through sign-ins", "HTTP clients", [
            ("whole sign-in (3 requests)", "tab:red",
             [(r["concurrency"], r, "cycle_") for r in main if r["mode"] == "cycle"]),
            ("password POST alone", "tab:orange",
             [(r["concurrency"], r, "") for r in main if r["mode"] == "post"]),
        ]),
    ]
    half = report.get("half_peak")
    figure, all_axes = plt.subplots(1, 3 if half else 2, figsize=(17 if half else 12, 4.8), sharey=True,
                                    gridspec_kw={"width_ratios": [1, 1, 0.7] if half else [1, 1]})
    axes = all_axes[:2]
    axes[1].sharex(axes[0])
    loads = sorted({x for _, _, series in panels for _, _, points in series for x, _, _ in points})
    for ax, (title, xlabel, series) in zip(axes, panels, strict=True):
        for label, color, points in series:
            points.sort(key=lambda point: point[0])
            for percentile, style in PERCENTILES:
                if points:
                    ax.plot([x for x, _, _ in points], [row[f"{prefix}{percentile}_ms"] for _, row, prefix in points],
                            style, marker="o", color=color, label=f"{label} {percentile}")
        ax.set_title(title)
        ax.set_xlabel(f"offered load: {xlabel} (closed loop)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(loads, [str(x) for x in loads])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if half:
        _half_peak_panel(all_axes[2], half)
    axes[0].set_ylabel("latency (ms)")
    pinned = f", pinned: DC on CPU {report['pin']['dc']}, rest on {report['pin']['rest']}" if report["pin"] else ""
    figure.suptitle(f"{report['profile']} profile, {report['started']}{pinned}")
    figure.tight_layout()
    for path in paths:
        figure.savefig(path, dpi=110)
    plt.close(figure)


def _half_peak_panel(ax, half: dict) -> None:
    """Grouped bars: p50, p95, p99 of the direct bind + read, the password POST and the whole sign-in."""
    rows = [("direct bind + read", half["direct"], ""), ("password POST", half["signin"], ""),
            ("whole sign-in", half["signin"], "cycle_")]
    width = 0.26
    for offset, (percentile, _) in enumerate(PERCENTILES):
        ax.bar([i + (offset - 1) * width for i in range(len(rows))],
               [row[f"{prefix}{percentile}_ms"] for _, row, prefix in rows], width, label=percentile,
               color=("tab:green", "tab:olive", "tab:gray")[offset])
    ax.set_xticks(range(len(rows)), [label for label, _, _ in rows], fontsize=8)
    ax.set_title(f"Open loop at half the peak: {half['rate']}/s (Poisson)")
    ax.grid(True, which="both", axis="y", alpha=0.3)
    ax.legend(fontsize=7)


def reconnect_variants(row: dict) -> list[dict]:
    """A fleet level's restarts, one per handshake admission tried (a run of the first adaptive version kept
    two, under reconnect_fixed and reconnect_adaptive); none for runs before the admission was adaptive."""
    if "reconnects" in row:
        return row["reconnects"]
    return [{**row[key], "label": label} for key, label in (("reconnect_fixed", "fixed limit"),
                                                          ("reconnect_adaptive", "adaptive (default wait)"))
            if key in row]


def fleet_plot(reports: list[dict], paths: list[Path]) -> None:
    """The fleet runs' curves against the number of connected agents (bench/fleet.py), one line per run and tenant
    count: memory per agent (the portal node's RSS, Redis's used_memory), the hand-off's p50 and p99, the time
    until every agent is back after the node's restart (the fixed limit and the adaptive admission, where the
    run measured both), and the sign-in rate against the run's first level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[dict]] = {}
    for report in reports:
        for row in report.get("fleet", []):
            label = f"{row['tenants']:,} tenant(s), run {report['started'][:15]}"
            series.setdefault(label, []).append(row)
    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    (memory, handoff), (reconnect, rate) = axes
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, rows) in enumerate(series.items()):
        rows = sorted(rows, key=lambda row: row["agents"])
        color = colors[index % len(colors)]
        # Levels whose agents all connected (a level that did not is no measure of memory per agent).
        grown = [r for r in rows if r["agents"] > 1 and r["portal_kib_per_agent"] > 0
                 and r["connect_seconds"] is not None]
        memory.plot([r["agents"] for r in grown], [r["portal_kib_per_agent"] for r in grown], "-o", color=color,
                    label=f"portal, {label}")
        redis_rows = [r for r in grown if r["redis_bytes_per_agent"] > 0]
        memory.plot([r["agents"] for r in redis_rows], [r["redis_bytes_per_agent"] / 1024 for r in redis_rows],
                    ":s", color=color, label=f"Redis, {label}")
        timed = [r for r in rows if r.get("handoff_p50_ms") is not None]  # a level that never all connected: none
        xs = [r["agents"] for r in timed]
        handoff.plot(xs, [r["handoff_p50_ms"] for r in timed], "-o", color=color, label=f"p50, {label}")
        handoff.plot(xs, [r["handoff_p99_ms"] for r in timed], ":s", color=color, label=f"p99, {label}")
        if any(reconnect_variants(r) for r in rows):
            labels = list(dict.fromkeys(v["label"] for r in rows for v in reconnect_variants(r)))
            for number, variant in enumerate(labels):
                points = [(r["agents"], v["seconds"]) for r in rows for v in reconnect_variants(r)
                          if v["label"] == variant and v["seconds"] is not None]
                reconnect.plot([x for x, _ in points], [y for _, y in points], ("-o", ":s", "--^", "-.v")[number % 4],
                               color=color, label=f"{variant}, {label}")
        else:
            points = [(r["agents"], r["reconnect_seconds"]) for r in rows if r["reconnect_seconds"] is not None]
            reconnect.plot([x for x, _ in points], [y for _, y in points], "--^", color=color, label=label)
        rate.plot(xs, [r["rate_vs_one_agent"] for r in timed], "-o", color=color, label=label)
    for ax, title, ylabel in (
            (memory, "Memory per connected agent", "KiB per agent (log)"),
            (handoff, "Hand-off: password POST less the directory's 5 ms (c=2)", "ms (log)"),
            (reconnect, "Every agent back after web1's restart", "seconds"),
            (rate, "Whole sign-ins per second (c=16) ÷ the run's first level", "ratio")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("connected agents (log)")
        ax.set_ylabel(ylabel)
        ax.set_xscale("log")
        if ax in (memory, handoff):
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    rate.axhline(1.0, color="gray", linewidth=0.8)
    figure.suptitle("Simulated agent fleets, production profile, two nodes, every agent on web1 (shared 2-core "
                    "machine: compare within a run)", fontsize=11)
    figure.tight_layout()
    for path in paths:
        figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str]) -> int:
    """`python bench/plot.py fleet RUN.json [RUN.json …] --out PNG`: the fleet curves of several runs in one picture."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("kind", choices=["fleet"])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    fleet_plot([json.loads(path.read_text()) for path in args.runs], [args.out])
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
