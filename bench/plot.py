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
