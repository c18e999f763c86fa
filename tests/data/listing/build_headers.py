"""Build tests/data/listing/headers.json.gz: the safetensors layout (tensor names, shapes, dtype) of each model that
tests/listing_hub.py serves on the local test Hub. Run once, by hand, and commit the output:

    python tests/data/listing/build_headers.py

Each model is built on the meta device from its real config.json (the repo's snapshot, ``cache/models/<id>/``) with
the class its ``architectures`` names, and its state dict is taken the way transformers' ``save_pretrained`` takes
it (transformers 5.24 ``modeling_utils.py``): tied duplicates dropped (``remove_tied_weights_from_state_dict``:
lm_head goes when ``tie_word_embeddings``) and transformers' load-time renamings and fusions undone
(``revert_weight_conversion``, so that e.g. Mixtral's experts are the per-expert ``w1/w2/w3`` of its checkpoint).
Two corrections where the published checkpoint differs from what save_pretrained 5.24 would write: T5 v1.1's
untied head (``tie_word_embeddings: false``, which transformers 5.24 ties anyway) is kept, and STORES_TIED_HEAD
lists checkpoints that store a tied head.
The dtype is the config's ``torch_dtype``/``dtype`` (float32 when absent, transformers' default).

gpt-oss-20b is the one checkpoint that is not stored at its compute dtype: its MoE expert matrices ship as MXFP4
(its config's ``quantization_config``), uint8 ``*_blocks`` [E, out, in/32, 16] and ``*_scales`` [E, out, in/32]
(transformers ``integrations/mxfp4.py``; the layout hfmem/scenarios/weights.py documents), everything else BF16.

This script imports torch and transformers; the tests only read its output (no torch).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from listing_hub import MODELS  # noqa: E402  (the fixture list lives with the code that serves it)

DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}
# gpt-oss's config carries no torch_dtype; its checkpoint's non-expert tensors are bfloat16.
DTYPE_OVERRIDE = {"openai/gpt-oss-20b": "BF16"}

# Checkpoints that store the tied head anyway (their writer materialized it): Qwen3-0.6B's model.safetensors holds
# lm_head.weight; the Hub's API reports "safetensors": {"parameters": {"BF16": 751632384}} for it and a
# model.safetensors of 1,503,300,328 bytes (huggingface.co/api/models/Qwen/Qwen3-0.6B?blobs=true), which is
# 596,049,920 + 151,936 x 1,024 head elements.
STORES_TIED_HEAD = {"Qwen/Qwen3-0.6B"}


def _mxfp4(name: str, shape: list[int]) -> list[list] | None:
    """gpt-oss's fused expert matrix [E, in, out] (transformers 5 GptOssExperts) as its MXFP4 checkpoint stores
    it: ``<name>_blocks`` [E, out, in/32, 16] and ``<name>_scales`` [E, out, in/32], both uint8."""
    if not (name.endswith("mlp.experts.gate_up_proj") or name.endswith("mlp.experts.down_proj")):
        return None
    e, n_in, n_out = shape
    return [[name + "_blocks", [e, n_out, n_in // 32, 16], "U8"], [name + "_scales", [e, n_out, n_in // 32], "U8"]]


def layout(repo_id: str) -> dict:
    import torch
    import transformers
    from transformers.core_model_loading import revert_weight_conversion
    from transformers.modeling_utils import remove_tied_weights_from_state_dict

    config_path = ROOT / "cache" / "models" / repo_id / "config.json"
    raw = json.loads(config_path.read_text())
    config = transformers.AutoConfig.from_pretrained(config_path.parent)
    cls = getattr(transformers, raw["architectures"][0])
    with torch.device("meta"):
        model = cls(config)
    full = model.state_dict()
    state = remove_tied_weights_from_state_dict(dict(full), model)
    if repo_id in STORES_TIED_HEAD:
        state["lm_head.weight"] = full["lm_head.weight"]
    if raw.get("tie_word_embeddings") is False:
        # transformers 5.24 ties T5's lm_head to ``shared`` even where config.json says tie_word_embeddings: false
        # (T5 v1.1 / flan-t5 have an untied head by design); their checkpoints store it, so keep it.
        for name in full:
            if name.endswith("lm_head.weight") and name not in state:
                state[name] = full[name]
    dropped = sorted(set(full) - set(state))
    if dropped:
        print(f"{repo_id}: tied, not stored: {', '.join(dropped)}", flush=True)
    state = revert_weight_conversion(model, state)
    dtype = DTYPE_OVERRIDE.get(repo_id) or DTYPES[str(raw.get("torch_dtype") or raw.get("dtype") or "float32")]
    tensors: list[list] = []
    for name, t in state.items():
        shape = [int(d) for d in t.shape]
        packed = _mxfp4(name, shape) if repo_id == "openai/gpt-oss-20b" else None
        tensors += packed if packed else [[name, shape]]
    return {"dtype": dtype, "tensors": tensors}


def main() -> None:
    out = {}
    for m in MODELS:
        out[m.repo_id] = layout(m.repo_id)
        n = sum(_count(s) for _, s, *_ in out[m.repo_id]["tensors"])
        print(f"{m.repo_id:45s} {len(out[m.repo_id]['tensors']):5d} tensors {n:>15,d}", flush=True)
    blob = json.dumps(out, separators=(",", ":"), sort_keys=True).encode()
    # mtime=0: the same input gives the same bytes, so a rebuild shows no diff
    (HERE / "headers.json.gz").write_bytes(gzip.compress(blob, 9, mtime=0))


def _count(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    main()
