"""The health page's SVG charts, from a history as agents_health() returns it (pure: no database)."""

import re

import pytest

from health.charts import latency_chart, outcome_totals, signins_chart


def history(signins: list[dict], latency: list[dict] | None = None) -> dict:
    points = [{"at": f"2030-01-01T10:{i:02d}:00+00:00", "outcomes": outcomes} for i, outcomes in enumerate(signins)]
    return {"signins": points, "latency": latency or [], "end": f"2030-01-01T10:{len(points):02d}:00+00:00"}


def bar_heights(svg: str) -> dict[str, float]:
    return {m[0]: float(m[1]) for m in re.findall(r'<rect class="o-(\w+)" x="[\d.]+" y="[\d.]+" width="[\d.]+" '
                                                  r'height="([\d.]+)"', svg)}


def test_bars_stack_success_first_and_the_failures_on_top_on_an_axis_that_reads_well():
    h = history([{}, {"agent_timeout": 3, "success": 12, "account_locked": 1, "invalid_credentials": 4}])
    assert [o for o, _ in outcome_totals(h)] == ["success", "invalid_credentials", "account_locked", "agent_timeout"]
    svg = str(signins_chart(h))
    assert re.findall(r'<rect class="o-(\w+)"', svg) == ["success", "invalid_credentials", "account_locked",
                                                         "agent_timeout"]
    assert ">20</text>" in svg and ">0</text>" in svg  # 20 sign-ins: the axis tops at 20, not 17
    heights = bar_heights(svg)
    assert heights["success"] == pytest.approx(3 * heights["invalid_credentials"], abs=0.02)
    assert heights["success"] == pytest.approx(4 * heights["agent_timeout"], abs=0.02)
    assert "10:00</text>" in svg and "10:02</text>" in svg  # the window's start and end


def test_an_empty_window_says_so():
    assert "No sign-ins in this window" in str(signins_chart(history([{}, {}])))
    assert "No agent answered in this window" in str(latency_chart(history([{}, {}])))


def test_a_line_breaks_where_the_agent_answered_nothing():
    def at(i):
        return f"2030-01-01T10:{i:02d}:00+00:00"

    series = {"agent": "a1", "name": "dc-east", "points": [
        {"at": at(0), "p50": 10.0, "p95": 40.0}, {"at": at(1), "p50": 12.0, "p95": 80.0},
        {"at": at(3), "p50": 11.0, "p95": 30.0}]}
    svg = str(latency_chart(history([{}] * 4, [series])))
    p50, p95 = svg.count('class="s-0 p50"'), svg.count('class="s-0 p95"')
    assert (p50, p95) == (2, 2)  # minutes 0–1 are a line; minute 3, alone, is a dot
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 2
    assert ">100 ms</text>" in svg  # the slowest p95, 80 ms, under an axis that reads well


def test_names_and_outcomes_from_the_database_are_escaped():
    series = {"agent": "a1", "name": "<script>alert(1)</script>", "points": [
        {"at": "2030-01-01T10:00:00+00:00", "p50": 1.0, "p95": 2.0}]}
    h = history([{'"><script>': 1}], [series])
    for svg in (str(signins_chart(h)), str(latency_chart(h))):
        assert "<script>" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in str(latency_chart(h))


def test_every_outcome_has_a_colour_and_a_pattern_of_its_own():
    from health.charts import DARK_LIGHTEN, OUTCOME_STYLES, _lighter
    from signin.outcomes import Outcome

    assert {o.value for o in Outcome} <= set(OUTCOME_STYLES)  # none falls back to the grey of the unknown
    colours = [colour for colour, _ in OUTCOME_STYLES.values()]
    patterns = [pattern for _, pattern in OUTCOME_STYLES.values()]
    assert len(set(colours)) == len(colours)
    assert len({_lighter(c, DARK_LIGHTEN) for c in colours}) == len(colours)  # and in the dark theme
    assert len(set(patterns)) == len(patterns)
    assert [o for o, (_, (kind, _)) in OUTCOME_STYLES.items() if kind == "solid"] == ["success"]


def test_the_bars_and_the_legend_share_each_outcome_s_pattern_and_colour():
    from health.charts import chart_styles, signins_legend

    h = history([{"success": 5, "agent_timeout": 2}, {"directory_unavailable": 1, "no_agent_available": 3,
                                                     "success": 1}])
    svg, legend = str(signins_chart(h)), str(signins_legend(h))
    order = ["success", "no_agent_available", "agent_timeout", "directory_unavailable"]
    # One pattern per outcome in the chart's definitions, each drawn differently (success alone is plain).
    patterns = dict(re.findall(r'<pattern id="(outcome-pattern-\d+)" class="o-(\w+)"', svg))
    assert sorted(patterns.values()) == sorted(order)
    bodies = re.findall(r'<pattern id="outcome-pattern-\d+"[^>]*>(.*?)</pattern>', svg)
    assert len(set(bodies)) == len(order)
    # Each bar is filled with its outcome's pattern.
    for outcome, fill in re.findall(r'<rect class="o-(\w+)" [^>]* fill="url\(#(outcome-pattern-\d+)\)"', svg):
        assert patterns[fill] == outcome
    # The legend: one entry per outcome, in the bars' order, its swatch the same pattern, with the window's count.
    entries = re.findall(r'<li class="o-(\w+)" data-outcome="\w+"><svg [^>]*><rect [^>]*fill="url\(#'
                         r'(outcome-pattern-\d+)\)"/></svg>([\w ]+) <span class="n">(\d+)</span></li>', legend)
    assert [(o, patterns[f], name, int(n)) for o, f, name, n in entries] == [
        ("success", "success", "success", 6), ("no_agent_available", "no_agent_available", "no agent available", 3),
        ("agent_timeout", "agent_timeout", "agent timeout", 2),
        ("directory_unavailable", "directory_unavailable", "directory unavailable", 1)]
    # The colours, light and dark, for exactly these outcomes.
    css = str(chart_styles(order))
    assert css.count(".health .o-agent_timeout {") == 3  # light, dark by the system, dark by the switch
    assert ".o-invalid_credentials" not in css
    assert "--c: #e53935" in css and "--c: #d81b60" in css


def test_an_outcome_the_table_does_not_know_is_grey_and_dashed_and_its_name_escaped():
    from health.charts import OTHER_STYLE, chart_styles, signins_legend

    h = history([{"brand_new_outcome": 2, '"><img src=x>': 1}])
    assert "<img" not in str(signins_legend(h)) and "<img" not in str(signins_chart(h))
    assert f"--c: {OTHER_STYLE[0]}" in str(chart_styles(["brand_new_outcome"]))


def test_each_agent_s_line_has_a_marker_of_its_own_in_the_chart_and_the_legend():
    from health.charts import latency_legend

    def at(i):
        return f"2030-01-01T10:{i:02d}:00+00:00"

    series = [{"agent": f"a{n}", "name": f"dc-{n}", "points": [{"at": at(0), "p50": 10.0 + n, "p95": 20.0},
                                                              {"at": at(1), "p50": 11.0, "p95": 21.0}]}
              for n in range(3)]
    h = history([{}] * 2, series)
    svg, legend = str(latency_chart(h)), str(latency_legend(h))
    markers = {n: set(re.findall(rf'<g class="s-{n} p50">.*?</g>', svg)[0].split('class="marker m-')[1:])
               for n in range(3)}
    kinds = {n: {m.split('"')[0].split(" ")[0] for m in found} for n, found in markers.items()}
    assert kinds == {0: {"circle"}, 1: {"square"}, 2: {"triangle"}}
    assert svg.count('class="marker m-square"') == 2  # both ends of agent 1's stretch
    assert re.findall(r'<li class="s-(\d)" data-agent="a\d"><svg [^>]*><line [^>]*/><path class="marker m-(\w+)"',
                      legend) == [("0", "circle"), ("1", "square"), ("2", "triangle")]
