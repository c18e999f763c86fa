"""The confidence bands of hfmem's estimates, from the accuracy report's rows (benchmarks/accuracy.py).

``bands_document(rows)`` -> the content of hfmem/data/confidence.json; ``render_bands(doc)`` -> the
"Confidence bands" section of docs/accuracy.md. ``python benchmarks/accuracy.py`` writes both. The interval
arithmetic is hfmem.plan.confidence's (shipped, so the CLI and this script share one definition).

What counts: rows whose quantity is a measurement of a predicted total (max_memory_allocated ->
peak_allocated, max_memory_reserved -> peak_reserved, nvidia-smi -> device_total). Rows comparing with the
simulation ("simulated allocated") are not measurements of a run: they are kept out of the bands and listed
on their own under ``simulation`` (with the band they would give, for reference only). Rows of any other
quantity are listed under ``excluded``.

Split: a scenario ("infer" / "train", the row's ``scenario`` key or its case name's first word) gets its own
band when its cases alone reach the 90% claim (n >= 19); otherwise it uses every scenario's cases of that
quantity pooled. ``use`` in the file records which set each scenario gets.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hfmem.plan.confidence import (METHOD, QUANTITIES, TARGET_LEVELS, band_from, choose_k,  # noqa: E402
                                   leave_one_out)

SCHEMA = "hfmem.confidence/1"
SCENARIOS = ("infer", "train")
SIMULATED = "simulated allocated"
SPLIT_RULE = ("a scenario (infer / train) gets its own band when its cases alone reach the 90% claim "
              "(n >= 19); otherwise every scenario's cases of the quantity, pooled")


def _scenario(row: dict) -> str:
    s = row.get("scenario") or str(row.get("case", "")).split(" ", 1)[0]
    return s if s in SCENARIOS else "other"


def _error(row: dict) -> float | None:
    if row.get("error") is not None:
        return float(row["error"])
    m, e = row.get("measured"), row.get("estimate")
    return (e - m) / m if m and e is not None else None


def residual_band(residuals: list[dict]) -> dict | None:
    """A band with its residuals, per-scenario counts and leave-one-out check; None for fewer than 2."""
    errors = [r["error"] for r in residuals]
    band = band_from(errors)
    if band is None:
        return None
    band["scenarios"] = {s: sum(r["scenario"] == s for r in residuals) for s in (*SCENARIOS, "other")
                         if any(r["scenario"] == s for r in residuals)}
    band["loo"] = leave_one_out(errors)
    band["residuals"] = residuals
    return band


def _enough(n: int) -> bool:
    chosen = choose_k(n)
    return chosen is not None and chosen[2] is not None  # reaches 90% at least


def bands_document(rows: list[dict], versions: dict | None = None, generated: str | None = None) -> dict:
    by_measured = {v: k for k, v in QUANTITIES.items()}
    per: dict[str, list[dict]] = {q: [] for q in QUANTITIES}
    simulated, excluded = [], []
    for row in rows:
        err = _error(row)
        entry = {"case": row.get("case", ""), "scenario": _scenario(row), "error": err}
        quantity = row.get("quantity")
        if err is None:
            excluded.append({**entry, "quantity": quantity, "why": "no measured value or estimate"})
        elif quantity in by_measured:
            per[by_measured[quantity]].append(entry)
        elif quantity == SIMULATED:
            simulated.append(entry)
        else:
            excluded.append({**entry, "quantity": quantity, "why": "not one of the measured "
                             "quantities the bands are built on (max_memory_allocated, max_memory_reserved, nvidia-smi)"})
    quantities = {}
    for q, residuals in per.items():
        bands = {"pooled": residual_band(residuals)}
        use = {}
        for s in SCENARIOS:
            own = [r for r in residuals if r["scenario"] == s]
            bands[s] = residual_band(own)
            use[s] = s if _enough(len(own)) else "pooled"
        quantities[q] = {"measured_quantity": QUANTITIES[q], "use": use, "bands": bands}
    return {
        "schema": SCHEMA,
        "generated": generated or datetime.date.today().isoformat(),
        "versions": versions or {},
        "method": METHOD,
        "targets": list(TARGET_LEVELS),
        "split": SPLIT_RULE,
        "quantities": quantities,
        "simulation": {"quantity": SIMULATED,
                       "note": "hfmem simulate on the same settings: not a measurement of a run, kept out of the "
                               "bands; the band below is for reference only",
                       "band": residual_band(simulated)},
        "excluded": excluded,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


def render_bands(doc: dict) -> list[str]:
    """The "Confidence bands" section of docs/accuracy.md (markdown lines)."""
    lines = ["## Confidence bands", "",
             "Written to `hfmem/data/confidence.json` with this report; `hfmem infer` and `hfmem train` attach them "
             "to every estimate (JSON `confidence`, and the `fit` verdict). Method: " + doc["method"] + ". "
             "Split: " + doc["split"] + ". Simulated rows are not measurements and are kept out. Leave-one-out: "
             "each measured case against the band the same procedure builds from the other cases; a band "
             "claiming L should hold about L of them (it claims (n-2k)/n built from n-1 cases).", "",
             "| quantity | set | used for | cases | k | claims | residual band | measured value vs estimate "
             "| leave-one-out coverage | its claim | holds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for q, entry in doc["quantities"].items():
        for which, band in entry["bands"].items():
            users = [s for s, w in entry["use"].items() if w == which]
            if band is None:
                if which == "pooled":
                    lines.append(f"| {q} ({entry['measured_quantity']}) | {which} | {', '.join(users) or '-'} "
                                 "| <2 | - | no band | - | - | - | - | - |")
                continue
            if which != "pooled" and not users and band["cases"] == entry["bands"]["pooled"]["cases"]:
                continue  # the same cases as the pooled row
            claim = (f"{band['level']:.1%}" + ("" if band["target"] is not None else " (below 90%: too few cases)"))
            rel = f"{1 / (1 + band['error_high']) - 1:+.1%} / {1 / (1 + band['error_low']) - 1:+.1%}"
            loo = band.get("loo")
            cov = "-" if loo is None else f"{loo['covered']}/{loo['cases']} = {loo['coverage']:.1%}"
            lines.append(f"| {q} ({entry['measured_quantity']}) | {which} | {', '.join(users) or '-'} "
                         f"| {band['cases']} | {band['k']} | {claim} | {_pct(band['error_low'])} / "
                         f"{_pct(band['error_high'])} | {rel} | {cov} | "
                         f"{'-' if loo is None else format(loo['level'], '.1%')} "
                         f"| {'-' if loo is None else ('yes' if loo['coverage'] >= loo['level'] - 1e-12 else 'no')} |")
    sim = doc["simulation"]["band"]
    lines += ["", "Target: every band holds at least the share of the cases it claims (leave-one-out coverage >= its "
              "claim), and the bands claim 90%. A claim of 90% needs 19 measured cases of a quantity (95%: 39); with "
              "fewer, the widest band (k=1) claims (n-1)/(n+1), stated as such in each estimate's `confidence`."]
    lines += ["", "Residual band: (estimate - measured) / measured, from the k-th smallest to the k-th largest. "
              "Measured value vs estimate: the band of the true value, [estimate/(1+high), estimate/(1+low)], "
              "relative to the estimate (a positive high end: a run may need that much more)."]
    if sim is not None:
        lines += ["", f"Simulated rows (not in the bands): {sim['cases']} rows, residuals "
                  f"{_pct(min(r['error'] for r in sim['residuals']))} to {_pct(max(r['error'] for r in sim['residuals']))}."]
    if doc["excluded"]:
        lines += ["", "Excluded rows: " + "; ".join(f"{r['case']} ({r['quantity']}: {r['why']})"
                                                    for r in doc["excluded"]) + "."]
    return lines + [""]
