"""The models the local test Hub (tests/hubserver.py) lists for ``hfmem search`` tests and the search benchmark.

``populate(hub)`` registers 37 real models, 2 GGUF repos and 1 repo hfmem cannot estimate; ``populate_many(hub, n)``
registers ``n`` copies under ``bench/`` for the benchmark (a search over 500 listed models).

What is real and what is invented:

* ``config.json``: the file in this repo's snapshot, ``cache/models/<repo id>/config.json`` (see its ``entry.json``
  for where each came from), served byte for byte.
* The weights: header-only safetensors files (``hubserver.LazyFile``: the header, then zeros up to the real size),
  with the tensor names, shapes and dtype transformers' ``save_pretrained`` writes for that config
  (tests/data/listing/headers.json.gz, built once by tests/data/listing/build_headers.py, whose docstring lists
  where the published checkpoint differs from that: flan-t5's untied head, Qwen3-0.6B's stored tied head,
  gpt-oss-20b's MXFP4 experts). A checkpoint of more
  than 5 GB is cut into ``model-0000k-of-0000N.safetensors`` shards of at most 5 GB each (``save_pretrained``'s
  and the Hub's convention: ``max_shard_size="5GB"`` = 5·10⁹ bytes, huggingface_hub ``parse_size_to_int``) with a
  ``model.safetensors.index.json`` (``metadata.total_size`` and ``weight_map``), so the sharded path is exercised.
* ``pipeline_tag``, ``license``, ``library_name`` and ``gated``: as on each model's Hub page (gated: the meta-llama
  and Google Gemma repos ask users to accept a licence first; the Hub reports them as gated).
* ``downloads``, ``likes``, ``trending_score`` and ``created_at`` are INVENTED fixture inputs, chosen distinct
  (no two repos share a value) so that every ordering the Hub's ``sort=`` offers is unambiguous in a test. They are
  roughly in the order of the real models' popularity, but no test should read them as facts about the models.
* The GGUF repos are ours (no real repo): ``fixture-gguf/Llama-3-8B-shaped-GGUF`` is header-only Q4_K_M and Q8_0
  files with Meta-Llama-3-8B's shapes, written by gguf-py's GGUFWriter (tests/gguf_factory.py, as
  tests/test_llamacpp_cli.py serves them); ``fixture-gguf/tiny-llama-GGUF`` is the three real tiny files in
  tests/data/gguf/tiny-llama-GGUF. ``fixture-custom/acme-mystery-7b`` has a config whose ``model_type``
  transformers does not know, with ``auto_map`` custom code (hfmem refuses custom code without
  ``--trust-remote-code``) and no safetensors at all.

``ListedRepo.params`` is the sum of element counts over the served headers (for GGUF: over one file's tensors),
the number the Hub shows as a repo's "Model size".
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hubserver import LazyFile

__all__ = ["ListedRepo", "Fixture", "MODELS", "GGUF_REPOS", "UNSUPPORTED_REPO", "SHARD_MAX_BYTES", "populate",
           "populate_many", "header_data", "safetensors_files"]

ROOT = Path(__file__).resolve().parents[1]
CACHE_MODELS = ROOT / "cache" / "models"
HEADERS = Path(__file__).resolve().parent / "data" / "listing" / "headers.json.gz"
TINY_GGUF = Path(__file__).resolve().parent / "data" / "gguf" / "tiny-llama-GGUF"

# save_pretrained's default max_shard_size "5GB", parsed as decimal gigabytes (huggingface_hub parse_size_to_int)
SHARD_MAX_BYTES = 5 * 10**9
# safetensors dtype -> bytes per element (the format's spec: github.com/huggingface/safetensors, "Format")
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass(frozen=True)
class ListedRepo:
    """One repo as populate() registered it: the listing facts it was given and what its weights add up to."""

    repo_id: str
    pipeline_tag: str | None
    license: str | None
    gated: bool
    downloads: int
    likes: int
    params: int  # the safetensors total (sum of element counts over every served tensor); GGUF: over one file
    kind: str    # "safetensors" | "gguf" | "unsupported"


@dataclass(frozen=True)
class Fixture:
    """The listing inputs of one model (see the module docstring: downloads, likes, trending_score and created_at
    are invented)."""

    repo_id: str
    pipeline_tag: str | None
    license: str | None
    gated: bool
    downloads: int
    likes: int
    trending_score: int
    created_at: str
    library_name: str = "transformers"


def _fx(repo_id, pipeline_tag, license, downloads, likes, trending, created, *, gated=False,
        library_name="transformers") -> Fixture:
    return Fixture(repo_id, pipeline_tag, license, gated, downloads, likes, trending, created, library_name)


TG = "text-generation"
# repo id, pipeline_tag, license (the Hub page's), then invented: downloads, likes, trending score, created_at
MODELS: tuple[Fixture, ...] = (
    _fx("HuggingFaceTB/SmolLM2-135M-Instruct", TG, "apache-2.0", 1_210_003, 231, 12, "2024-10-31T00:00:00.000Z"),
    _fx("HuggingFaceTB/SmolLM2-360M-Instruct", TG, "apache-2.0", 640_007, 142, 8, "2024-10-31T00:01:00.000Z"),
    _fx("HuggingFaceTB/SmolLM2-1.7B-Instruct", TG, "apache-2.0", 410_011, 673, 15, "2024-10-31T00:02:00.000Z"),
    _fx("Qwen/Qwen2.5-3B-Instruct", TG, "other", 2_130_013, 311, 19, "2024-09-17T00:00:00.000Z"),
    _fx("Qwen/Qwen2.5-7B", TG, "apache-2.0", 820_017, 162, 7, "2024-09-15T00:00:00.000Z"),
    _fx("Qwen/Qwen2.5-7B-Instruct", TG, "apache-2.0", 3_900_019, 781, 41, "2024-09-16T00:00:00.000Z"),
    _fx("Qwen/Qwen2.5-14B", TG, "apache-2.0", 330_023, 121, 5, "2024-09-15T00:01:00.000Z"),
    _fx("Qwen/Qwen2.5-32B", TG, "apache-2.0", 240_029, 131, 4, "2024-09-15T00:02:00.000Z"),
    _fx("Qwen/Qwen3-0.6B", TG, "apache-2.0", 5_100_031, 702, 63, "2025-04-27T00:00:00.000Z"),
    _fx("Qwen/Qwen3-4B", TG, "apache-2.0", 1_700_037, 411, 37, "2025-04-27T00:01:00.000Z"),
    _fx("Qwen/Qwen3-8B", TG, "apache-2.0", 2_600_041, 622, 52, "2025-04-27T00:02:00.000Z"),
    _fx("Qwen/Qwen3-14B", TG, "apache-2.0", 900_043, 251, 23, "2025-04-27T00:03:00.000Z"),
    _fx("Qwen/Qwen3-32B", TG, "apache-2.0", 1_100_047, 532, 29, "2025-04-27T00:04:00.000Z"),
    _fx("Qwen/Qwen3-30B-A3B", TG, "apache-2.0", 760_053, 741, 33, "2025-04-27T00:05:00.000Z"),
    _fx("meta-llama/Llama-2-7b-hf", TG, "llama2", 1_500_059, 2_131, 9, "2023-07-13T00:00:00.000Z", gated=True),
    _fx("meta-llama/Llama-2-13b-hf", TG, "llama2", 270_061, 601, 3, "2023-07-13T00:01:00.000Z", gated=True),
    _fx("meta-llama/Llama-2-70b-hf", TG, "llama2", 110_067, 841, 2, "2023-07-13T00:02:00.000Z", gated=True),
    _fx("meta-llama/Llama-3.2-1B", TG, "llama3.2", 2_900_071, 2_011, 27, "2024-09-18T00:00:00.000Z", gated=True),
    _fx("meta-llama/Llama-3.2-3B-Instruct", TG, "llama3.2", 2_400_073, 1_611, 31, "2024-09-18T00:01:00.000Z",
        gated=True),
    _fx("meta-llama/Llama-3.1-8B-Instruct", TG, "llama3.1", 6_200_079, 4_321, 71, "2024-07-18T00:00:00.000Z",
        gated=True),
    _fx("meta-llama/Llama-3.1-70B-Instruct", TG, "llama3.1", 520_083, 851, 17, "2024-07-16T00:00:00.000Z",
        gated=True),
    _fx("meta-llama/Meta-Llama-3-8B", TG, "llama3", 700_089, 6_101, 11, "2024-04-17T00:00:00.000Z", gated=True),
    _fx("mistralai/Mistral-7B-v0.1", TG, "apache-2.0", 430_097, 3_911, 6, "2023-09-20T00:00:00.000Z"),
    _fx("mistralai/Mistral-7B-Instruct-v0.3", TG, "apache-2.0", 1_300_101, 1_721, 21, "2024-05-22T00:00:00.000Z"),
    _fx("mistralai/Mixtral-8x7B-v0.1", TG, "apache-2.0", 150_103, 1_751, 1, "2023-12-01T00:00:00.000Z"),
    _fx("google/gemma-2-2b-it", TG, "gemma", 480_107, 1_101, 13, "2024-07-16T00:01:00.000Z", gated=True),
    _fx("google/gemma-2-9b-it", TG, "gemma", 360_109, 711, 10, "2024-06-24T00:00:00.000Z", gated=True),
    _fx("google/gemma-2-27b-it", TG, "gemma", 210_113, 541, 14, "2024-06-24T00:01:00.000Z", gated=True),
    _fx("microsoft/Phi-3-mini-4k-instruct", TG, "mit", 1_000_127, 1_211, 16, "2024-04-22T00:00:00.000Z"),
    _fx("microsoft/phi-4", TG, "mit", 580_131, 2_051, 25, "2024-12-11T00:00:00.000Z"),
    _fx("openai/gpt-oss-20b", TG, "apache-2.0", 4_700_137, 3_701, 89, "2025-08-04T00:00:00.000Z"),
    _fx("openai-community/gpt2", TG, "mit", 9_800_139, 2_711, 18, "2022-03-02T23:29:04.000Z"),
    _fx("google-bert/bert-base-uncased", "fill-mask", "apache-2.0", 8_900_149, 2_281, 20, "2022-03-02T23:29:05.000Z"),
    _fx("Snowflake/snowflake-arctic-embed-m", "sentence-similarity", "apache-2.0", 890_151, 161, 24,
        "2024-04-11T00:00:00.000Z", library_name="sentence-transformers"),
    _fx("openai/whisper-large-v3", "automatic-speech-recognition", "apache-2.0", 4_300_157, 4_811, 47,
        "2023-11-07T00:00:00.000Z"),
    _fx("google/vit-base-patch16-224", "image-classification", "apache-2.0", 2_000_161, 881, 22,
        "2022-03-02T23:29:06.000Z"),
    _fx("google/flan-t5-xl", "text2text-generation", "apache-2.0", 300_163, 501, 26, "2022-10-21T00:00:00.000Z"),
    _fx("Qwen/Qwen2-VL-2B-Instruct", "image-text-to-text", "apache-2.0", 1_600_167, 451, 28,
        "2024-08-28T00:00:00.000Z"),
)

# Ours, not real repos (module docstring); their listing inputs are invented like the others'.
GGUF_REPOS: tuple[Fixture, ...] = (
    _fx("fixture-gguf/Llama-3-8B-shaped-GGUF", TG, "llama3", 350_173, 91, 30, "2024-05-01T00:00:00.000Z",
        library_name="gguf"),
    _fx("fixture-gguf/tiny-llama-GGUF", TG, "mit", 1_173, 3, 0, "2026-01-01T00:00:00.000Z", library_name="gguf"),
)
UNSUPPORTED_REPO = _fx("fixture-custom/acme-mystery-7b", TG, "other", 12_179, 7, 32, "2026-01-02T00:00:00.000Z")

# Meta-Llama-3-8B's shapes (its config.json: hidden 4096, 32 layers, 32 heads, 8 KV heads, intermediate 14336,
# vocab 128256), as tests/test_llamacpp_cli.py builds them.
_LLAMA3_8B_GGUF = dict(n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336, vocab=128256, ctx=8192,
                       with_tokens=False)

# A custom-code model: transformers knows no "acme_mystery", and the config points at code shipped in the repo.
_ACME_CONFIG = {
    "architectures": ["AcmeMysteryForCausalLM"],
    "auto_map": {"AutoConfig": "configuration_acme.AcmeMysteryConfig",
                 "AutoModelForCausalLM": "modeling_acme.AcmeMysteryForCausalLM"},
    "model_type": "acme_mystery",
    "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "intermediate_size": 11008,
    "vocab_size": 32000, "torch_dtype": "bfloat16",
}


# --------------------------------------------------------------------------------------------------------------------
# header data -> served files
# --------------------------------------------------------------------------------------------------------------------


@functools.cache
def header_data() -> dict[str, dict]:
    """{repo id: {"dtype": "BF16", "tensors": [[name, [shape...]] or [name, [shape...], dtype], ...]}}."""
    return json.loads(gzip.decompress(HEADERS.read_bytes()))


def _tensors(repo_id: str) -> list[tuple[str, list[int], str]]:
    entry = header_data()[repo_id]
    return [(t[0], list(t[1]), t[2] if len(t) > 2 else entry["dtype"]) for t in entry["tensors"]]


def _nbytes(shape: list[int], dtype: str) -> int:
    return math.prod(shape) * DTYPE_BYTES[dtype]


def _safetensors_blob(tensors: list[tuple[str, list[int], str]]) -> LazyFile:
    """A safetensors file: u64 little-endian header length, the JSON header (data_offsets relative to the data
    section, tensors back to back in order), padded with spaces to a multiple of 8 as the safetensors library
    writes it; then the data, zeros here, at its real size."""
    header: dict = {"__metadata__": {"format": "pt"}}
    pos = 0
    for name, shape, dtype in tensors:
        n = _nbytes(shape, dtype)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + n]}
        pos += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    head = struct.pack("<Q", len(blob)) + blob
    return LazyFile(head, len(head) + pos)


def _shards(tensors: list[tuple[str, list[int], str]]) -> list[list[tuple[str, list[int], str]]]:
    """Tensors in order, a new shard whenever the next one would take the current past SHARD_MAX_BYTES (the greedy
    rule of huggingface_hub ``split_torch_state_dict_into_shards``, which save_pretrained uses)."""
    shards: list[list] = [[]]
    size = 0
    for t in tensors:
        n = _nbytes(t[1], t[2])
        if shards[-1] and size + n > SHARD_MAX_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += n
    return shards


@functools.cache
def safetensors_files(repo_id: str) -> dict[str, LazyFile | bytes]:
    """The weight files of ``repo_id``: one ``model.safetensors`` up to 5 GB, else shards plus their index."""
    tensors = _tensors(repo_id)
    total_bytes = sum(_nbytes(s, d) for _, s, d in tensors)
    if total_bytes <= SHARD_MAX_BYTES:
        return {"model.safetensors": _safetensors_blob(tensors)}
    parts = _shards(tensors)
    files: dict[str, LazyFile | bytes] = {}
    weight_map: dict[str, str] = {}
    for k, part in enumerate(parts, 1):
        name = f"model-{k:05d}-of-{len(parts):05d}.safetensors"
        files[name] = _safetensors_blob(part)
        weight_map.update({t[0]: name for t in part})
    index = {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}
    files["model.safetensors.index.json"] = json.dumps(index, indent=2).encode()
    return files


def _params(repo_id: str) -> int:
    return sum(math.prod(s) for _, s, _ in _tensors(repo_id))


@functools.cache
def _model_files(repo_id: str) -> dict[str, LazyFile | bytes]:
    config = (CACHE_MODELS / repo_id / "config.json").read_bytes()
    return {"config.json": config, "README.md": f"# {repo_id}\n\nA listing fixture.\n".encode(),
            **safetensors_files(repo_id)}


# --------------------------------------------------------------------------------------------------------------------
# GGUF and unsupported repos
# --------------------------------------------------------------------------------------------------------------------


@functools.cache
def _shaped_gguf() -> tuple[dict[str, LazyFile], int]:
    import gguf_factory as fac

    files: dict[str, LazyFile] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for wt, label in (("Q4_K", "Q4_K_M"), ("Q8_0", "Q8_0")):
            head, size = fac.header_and_size(fac.llama(wt=wt, **_LLAMA3_8B_GGUF), tmp)
            files[f"Llama-3-8B-shaped-{label}.gguf"] = LazyFile(head, size)
    params = sum(math.prod(shape) for _, shape, _ in fac.llama(wt="Q8_0", **_LLAMA3_8B_GGUF).tensors)
    return files, params


@functools.cache
def _tiny_gguf() -> tuple[dict[str, Path], int]:
    import gguf

    files = {p.name: p for p in sorted(TINY_GGUF.glob("*.gguf"))}
    reader = gguf.GGUFReader(files["tiny-llama-Q8_0.gguf"])
    return files, sum(int(t.n_elements) for t in reader.tensors)


def _unsupported_files() -> dict[str, bytes]:
    return {
        "config.json": json.dumps(_ACME_CONFIG, indent=2).encode(),
        "configuration_acme.py": (b"from transformers import PretrainedConfig\n\n\n"
                                  b"class AcmeMysteryConfig(PretrainedConfig):\n    model_type = 'acme_mystery'\n"),
        "modeling_acme.py": b"# custom modeling code: hfmem must not run it without --trust-remote-code\n",
        "README.md": b"# acme-mystery-7b\n\nCustom code, no safetensors.\n",
    }


# --------------------------------------------------------------------------------------------------------------------
# registering
# --------------------------------------------------------------------------------------------------------------------


def _add(hub, repo_id: str, fx: Fixture, files: dict, *, created_at: str | None = None) -> None:
    hub.add_repo(repo_id, files, gated=fx.gated, library_name=fx.library_name, downloads=fx.downloads,
                 likes=fx.likes, pipeline_tag=fx.pipeline_tag, license=fx.license, trending_score=fx.trending_score,
                 created_at=created_at or fx.created_at)


def _listed(repo_id: str, fx: Fixture, params: int, kind: str, *, downloads: int | None = None) -> ListedRepo:
    return ListedRepo(repo_id, fx.pipeline_tag, fx.license, fx.gated,
                      fx.downloads if downloads is None else downloads, fx.likes, params, kind)


def populate(hub, *, only=None) -> list[ListedRepo]:
    """Register the fixture repos on ``hub`` (a started FakeHub) and describe each. ``only``: repo ids to
    register (any of MODELS, GGUF_REPOS, UNSUPPORTED_REPO); None registers them all. Unknown ids raise KeyError."""
    everything = {fx.repo_id: fx for fx in (*MODELS, *GGUF_REPOS, UNSUPPORTED_REPO)}
    wanted = list(everything) if only is None else list(only)
    missing = [r for r in wanted if r not in everything]
    if missing:
        raise KeyError(f"not a listing fixture: {', '.join(missing)}")
    out: list[ListedRepo] = []
    for repo_id in wanted:
        fx = everything[repo_id]
        if fx is UNSUPPORTED_REPO:
            _add(hub, repo_id, fx, _unsupported_files())
            out.append(_listed(repo_id, fx, 0, "unsupported"))
        elif repo_id == "fixture-gguf/Llama-3-8B-shaped-GGUF":
            files, params = _shaped_gguf()
            _add(hub, repo_id, fx, {"README.md": b"# GGUF\n", **files})
            out.append(_listed(repo_id, fx, params, "gguf"))
        elif repo_id == "fixture-gguf/tiny-llama-GGUF":
            files, params = _tiny_gguf()
            _add(hub, repo_id, fx, {"README.md": b"# tiny GGUF\n", **files})
            out.append(_listed(repo_id, fx, params, "gguf"))
        else:
            _add(hub, repo_id, fx, _model_files(repo_id))
            out.append(_listed(repo_id, fx, _params(repo_id), "safetensors"))
    return out


def populate_many(hub, n: int) -> list[ListedRepo]:
    """Register ``n`` repos ``bench/<name>-<i>`` (i = 0..n-1), cycling through MODELS, for the search benchmark.
    Each serves the files of the model it copies (the same LazyFile objects: nothing is rebuilt per copy) with that
    model's listing facts, except downloads: the model's own × (n + 1) + (n - i), so that all n differ, sorting by
    downloads is a strict order, and copies of a popular model still rank above those of a less popular one.
    created_at is the model's, so two copies may share it."""
    if n < 0:
        raise ValueError("n must be >= 0")
    out: list[ListedRepo] = []
    for i in range(n):
        fx = MODELS[i % len(MODELS)]
        repo_id = f"bench/{fx.repo_id.split('/')[1]}-{i}"
        # distinct: 1 <= n - i <= n < n + 1, so no two (fixture, i) pairs meet
        downloads = fx.downloads * (n + 1) + (n - i)
        copy = Fixture(repo_id, fx.pipeline_tag, fx.license, fx.gated, downloads, fx.likes, fx.trending_score,
                       fx.created_at, fx.library_name)
        _add(hub, repo_id, copy, _model_files(fx.repo_id))
        out.append(_listed(repo_id, copy, _params(fx.repo_id), "safetensors"))
    return out
