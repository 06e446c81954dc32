"""The broad benchmark's decision rules: geometric means, bootstrap intervals, best baseline, windows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compare  # noqa: E402
import zero_shot  # noqa: E402


def results_for(ratios: dict[str, list[float]], groups: list[str]) -> tuple[dict, list[dict]]:
    """Per-task scores where SeasonalNaive scores 1, so each model's score is its relative score."""
    tasks = [{"name": f"t{i}", "group": g} for i, g in enumerate(groups)]
    results = {t["name"]: {"SeasonalNaive": {"scores": {"MASE": 1.0, "WQL": 1.0, "sMAPE": 1.0, "coverage_10_90": 0.8}}}
               for t in tasks}
    for model, values in ratios.items():
        for t, v in zip(tasks, values):
            results[t["name"]][model] = {"scores": {"MASE": v, "WQL": v, "sMAPE": v, "coverage_10_90": 0.8},
                                         "seconds": 1.0, "error": None}
    return results, tasks


def test_the_interval_holds_the_geometric_mean_and_shrinks_with_agreement() -> None:
    value, low, high = zero_shot.geo_interval(np.log([0.5, 2.0, 1.0, 1.0]))
    assert value == pytest.approx(1.0) and low < 1.0 < high
    steady = zero_shot.geo_interval(np.log([0.8, 0.8, 0.8, 0.8]))
    assert steady == pytest.approx((0.8, 0.8, 0.8))
    assert np.isnan(zero_shot.geo_interval([0.1, np.nan])[0])  # a missing task is no aggregate


def test_best_baseline_and_paired_ratio_per_group() -> None:
    groups = ["yearly"] * 4 + ["monthly"] * 4
    results, tasks = results_for({"AutoETS": [0.9] * 8, "AutoARIMA": [0.8] * 8, "AutoTheta": [1.1] * 8,
                                  "ttm": [0.72] * 4 + [0.8] * 4}, groups)
    for t in tasks:
        results[t["name"]]["StatsMedian"] = results[t["name"]]["AutoETS"]
    models = ["SeasonalNaive", "AutoETS", "AutoARIMA", "AutoTheta", "StatsMedian", "ttm"]
    summary = zero_shot.aggregate(results, tasks, models, ["ttm"])
    assert summary["best_baseline"] == {"MASE": "AutoARIMA", "WQL": "AutoARIMA"}
    assert summary["versus_best"]["ttm"]["yearly"]["MASE"] == pytest.approx((0.9, 0.9, 0.9))
    assert summary["versus_best"]["ttm"]["monthly"]["MASE"] == pytest.approx((1.0, 1.0, 1.0))
    assert summary["relative"]["all"]["ttm"]["MASE"][0] == pytest.approx(np.sqrt(0.72 * 0.8))


def test_a_run_without_baselines_says_so_instead_of_naming_none() -> None:
    results, tasks = results_for({"ttm": [0.9, 0.8]}, ["yearly", "monthly"])
    for t in tasks:
        t.update({"set": "eval", "freq": "YS", "m": 1, "horizon": 6, "n_windows": 1, "n_series": 1})
        results[t["name"]]["SeasonalNaive"]["seconds"] = 1.0
    models = ["SeasonalNaive", "ttm"]
    summary = zero_shot.aggregate(results, tasks, models, ["ttm"])
    assert summary["best_baseline"] == {"MASE": None, "WQL": None}
    meta = {"command": "c", "date": "d", "git_commit": "g", "machine": "m", "python": "3", "uptime_at_start": "u",
            "threads": {}, "packages": {}}
    text = zero_shot.render(meta, tasks, results, summary, models, ["ttm"], [])
    assert "None" not in text and "No statistical baseline ran" in text and "against the best baseline" not in text


def test_compare_says_wins_only_beyond_the_interval() -> None:
    results, tasks = results_for({"new": [0.9, 0.8, 0.95, 0.85], "old": [1.0, 1.0, 1.0, 1.0],
                                  "mixed": [0.7, 1.3, 0.9, 1.1]}, ["yearly", "yearly", "monthly", "monthly"])
    data = {"tasks": {t["name"]: {"group": t["group"], "models": results[t["name"]]} for t in tasks}}
    rows = {row[0]: row for row in compare.compare(data, "new", "old")}
    assert rows["all (4)"][2] == "wins" and rows["all (4)"][4] == "wins"
    assert compare.compare(data, "mixed", "old")[0][2] == "within the interval"
    assert compare.compare(data, "old", "new")[0][2] == "loses"
    assert compare.verdict((0.99998, 0.99998, 0.99998)) == "within the interval"  # rounding, not a win
    assert compare.verdict((0.998, 0.997, 0.999)) == "wins"


def test_compare_pools_the_tasks_of_another_run_and_refuses_the_same_task_twice() -> None:
    results, tasks = results_for({"new": [0.9, 0.8], "old": [1.0, 1.0]}, ["yearly", "yearly"])
    held_out = {f"h{i}": {"group": "yearly", "models": {"SeasonalNaive": results["t0"]["SeasonalNaive"],
                                                         "new": results["t0"]["old"], "old": results["t0"]["old"]}}
                for i in range(2)}
    data = {"tasks": {t["name"]: {"group": t["group"], "models": results[t["name"]]} for t in tasks}}
    pooled = compare.with_tasks_of(data, {"tasks": held_out})
    rows = {row[0]: row for row in compare.compare(pooled, "new", "old")}
    assert "yearly (4)" in rows
    assert rows["yearly (4)"][1].startswith(f"{np.exp(np.mean(np.log([0.9, 0.8, 1.0, 1.0]))):.3f}")
    with pytest.raises(SystemExit, match="t0"):
        compare.with_tasks_of(data, data)
    with pytest.raises(SystemExit):  # argparse: the reference run would have no rows of the added tasks
        compare.main(["a.json", "new", "old", "--add-tasks", "b.json", "--reference-results", "c.json"])


def test_compare_takes_the_reference_from_a_run_of_the_same_windows() -> None:
    groups = ["yearly", "yearly", "monthly", "monthly"]
    after, tasks = results_for({"ttm": [0.9, 0.8, 0.95, 0.85]}, groups)
    before, _ = results_for({"ttm": [1.0, 1.0, 1.0, 1.0]}, groups)

    def run(results, horizon=6):
        return {"tasks": {t["name"]: {"group": t["group"], "n_windows": 3, "horizon": horizon,
                                      "models": results[t["name"]]} for t in tasks}}

    data, label = compare.with_reference_from(run(after), run(before), "ttm")
    rows = {row[0]: row for row in compare.compare(data, "ttm", label)}
    assert rows["all (4)"][1].startswith(f"{np.exp(np.mean(np.log([0.9, 0.8, 0.95, 0.85]))):.3f}")
    assert rows["all (4)"][2] == "wins"
    assert data["tasks"]["t0"]["models"]["ttm"]["scores"]["MASE"] == 0.9  # the candidate's rows stay
    with pytest.raises(SystemExit, match="same windows"):
        compare.with_reference_from(run(after), run(before, horizon=12), "ttm")


def test_windows_rise_only_where_every_series_keeps_a_long_context() -> None:
    task = {"horizon": 6, "m": 1, "n_windows": 1, "min_length": 40}
    assert zero_shot.with_windows(task, 5)["n_windows"] == 3  # (40 - 18) // 6
    assert zero_shot.with_windows({**task, "min_length": 15}, 5)["n_windows"] == 1  # never below the manifest
    assert zero_shot.frequency_group("QS-OCT") == "quarterly" and zero_shot.frequency_group("30min") == "sub-daily"
    assert zero_shot.parse_model_spec("ttm[log_scale=never;context_length=96]") == \
        ("ttm", {"log_scale": "never", "context_length": 96})


def test_max_history_hands_every_window_only_the_last_points_and_is_not_reused_across_settings(tmp_path) -> None:
    import pandas as pd

    df = pd.concat([pd.DataFrame({"unique_id": uid, "ds": pd.date_range("2000-01-01", periods=n, freq="D"),
                                  "y": np.arange(n, dtype=float)}) for uid, n in (("a", 50), ("b", 30))])
    seen = []

    def last_value(context):  # a forecaster that records what it was given
        seen.append(context.groupby("unique_id").size().to_dict())
        last = context.groupby("unique_id").tail(1)
        rows = [{"unique_id": u, "ds": d + pd.Timedelta(days=k), "mean": y, **{str(q): y for q in zero_shot.QUANTILES}}
                for u, d, y in zip(last["unique_id"], last["ds"], last["y"]) for k in (1, 2)]
        return pd.DataFrame(rows)

    task = {"name": "t", "horizon": 2, "n_windows": 2, "m": 1, "max_history": 8}
    run, _ = zero_shot.run_model(last_value, df, task)
    assert run["error"] is None and seen == [{"a": 8, "b": 8}] * 2
    seen.clear()
    zero_shot.run_model(last_value, df, {**task, "max_history": 0})
    assert seen == [{"a": 46, "b": 26}, {"a": 48, "b": 28}]  # the last 2 windows, each with all history before it

    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"tasks": {"t": {"horizon": 2, "n_windows": 2, "models": {"m": {}}}}}))
    assert zero_shot.reused_rows(earlier, [{**task, "max_history": 0}], set()) == {"t": {"m": {}}}
    with pytest.raises(SystemExit, match="reading 8 points"):
        zero_shot.reused_rows(earlier, [task], set())


def test_reused_rows_keep_the_commands_that_made_them(tmp_path) -> None:
    first = {"meta": {"command": "python first", "date": "d1", "git_commit": "c1"}, "tasks": {}}
    (tmp_path / "first.json").write_text(json.dumps(first))
    reused = {"t0": {"AutoETS": {}, "SeasonalNaive": {}}}
    second = {"meta": {"command": "python second", "date": "d2", "git_commit": "c2"}, "tasks": {},
              "provenance": zero_shot.provenance(tmp_path / "first.json", reused)}
    assert second["provenance"] == [{"command": "python first", "date": "d1", "git_commit": "c1",
                                     "file": str(tmp_path / "first.json"), "models": ["AutoETS", "SeasonalNaive"]}]
    (tmp_path / "second.json").write_text(json.dumps(second))
    carried = zero_shot.provenance(tmp_path / "second.json", {"t0": {"AutoETS": {}, "ttm": {}}})
    assert [(e["command"], e["models"]) for e in carried] == [("python first", ["AutoETS"]), ("python second", ["ttm"])]
    assert zero_shot.provenance(None, reused) == []


@pytest.mark.parametrize("spec", ["nosuchmodel", "ttm[nosuchkw=1]", "ttm[foo]"])
def test_a_model_the_script_cannot_run_is_refused_before_any_task(spec: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        zero_shot.check_models(["ttm", spec])
    assert exit_info.value.code == 2 and spec.split("[")[0] in str(exit_info.value)
    zero_shot.check_models(["ttm", "ttm[calibration_windows=5]"])  # a real keyword passes


def test_a_group_of_one_task_gets_its_ratio_but_no_interval_and_no_verdict() -> None:
    results, tasks = results_for({"ttm": [1.011, 0.8, 0.8], "AutoARIMA": [1.0, 1.0, 1.0]},
                                 ["weekly", "monthly", "monthly"])
    data = {"tasks": {t["name"]: {"group": t["group"], "models": results[t["name"]]} for t in tasks}}
    rows = {row[0]: row for row in compare.compare(data, "ttm", "AutoARIMA")}
    assert rows["weekly (1)"][1:3] == ["1.011 (one task: no interval)", "one task: no interval"]
    assert rows["monthly (2)"][2] == "wins"  # two agreeing tasks still decide
    value, low, high = zero_shot.geo_interval(np.log([1.011]))
    assert value == pytest.approx(1.011) and np.isnan(low) and np.isnan(high)
