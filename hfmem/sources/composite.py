"""Repos made of several models, read file by file through one ``Reader`` whatever the source (a folder, the
Hugging Face cache's snapshot folder, the Hub by range reads): a diffusers pipeline (``model_index.json``), a
sentence-transformers model (``modules.json``) and a timm model (config.json naming its ``architecture``).

Detection, by the files the repo has (``detect``): ``model_index.json`` → diffusers pipeline; ``modules.json`` →
sentence-transformers; config.json without ``model_type`` but with an ``architecture`` string → timm (the
format ``timm.models._hub.save_for_hf`` writes: architecture, num_classes, pretrained_cfg, model_args);
anything else is read as a transformers model exactly as before this module existed.

Only metadata is read: each component's config, and its safetensors headers (never the weights). Weightless
components (schedulers, tokenizers, feature extractors, processors) cost no request beyond a scheduler's
``scheduler_config.json``. Which component plays which part is ``hfmem.inventory.components.role_of``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import ConfigError
from ..metadata.config import ModelConfig, parse_config
from ..metadata.safetensors import CheckpointHeaders, FileHeader, shard_names
from ..model import pipeline as P

MODEL_INDEX = "model_index.json"
MODULES = "modules.json"
# The weight files diffusers' ModelMixin (diffusers/utils/constants.py SAFETENSORS_WEIGHTS_NAME) and
# transformers (model.safetensors) save, in the order a component folder is searched.
WEIGHT_BASES = ("diffusion_pytorch_model", "model")


class Reader(Protocol):
    """One repo's files, by path inside the repo ("unet/config.json")."""

    def names(self, folder: str) -> list[str]: ...  # file names directly in ``folder`` ("" the root)
    def read(self, path: str) -> bytes: ...  # a small file (config, index)
    def header(self, path: str) -> FileHeader: ...  # a safetensors header, never the weights
    def origin(self, path: str) -> str: ...  # how messages name the file


@dataclass
class ComponentFiles:
    """What the source read for one component; ``hfmem.inventory.components`` builds its inventory."""

    name: str
    library: str
    class_name: str
    role: str
    folder: str
    config: dict | None = None
    model_config: ModelConfig | None = None  # a transformers component's config.json, validated
    headers: CheckpointHeaders | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class CompositeMeta:
    kind: str  # hfmem.model.pipeline.KINDS
    class_name: str
    library_version: str | None
    components: list[ComponentFiles]
    files_read: list[str] = field(default_factory=list)


def _path(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def json_object(data: bytes, origin: str) -> dict:
    """A JSON object, or one ConfigError line naming the file."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        where = f" at {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ConfigError(f"{origin} is not valid JSON ({exc.__class__.__name__}{where})",
                          hint="fix or re-download the file") from None
    if not isinstance(value, (dict, list)):
        raise ConfigError(f"{origin} is not a JSON object", hint="fix or re-download the file")
    return value


def detect(root_names: list[str], config: dict | None = None) -> str:
    """The repo's kind from its root file names (and config.json, for timm)."""
    if MODEL_INDEX in root_names:
        return P.DIFFUSERS_PIPELINE
    if MODULES in root_names:
        return P.SENTENCE_TRANSFORMERS
    if is_timm_config(config):
        return P.TIMM
    return P.TRANSFORMERS


def is_timm_config(config: dict | None) -> bool:
    return (isinstance(config, dict) and not config.get("model_type")
            and isinstance(config.get("architecture"), str) and bool(config.get("architecture")))


def _weights(reader: Reader, folder: str, bases=WEIGHT_BASES) -> tuple[list[str] | None, str | None, str | None]:
    """The safetensors files diffusers/transformers would load from ``folder``: the non-variant file first
    (diffusers' default ``variant=None``), else a variant (``diffusion_pytorch_model.fp16.safetensors``).
    Returns (the files, the index file if sharded, the variant's name or None)."""
    names = set(reader.names(folder))
    for variant in [None] + sorted({n.split(".")[1] for n in names if n.count(".") >= 2
                                    and n.split(".")[0] in bases and n.endswith((".safetensors", ".safetensors.index.json"))
                                    and n.split(".")[1] not in ("safetensors",)}):
        for base in bases:
            stem = base if variant is None else f"{base}.{variant}"
            if f"{stem}.safetensors" in names:
                return [_path(folder, f"{stem}.safetensors")], None, variant
            index = f"{stem}.safetensors.index.json"
            if index in names:
                shards = shard_names(reader.origin(_path(folder, index)), reader.read(_path(folder, index)))
                return [_path(folder, s) for s in shards], _path(folder, index), variant
    return None, None, None


def read_headers(reader: Reader, folder: str, read: list[str], bases=WEIGHT_BASES, pool=None
                 ) -> tuple[CheckpointHeaders | None, list[str]]:
    files, index, variant = _weights(reader, folder, bases)
    notes: list[str] = []
    if not files:
        return None, notes
    if index:
        read.append(index)
    headers = list(pool.map(reader.header, files)) if pool is not None and len(files) > 1 \
        else [reader.header(f) for f in files]
    read.extend(files)
    shown = index or files[0]
    if variant is not None:
        notes.append(f"read the '{variant}' variant ({shown}): the folder has no non-variant weights, which "
                     "diffusers loads by default")
    else:
        notes.append(f"weights read from {shown}")
    return CheckpointHeaders(headers), notes


def _read_json(reader: Reader, path: str, read: list[str]) -> dict:
    if path.rsplit("/", 1)[-1] not in reader.names(path.rsplit("/", 1)[0] if "/" in path else ""):
        raise ConfigError(f"{reader.origin(path)} is missing",
                          hint="the component's folder needs its config file; re-download the repo")
    value = json_object(reader.read(path), reader.origin(path))
    read.append(path)
    return value


def load_diffusers(reader: Reader, pool=None) -> CompositeMeta:
    from ..inventory.components import role_of  # no torch

    read: list[str] = []
    index = _read_json(reader, MODEL_INDEX, read)
    if not isinstance(index, dict):
        raise ConfigError(f"{reader.origin(MODEL_INDEX)} is not a JSON object", hint="fix or re-download the file")
    cls = index.get("_class_name")
    if not isinstance(cls, str) or not cls:
        raise ConfigError(f"{reader.origin(MODEL_INDEX)} has no _class_name",
                          hint="a diffusers model_index.json names its pipeline class in _class_name")
    version = index.get("_diffusers_version") if isinstance(index.get("_diffusers_version"), str) else None
    entries = []
    for key, value in index.items():
        if key.startswith("_"):
            continue
        if not (isinstance(value, list) and len(value) == 2):
            continue  # pipeline options (requires_safety_checker: true, force_zeros_for_empty_prompt, ...)
        library, class_name = value
        if library is None and class_name is None:
            continue  # an absent optional component ([null, null])
        if not (isinstance(library, str) and isinstance(class_name, str)):
            raise ConfigError(f"{reader.origin(MODEL_INDEX)}: component {key!r} is {value!r}, expected "
                              "[library, class]", hint="fix or re-download the file")
        entries.append((key, library, class_name))

    def one(entry) -> ComponentFiles:
        key, library, class_name = entry
        role = role_of(key, library, class_name)
        comp = ComponentFiles(key, library, class_name, role, key)
        mine: list[str] = []
        if role == P.WEIGHTLESS:
            if "Scheduler" in class_name and "scheduler_config.json" in reader.names(key):
                comp.config = _read_json(reader, _path(key, "scheduler_config.json"), mine)
        else:
            cfg_path = _path(key, "config.json")
            if library == "transformers":
                if "config.json" not in reader.names(key):
                    raise ConfigError(f"{reader.origin(cfg_path)} is missing",
                                      hint="the component's folder needs its config file; re-download the repo")
                comp.model_config = parse_config(reader.read(cfg_path), reader.origin(cfg_path))
                comp.config = comp.model_config.raw
                mine.append(cfg_path)
            else:
                comp.config = _read_json(reader, cfg_path, mine)
            comp.headers, notes = read_headers(reader, key, mine)
            comp.notes.extend(notes)
        return comp, mine

    done = list(pool.map(one, entries)) if pool is not None else [one(e) for e in entries]
    comps = []
    for comp, mine in done:
        comps.append(comp)
        read.extend(mine)
    return CompositeMeta(P.DIFFUSERS_PIPELINE, cls, version, comps, read)


def _module_kind(type_name) -> str:
    """``sentence_transformers.models.Transformer`` → "Transformer" (newer module paths, such as
    ``sentence_transformers.base.modules.transformer.Transformer``, end with the same class name)."""
    return type_name.rsplit(".", 1)[-1] if isinstance(type_name, str) else ""


def load_sentence_transformers(reader: Reader, pool=None) -> tuple[CompositeMeta, ModelConfig, CheckpointHeaders | None]:
    read: list[str] = []
    modules = _read_json(reader, MODULES, read)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ConfigError(f"{reader.origin(MODULES)} is not a list of modules",
                          hint="fix or re-download the file")
    comps: list[ComponentFiles] = []
    main: ComponentFiles | None = None
    for m in modules:
        kind = _module_kind(m.get("type"))
        folder = m.get("path") if isinstance(m.get("path"), str) else ""
        folder = folder.strip("/")
        name = str(m.get("name", m.get("idx", len(comps))))
        name = folder or (f"{name}_{kind}" if name.isdigit() else name)  # "0_Transformer" for a root module
        if kind == "Transformer":
            comp = ComponentFiles(name, "transformers", "Transformer", P.BACKBONE, folder)
            cfg_path = _path(folder, "config.json")
            if "config.json" not in reader.names(folder):
                raise ConfigError(f"{reader.origin(cfg_path)} is missing",
                                  hint="a sentence-transformers Transformer module needs its config.json")
            comp.model_config = parse_config(reader.read(cfg_path), reader.origin(cfg_path))
            comp.config = comp.model_config.raw
            comp.class_name = comp.model_config.architecture or "Transformer"
            read.append(cfg_path)
            comp.headers, notes = read_headers(reader, folder, read, bases=("model",), pool=pool)
            comp.notes.extend(notes)
            sbert = _path(folder, "sentence_bert_config.json")
            if "sentence_bert_config.json" in reader.names(folder):
                sb = json_object(reader.read(sbert), reader.origin(sbert))
                read.append(sbert)
                if isinstance(sb, dict) and isinstance(sb.get("max_seq_length"), int):
                    comp.config = dict(comp.config, sentence_bert_config=sb)
                    comp.notes.append(f"max_seq_length {sb['max_seq_length']} (sentence_bert_config.json): "
                                      "the sequence length sentence-transformers truncates to")
            main = main or comp
        elif kind == "Dense":
            comp = ComponentFiles(name, "sentence_transformers", "Dense", P.DENSE, folder)
            comp.config = _read_json(reader, _path(folder, "config.json"), read)
            comp.headers, notes = read_headers(reader, folder, read, bases=("model",))
            comp.notes.extend(notes)
        elif kind in ("Pooling", "Normalize"):
            comp = ComponentFiles(name, "sentence_transformers", kind, P.POOLING if kind == "Pooling" else P.NORMALIZE,
                                  folder)
            if kind == "Pooling" and "config.json" in reader.names(folder):
                comp.config = _read_json(reader, _path(folder, "config.json"), read)
        else:
            comp = ComponentFiles(name, "sentence_transformers", kind or "unknown", P.OTHER, folder)
            comp.headers, notes = read_headers(reader, folder, read, bases=("model",))
            comp.notes.extend(notes)
            if comp.headers is None:
                comp.role = P.WEIGHTLESS
                comp.notes.append(f"module {kind or m.get('type')!r} has no safetensors weights: counted as weightless")
        comps.append(comp)
    if main is None:
        raise ConfigError(f"{reader.origin(MODULES)} lists no Transformer module",
                          hint="hfmem sizes sentence-transformers models built on a transformers model")
    version = None
    if "config_sentence_transformers.json" in reader.names(""):
        try:
            st = json.loads(reader.read("config_sentence_transformers.json"))
            version = (st.get("__version__") or {}).get("sentence_transformers")
            read.append("config_sentence_transformers.json")
        except (ValueError, AttributeError):
            version = None
    meta = CompositeMeta(P.SENTENCE_TRANSFORMERS, "SentenceTransformer",
                         version if isinstance(version, str) else None, comps, read)
    return meta, main.model_config, main.headers


def timm_composite(config: ModelConfig, headers: CheckpointHeaders | None, read: list[str]) -> CompositeMeta:
    raw = config.raw
    comp = ComponentFiles("model", "timm", raw["architecture"], P.BACKBONE, "", config=raw, headers=headers)
    return CompositeMeta(P.TIMM, raw["architecture"], None, [comp], list(read))


# ---------------------------------------------------------------- a folder (local, or a Hugging Face cache snapshot)


class FolderReader:
    def __init__(self, root: str):
        self.root = root

    def names(self, folder: str) -> list[str]:
        try:
            return sorted(os.listdir(os.path.join(self.root, folder)))
        except OSError:
            return []

    def read(self, path: str) -> bytes:
        from .local import _read_file

        return _read_file(os.path.join(self.root, path))

    def header(self, path: str) -> FileHeader:
        from ..metadata.safetensors import read_local_header

        return read_local_header(os.path.join(self.root, path))

    def origin(self, path: str) -> str:
        from ..metadata.safetensors import printable_name

        return printable_name(os.path.join(self.root, path))


def load_folder(root: str) -> tuple[str, CompositeMeta | None, tuple]:
    """The kind of the folder and, for a diffusers pipeline or sentence-transformers model, what it holds
    (``(kind, meta, (config, headers))``; config and headers only for sentence-transformers)."""
    reader = FolderReader(root)
    names = reader.names("")
    kind = detect(names)
    if kind == P.DIFFUSERS_PIPELINE:
        return kind, load_diffusers(reader), (None, None)
    if kind == P.SENTENCE_TRANSFORMERS:
        meta, cfg, headers = load_sentence_transformers(reader)
        return kind, meta, (cfg, headers)
    return kind, None, (None, None)
