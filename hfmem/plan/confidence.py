"""Stated confidence: a band per predicted quantity, from the residuals of the measured cases.

The accuracy report (``benchmarks/accuracy.py`` -> docs/accuracy.md) compares each estimate with a measured
run of the same quantity; ``benchmarks/bands.py`` turns those residuals into ``hfmem/data/confidence.json``
(regenerated with the report). This module reads that file (importlib.resources; no torch) and converts its
residual bands into byte bands for a new estimate. Pure functions; the only I/O is the cached read.

Method (distribution-free order-statistic prediction interval; Wilks 1941, "Determination of sample sizes
for setting tolerance limits", and any text on conformal prediction, e.g. Vovk, Gammerman & Shafer 2005): for
n exchangeable continuous residuals e_(1) <= ... <= e_(n), a new residual lies in [e_(k), e_(n+1-k)] with
probability >= (n+1-2k)/(n+1) (the new one is equally likely to take any of the n+1 ranks). ``choose_k``
takes the largest k reaching the highest claimed level the n supports (95%, else 90%); when n is too small
for 90% it reports the widest band (k = 1) and the level that one honestly claims, (n-1)/(n+1).

Residual ``error = (estimate - measured) / measured``, so ``measured = estimate / (1 + error)``: the band of
the true value for an estimate is [estimate / (1 + error_high), estimate / (1 + error_low)], rounded outward
to whole bytes.
"""

from __future__ import annotations

import functools
import json
import math
from fractions import Fraction
from importlib import resources

BANDS_PACKAGE = "hfmem.data"
BANDS_FILE = "confidence.json"

#: The estimate's totals and the measured quantity each band compares them with (the accuracy report's
#: ``quantity`` column).
QUANTITIES = {"peak_allocated": "max_memory_allocated", "peak_reserved": "max_memory_reserved",
              "device_total": "nvidia-smi"}
ESTIMATE_KEYS = {"peak_allocated": "peak_allocated_bytes", "peak_reserved": "peak_reserved_bytes",
                 "device_total": "device_total_bytes"}
#: Claimed levels, highest first: a band claims the highest one its number of cases reaches.
TARGET_LEVELS = (0.95, 0.90)
METHOD = ("distribution-free order-statistic prediction interval: with n exchangeable residuals, the k-th "
          "smallest to the k-th largest contain a new case with probability >= (n+1-2k)/(n+1); the largest k "
          "reaching 95%, else 90%, else k=1 and the level it claims; byte band [estimate/(1+error_high), "
          "estimate/(1+error_low)]")


# -- the arithmetic -------------------------------------------------------------------------------------------

def interval_level(n: int, k: int) -> float:
    """The coverage the k-th smallest .. k-th largest of n exchangeable residuals guarantee a new one."""
    if n < 1 or k < 1 or 2 * k > n + 1:
        raise ValueError(f"no order-statistic interval with k={k} from n={n} residuals")
    return (n + 1 - 2 * k) / (n + 1)


def choose_k(n: int, targets: tuple[float, ...] = TARGET_LEVELS) -> tuple[int, float, float | None] | None:
    """(k, level, target): the largest k whose level reaches the highest target n supports; with too few
    cases for any target, k = 1 (the widest band) and target None. None when n < 2 (no band claims > 0)."""
    if n < 2:
        return None
    for target in sorted(targets, reverse=True):
        goal = Fraction(str(target))  # exact: 0.9 as 9/10, so n=19, k=1 reaches it (18/20)
        for k in range((n + 1) // 2, 0, -1):
            if Fraction(n + 1 - 2 * k, n + 1) >= goal:
                return k, interval_level(n, k), target
    return 1, interval_level(n, 1), None


def band_from(errors: list[float], targets: tuple[float, ...] = TARGET_LEVELS) -> dict | None:
    """The residual band of ``errors``: {cases, k, level, target, error_low, error_high}; None for n < 2."""
    n = len(errors)
    chosen = choose_k(n, targets)
    if chosen is None:
        return None
    k, level, target = chosen
    e = sorted(errors)
    return {"cases": n, "k": k, "level": level, "target": target, "error_low": e[k - 1], "error_high": e[n - k]}


def leave_one_out(errors: list[float], targets: tuple[float, ...] = TARGET_LEVELS) -> dict | None:
    """Each case against the band the same procedure builds from the others: {covered, cases, coverage,
    level} where level is what those (n-1)-case bands claim. None when n - 1 < 2 (no band to check)."""
    n = len(errors)
    if n < 3:
        return None
    covered = 0
    level = None
    for i, e in enumerate(errors):
        band = band_from(errors[:i] + errors[i + 1:], targets)
        level = band["level"]
        covered += band["error_low"] <= e <= band["error_high"]
    return {"covered": covered, "cases": n, "coverage": covered / n, "level": level}


def true_value_band(estimate_bytes: int, error_low: float, error_high: float) -> tuple[int, int]:
    """[estimate/(1+error_high), estimate/(1+error_low)] in whole bytes, rounded outward: the measured value
    a run with this estimate would show, given the residual band (error = (estimate - measured)/measured)."""
    return (math.floor(estimate_bytes / (1 + error_high)), math.ceil(estimate_bytes / (1 + error_low)))


# -- the shipped bands ----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def load_bands() -> dict:
    """hfmem/data/confidence.json (cached); an empty document when it is missing."""
    try:
        text = resources.files(BANDS_PACKAGE).joinpath(BANDS_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        return {"quantities": {}}
    return json.loads(text)


def band_for(quantity: str, scenario: str, doc: dict | None = None) -> dict | None:
    """The band a ``scenario`` ("infer" / "train") estimate of ``quantity`` gets: its own scenario's cases
    where they are enough to claim 90%, else every scenario's cases pooled (``use`` in the file says which).
    The returned band carries ``set`` ("infer", "train" or "pooled") and ``basis`` (one line). None when the
    file has no band for the quantity."""
    doc = load_bands() if doc is None else doc
    q = (doc.get("quantities") or {}).get(quantity)
    if not q:
        return None
    which = (q.get("use") or {}).get(scenario, "pooled")
    band = (q.get("bands") or {}).get(which)
    if band is None:
        return None
    return {**band, "set": which, "basis": _basis(band, which, q.get("measured_quantity", QUANTITIES[quantity]))}


def _basis(band: dict, which: str, measured: str) -> str:
    names = {"infer": "serving", "train": "training"}
    per = band.get("scenarios") or {}
    split = " + ".join(f"{names.get(s, s)} {n}" for s, n in per.items() if n)
    scope = ("pooled: " if which == "pooled" and len([n for n in per.values() if n]) > 1 else "") + split
    claim = (f"claims {band['target']:.0%}" if band.get("target") is not None else
             f"too few cases to claim 90%: the widest band (k=1) claims {band['level']:.1%}")
    return f"{band['cases']} measured cases of {measured}, {scope}; {claim}"


def confidence_of(totals: dict, scenario: str, notes: list[str] | tuple[str, ...] = (),
                  doc: dict | None = None) -> dict:
    """The ``confidence`` object for an estimate: ``totals`` holds peak_allocated_bytes / peak_reserved_bytes /
    device_total_bytes (a None total, or a quantity with no band, gives None). Per quantity: estimate_bytes,
    level, low_bytes, high_bytes (the band of the measured value), error_low, error_high (the residual band,
    (estimate - measured)/measured), cases, coverage_loo (leave-one-out: the share of the cases inside the
    band built from the others), basis. ``notes``: what the case set does not cover for this estimate."""
    doc = load_bands() if doc is None else doc
    out: dict = {"method": doc.get("method", METHOD), "generated": doc.get("generated")}
    for quantity, key in ESTIMATE_KEYS.items():
        est = totals.get(key)
        band = band_for(quantity, scenario, doc)
        if est is None or band is None:
            out[quantity] = None
            continue
        low, high = true_value_band(int(est), band["error_low"], band["error_high"])
        loo = band.get("loo") or {}
        out[quantity] = {"estimate_bytes": int(est), "level": band["level"], "low_bytes": low, "high_bytes": high,
                         "error_low": band["error_low"], "error_high": band["error_high"], "cases": band["cases"],
                         "coverage_loo": loo.get("coverage"), "basis": band["basis"]}
    out["notes"] = list(notes)
    return out


def scope_notes(*, engine: str | None = None, by_code: bool = False, rlhf: bool = False) -> list[str]:
    """What the measured cases do not include, for an estimate outside them: the band is then the same
    quantity's band from the cases there are, and says so."""
    notes = []
    if engine == "vllm":
        notes.append("the measured cases include no vLLM run: the bands are those of the transformers cases")
    if by_code:
        notes.append("estimated from the model's own code (simulation): the measured cases are closed-form "
                     "estimates, which the simulation matches within a few percent on the report's models")
    if rlhf:
        notes.append("the measured cases include no RLHF step: the bands are those of single-model training")
    return notes
