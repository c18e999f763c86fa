"""Fuzz: whatever bytes sit in a result-cache entry, the next analysis of that model answers correctly and
`cache list` / `cache clear` work; only HfmemError escapes. Examples per the loaded hypothesis profile
(tests/conftest.py: "ci" by default, "fuzz" for the dedicated run). Qwen/Qwen3-0.6B is answered from the
shipped snapshot: 596,049,920 parameters."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hfmem import api
from hfmem.cli import app
from hfmem.errors import HfmemError
from hfmem.sources import resultcache

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

QWEN = "Qwen/Qwen3-0.6B"
QWEN_PARAMS = 596_049_920
runner = CliRunner()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)

_GOOD: dict = {}


def good_entry() -> dict:
    """A well-formed entry for QWEN's branch key, as hfmem writes it."""
    if not _GOOD:
        report = api.analyze(QWEN, offline=True).to_dict()
        report["from_result_cache"] = False
        report["notes"] = []
        key = api.hub_cache_key(QWEN)
        _GOOD.update(schema=resultcache.SCHEMA, key=key, created=1e9, sha256=resultcache._checksum(report),
                     report=report)
    return json.loads(json.dumps(_GOOD))


def _paths(d, prefix=()):
    yield prefix
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d[:3]):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw):
    """The good entry with one value replaced (anywhere), its checksum fixed or not."""
    entry = good_entry()
    paths = [p for p in _paths(entry) if p]
    path = draw(st.sampled_from(paths))
    target = entry
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = draw(json_values)
    if draw(st.booleans()) and isinstance(entry.get("report"), dict):
        try:
            entry["sha256"] = resultcache._checksum(entry["report"])
        except (TypeError, ValueError):
            pass
    return json.dumps(entry).encode()


blobs = st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()), mutated())


@pytest.mark.slow  # about 8 s of generated entries: the default set's time budget
@given(blob=blobs)
def test_any_entry_bytes_heal(blob):
    path = resultcache.results_dir() / resultcache._name(api.hub_cache_key(QWEN))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    try:
        report = api.analyze(QWEN, offline=True)
    except HfmemError:
        report = None
    assert report is not None  # the snapshot always has the model: no error is the right answer
    if report.from_result_cache:  # accepted: only a well-formed entry, answered as it says
        entry = json.loads(blob)
        assert report.inventory.num_params == entry["report"]["inventory"]["num_params"]
        report.table()
    else:
        assert report.inventory.num_params == QWEN_PARAMS
    for args in (["cache", "list", "--format", "json"], ["cache", "list"], ["cache", "clear", "Qwen"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
    assert not path.exists()
