"""Stated confidence (hfmem/plan/confidence.py, hfmem/data/confidence.json, the fit verdict of plan/fit.py).

Expected values are hand calculations written here: the order-statistic coverage (n+1-2k)/(n+1), the
leave-one-out check recomputed from the residuals the file stores, the byte band estimate/(1+error), and the
verdict sentences for hand-made capacities.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hfmem
from hfmem.cli import app, route_argv
from hfmem.plan.confidence import (band_from, band_for, choose_k, confidence_of, interval_level, leave_one_out,
                                   load_bands, true_value_band)
from hfmem.plan.fit import fit_verdict

ROOT = Path(__file__).resolve().parents[1]
STORED = json.loads((ROOT / "hfmem" / "data" / "confidence.json").read_text())
GiB = 2**30
runner = CliRunner()


# -- the order-statistic arithmetic -----------------------------------------------------------------------------

def test_interval_level_by_hand():
    # the new case is equally likely to take any of the n+1 ranks; outside [k-th smallest, k-th largest]
    # are the k lowest and k highest ranks: 2k of n+1
    assert interval_level(19, 1) == (19 + 1 - 2) / 20 == 0.9
    assert interval_level(39, 1) == 38 / 40 == 0.95
    assert interval_level(39, 2) == 36 / 40
    assert interval_level(9, 1) == 8 / 10
    assert interval_level(5, 1) == 4 / 6
    with pytest.raises(ValueError):
        interval_level(4, 3)  # 2k > n+1: no such interval


@pytest.mark.parametrize("n, expected", [
    (19, (1, 0.9, 0.9)),           # 18/20 reaches 90% exactly; 95% needs 19/20
    (18, (1, 17 / 19, None)),      # 17/19 = 89.5% < 90%: the widest band and its own claim
    (29, (1, 28 / 30, 0.9)),       # k=2 would claim 26/30 = 86.7%
    (39, (1, 0.95, 0.95)),         # 38/40 reaches 95%
    (59, (1, 58 / 60, 0.95)),      # k=2: 56/60 = 93.3% < 95%
    (79, (2, 76 / 80, 0.95)),      # k=2: 76/80 = 95%
    (9, (1, 0.8, None)),
    (2, (1, 1 / 3, None)),
    (1, None), (0, None),          # no interval claims anything
])
def test_choose_k_by_hand(n, expected):
    assert choose_k(n) == expected


def test_band_from_takes_the_kth_smallest_and_largest():
    errors = [0.01 * i for i in range(-10, 9)]  # n = 19: k = 1, the extremes
    band = band_from(errors)
    assert (band["cases"], band["k"], band["error_low"], band["error_high"]) == (19, 1, -0.1, 0.08)
    errors79 = [0.001 * i for i in range(79)]  # n = 79: k = 2, the second smallest and second largest
    band = band_from(errors79)
    assert (band["k"], band["error_low"], band["error_high"]) == (2, 0.001, 0.077)
    assert band_from([0.1]) is None


def test_leave_one_out_by_hand():
    # 5 distinct residuals: each band from the other 4 is [min, max] of those 4 (k=1); only the overall
    # minimum and maximum fall outside theirs: 3 of 5 covered; the 4-case bands claim (4-1)/(4+1) = 60%
    loo = leave_one_out([0.03, -0.02, 0.0, 0.05, -0.04])
    assert loo == {"covered": 3, "cases": 5, "coverage": 0.6, "level": 0.6}
    assert leave_one_out([0.1, 0.2]) is None  # one case left: no band to check against


# -- the shipped file ----------------------------------------------------------------------------------------

def _hand_k(m: int) -> tuple[int, float]:
    """Largest k with (m+1-2k)/(m+1) >= 95%, else >= 90%, else 1 — in integers (20·(m+1-2k) >= 19·(m+1))."""
    for num in (19, 18):
        ks = [k for k in range(1, (m + 1) // 2 + 1) if 20 * (m + 1 - 2 * k) >= num * (m + 1)]
        if ks:
            return max(ks), (m + 1 - 2 * max(ks)) / (m + 1)
    return 1, (m - 1) / (m + 1)


def _stored_bands():
    for q, entry in STORED["quantities"].items():
        for which, band in entry["bands"].items():
            if band is not None:
                yield f"{q}/{which}", band


def test_stored_bands_are_their_residuals_order_statistics():
    assert STORED["schema"] == "hfmem.confidence/1"
    assert set(STORED["quantities"]) == {"peak_allocated", "peak_reserved", "device_total"}
    seen = 0
    for name, band in _stored_bands():
        errors = sorted(r["error"] for r in band["residuals"])
        n = len(errors)
        k, level = _hand_k(n)
        assert (band["cases"], band["k"]) == (n, k), name
        assert band["level"] == pytest.approx(level), name
        assert (band["error_low"], band["error_high"]) == (errors[k - 1], errors[n - k]), name
        assert band["scenarios"] == {s: sum(r["scenario"] == s for r in band["residuals"])
                                     for s in band["scenarios"]}, name
        seen += 1
    assert seen >= 3  # at least one band per quantity


def test_stored_leave_one_out_coverage_recomputed_from_the_residuals():
    for name, band in _stored_bands():
        errors = [r["error"] for r in band["residuals"]]
        n = len(errors)
        if n < 3:
            assert band["loo"] is None, name
            continue
        covered = 0
        for i, e in enumerate(errors):
            others = sorted(errors[:i] + errors[i + 1:])
            k, _ = _hand_k(n - 1)
            covered += others[k - 1] <= e <= others[n - 1 - k]
        assert band["loo"]["covered"] == covered, name
        assert band["loo"]["coverage"] == pytest.approx(covered / n), name
        assert band["loo"]["level"] == pytest.approx(_hand_k(n - 1)[1]), name


def test_simulated_rows_are_not_in_the_bands():
    sim = {r["case"] for r in (STORED["simulation"]["band"] or {"residuals": []})["residuals"]}
    for _, band in _stored_bands():
        assert not sim & {r["case"] for r in band["residuals"]}


def test_band_for_uses_a_scenarios_own_cases_only_when_they_claim_90():
    for q, entry in STORED["quantities"].items():
        for scenario in ("infer", "train"):
            band = band_for(q, scenario, STORED)
            own = entry["bands"][scenario]
            if own is not None and own["cases"] >= 19:  # 18/20 = 90% from 19 cases
                assert band["set"] == scenario
            elif entry["bands"]["pooled"] is not None:
                assert band["set"] == "pooled"
                assert band["cases"] == entry["bands"]["pooled"]["cases"]


# -- bytes and verdicts --------------------------------------------------------------------------------------

def test_byte_band_by_hand():
    # measured = estimate/(1+error): errors -20% / +25% on a 10 GiB estimate -> 8 GiB .. 12.5 GiB
    assert true_value_band(10 * GiB, -0.2, 0.25) == (8 * GiB, 12.5 * GiB)
    # outward rounding: 1000/(1+0.3) = 769.23 -> 769; 1000/(1-0.3) = 1428.57 -> 1429
    assert true_value_band(1000, -0.3, 0.3) == (769, 1429)


def test_confidence_of_converts_each_total():
    doc = {"method": "m", "generated": "2000-01-01", "quantities": {"device_total": {
        "measured_quantity": "nvidia-smi", "use": {"train": "pooled"}, "bands": {"pooled": {
            "cases": 9, "k": 1, "level": 0.8, "target": None, "error_low": -0.2, "error_high": 0.25,
            "scenarios": {"train": 9}, "loo": {"coverage": 7 / 9}}}}}}
    conf = confidence_of({"peak_allocated_bytes": 5, "peak_reserved_bytes": None, "device_total_bytes": 10 * GiB},
                         "train", ["a note"], doc)
    assert conf["peak_allocated"] is None and conf["peak_reserved"] is None  # no band / no total
    d = conf["device_total"]
    assert (d["low_bytes"], d["high_bytes"], d["level"], d["cases"]) == (8 * GiB, 12.5 * GiB, 0.8, 9)
    assert d["coverage_loo"] == 7 / 9 and d["estimate_bytes"] == 10 * GiB
    assert "too few cases to claim 90%" in d["basis"] and conf["notes"] == ["a note"]


BAND = {"estimate_bytes": 10 * GiB, "low_bytes": 8 * GiB, "high_bytes": int(12.5 * GiB), "level": 0.8, "cases": 9}


def test_verdict_fits_with_margin():
    v = fit_verdict(16 * GiB, 10 * GiB, BAND)  # 6 GiB to spare; 16 - 12.5 = 3.5 GiB at the band's high end
    assert (v.kind, v.margin_bytes, v.margin_low_bytes) == ("fits", 6 * GiB, int(3.5 * GiB))
    assert v.sentence == ("fits with 6.00 GiB to spare; 80% band from 9 measured cases: a run lands within "
                          "-20.0%/+25.0% of the estimate, at most 12.50 GiB (3.50 GiB to spare)")


def test_verdict_fits_within_the_band():
    v = fit_verdict(11 * GiB, 10 * GiB, BAND)  # 1 GiB to spare; the high end 12.5 GiB is 1.5 GiB over
    assert (v.kind, v.margin_bytes, v.margin_low_bytes) == ("fits-within-band", GiB, int(-1.5 * GiB))
    assert v.sentence == ("fits, but within the band: a run may need up to 12.50 GiB (1.50 GiB more than the "
                          "11.00 GiB available; 80% band from 9 measured cases)")


def test_verdict_does_not_fit():
    v = fit_verdict(9 * GiB, 10 * GiB, BAND)  # 1 GiB short; the band's low end (8 GiB) would fit
    assert (v.kind, v.margin_bytes) == ("does-not-fit", -GiB)
    assert v.sentence == "does not fit (needs 1.00 GiB more; within the band a run may need as little as 8.00 GiB)"
    v = fit_verdict(7 * GiB, 10 * GiB, BAND)  # even the low end is 1 GiB over
    assert v.sentence == "does not fit (needs 3.00 GiB more)"
    assert fit_verdict(7 * GiB, 10 * GiB, None).sentence == "does not fit (needs 3.00 GiB more)"


# -- the CLI and the API side by side ------------------------------------------------------------------------

def _json(*args: str) -> dict:
    result = runner.invoke(app, route_argv(list(args)))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _hand_bytes(estimate: int, quantity: str, scenario: str) -> tuple[int, int]:
    entry = STORED["quantities"][quantity]
    band = entry["bands"][entry["use"][scenario]]
    return math.floor(estimate / (1 + band["error_high"])), math.ceil(estimate / (1 + band["error_low"]))


def test_train_json_confidence_is_the_hand_conversion(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = _json("train", "meta-llama/Llama-3.2-1B", "--gpu", "24GiB", "--offline", "--format", "json")["models"][0]
    api = hfmem.train("meta-llama/Llama-3.2-1B", hfmem.Options(offline=True), gpu="24GiB")
    e = api.estimate
    assert (m["peak_allocated_bytes"], m["peak_reserved_bytes"], m["device_total_bytes"]) == \
        (e.peak_allocated_bytes, e.peak_reserved_bytes, e.device_total_bytes)
    conf = m["confidence"]
    for quantity, total in (("peak_allocated", e.peak_allocated_bytes), ("peak_reserved", e.peak_reserved_bytes),
                            ("device_total", e.device_total_bytes)):
        low, high = _hand_bytes(total, quantity, "train")
        assert (conf[quantity]["low_bytes"], conf[quantity]["high_bytes"]) == (low, high), quantity
        assert conf[quantity]["estimate_bytes"] == total
    f = m["fit"]
    cap = 24 * GiB
    assert f["margin_bytes"] == cap - e.device_total_bytes
    assert f["margin_low_bytes"] == cap - conf["device_total"]["high_bytes"]
    kind = ("fits" if f["margin_low_bytes"] >= 0 else "fits-within-band") if f["margin_bytes"] >= 0 else "does-not-fit"
    assert f["verdict_kind"] == kind and f["verdict"].startswith("fits" if api.fits else "does not fit")


def test_infer_json_confidence_and_the_vllm_note(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = _json("infer", "meta-llama/Llama-3.2-1B", "--engine", "vllm", "--gpu", "H100-80GB", "--offline",
              "--format", "json")["models"][0]
    low, high = _hand_bytes(m["device_total_bytes"], "device_total", "infer")
    assert (m["confidence"]["device_total"]["low_bytes"], m["confidence"]["device_total"]["high_bytes"]) == (low, high)
    assert any("no vLLM run" in n for n in m["confidence"]["notes"])
    assert m["fit"]["margin_low_bytes"] == m["fit"]["capacity_bytes"] - high


def test_the_bands_load_without_torch():
    code = ("import sys\nfrom hfmem.plan.confidence import confidence_of\n"
            "confidence_of({'device_total_bytes': 1 << 30}, 'train')\nassert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert load_bands()["quantities"]


@pytest.mark.slow  # runs the whole accuracy report (about a minute on 2 cores)
def test_confidence_json_is_in_sync_with_the_accuracy_rows():
    import importlib.util

    spec = importlib.util.spec_from_file_location("accuracy", ROOT / "benchmarks" / "accuracy.py")
    accuracy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(accuracy)
    fresh = accuracy._bands().bands_document(accuracy.rows(), STORED["versions"], STORED["generated"])
    assert json.loads(json.dumps(fresh)) == STORED, "run `python benchmarks/accuracy.py`"
