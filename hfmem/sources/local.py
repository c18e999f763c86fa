"""A model folder on disk: config.json and, if present, *.safetensors / model.safetensors.index.json.

Nothing in the folder is trusted to be what its name says: a ``model.safetensors`` may be a directory, a
FIFO (whose open() would block forever) or a symlink loop. Only regular files are opened, and anything
else is one clear error naming the file, not a hang or an internal error.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..errors import ConfigError, UsageError
from ..metadata.config import parse_config
from ..metadata.safetensors import open_regular, path_kind, printable_name, read_local_checkpoint
from . import FetchedMetadata

# config.json files are kilobytes; anything this large is not one, and is not read into memory.
MAX_CONFIG_BYTES = 100_000_000


def looks_like_path(ref: str) -> bool:
    # os.path.isdir answers False, never raises, for unreadable parents, NUL bytes and symlink loops.
    return ref.startswith((".", "/", "~")) or os.path.isdir(os.path.expanduser(ref))


def check_folder(ref: str, folder: Path) -> None:
    """UsageError unless ``folder`` is a directory (following symlinks), saying what it is instead."""
    try:
        st = os.stat(folder)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or "not a valid path"
        raise UsageError(f"{printable_name(ref)} is not a folder ({reason})",
                         hint="give a model folder with config.json, or a Hub repo id") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{printable_name(ref)} is {path_kind(st.st_mode)}, not a folder",
                         hint="give a model folder with config.json, or a Hub repo id")


def _stat_token(path: Path) -> str:
    """name:size:mtime, or name and why it cannot be stat'ed (then the analysis itself reports it)."""
    try:
        st = path.stat()
    except (OSError, ValueError) as exc:
        return f"{path.name}:unreadable:{getattr(exc, 'errno', '')}"
    return f"{path.name}:{st.st_mode & 0o170000}:{st.st_size}:{st.st_mtime_ns}"


def fingerprint(folder: Path) -> str:
    """Identifies the folder's content for the result cache: config.json's bytes and each safetensors
    file's name, type, size and modification time (headers are not re-read to decide). Never raises for
    what the folder holds: a file that cannot be read is fingerprinted as such, and the analysis that
    follows a cache miss says what is wrong with it."""
    h = hashlib.sha256()
    try:
        h.update(_read_config(folder / "config.json"))
    except ConfigError as exc:
        h.update(b"unreadable config: " + str(exc).encode("utf-8", "replace"))
    try:
        entries = sorted(p for p in folder.iterdir()
                         if p.name.endswith(".safetensors") or p.name.endswith(".safetensors.index.json"))
    except OSError as exc:
        entries = []
        h.update(f"unlistable:{exc.errno}".encode())
    for p in entries:
        h.update(_stat_token(p).encode("utf-8", "surrogateescape"))
    _composite_fingerprint(folder, h)
    return h.hexdigest()[:16]


def _composite_fingerprint(folder: Path, h) -> None:
    """A diffusers pipeline or sentence-transformers folder: also every JSON file and the stat of every
    safetensors file one level down (the components' folders), so an edit there is a new cache entry. A
    plain model folder's fingerprint is unchanged (nothing is added when neither index file is there)."""
    from .composite import MODEL_INDEX, MODULES

    if not any(os.path.lexists(folder / n) for n in (MODEL_INDEX, MODULES)):
        return
    for name in (MODEL_INDEX, MODULES, "sentence_bert_config.json"):
        try:
            h.update(name.encode() + _read_config(folder / name, missing_checked=True))
        except (ConfigError, OSError, ValueError):
            h.update(f"no {name}".encode())
    try:
        subs = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return
    for sub in subs:
        try:
            files = sorted(sub.iterdir())
        except OSError:
            continue
        for p in files:
            if p.name.endswith(".json") and p.is_file():
                try:
                    h.update(f"{sub.name}/{p.name}".encode("utf-8", "surrogateescape") + _read_config(p, True))
                except (ConfigError, OSError, ValueError):
                    h.update(f"{sub.name}/{p.name}:unreadable".encode("utf-8", "surrogateescape"))
            elif p.name.endswith((".safetensors", ".safetensors.index.json")):
                h.update(f"{sub.name}/".encode("utf-8", "surrogateescape")
                         + _stat_token(p).encode("utf-8", "surrogateescape"))


def _read_file(path) -> bytes:
    """A small JSON file of a composite repo (model_index.json, a component's config.json), read with the
    same guards as config.json; ConfigError naming it when it is absent or unreadable."""
    path = Path(path)
    try:
        os.lstat(path)
    except (OSError, ValueError):
        raise ConfigError(f"{printable_name(str(path))} is missing",
                          hint="the repo's folder needs this file; re-download it") from None
    return _read_config(path, missing_checked=True)


def _read_config(cfg_path: Path, missing_checked: bool = False) -> bytes:
    """config.json's bytes; ConfigError when it is absent, not a regular file or unreadable."""
    try:
        os.lstat(cfg_path)
    except (OSError, ValueError):
        if missing_checked:
            raise
        try:
            has_gguf = any(n.lower().endswith(".gguf") for n in os.listdir(cfg_path.parent))
        except OSError:
            has_gguf = False
        if has_gguf:
            from ..errors import GGUFRepoError

            raise GGUFRepoError(f"{printable_name(str(cfg_path.parent))} holds GGUF files and no config.json",
                                hint="`hfmem infer FOLDER` answers it for llama.cpp") from None
        raise ConfigError(f"{printable_name(str(cfg_path.parent))} has no config.json",
                          hint="point hfmem at a transformers model folder") from None

    def fail(what: str) -> ConfigError:
        return ConfigError(f"{printable_name(str(cfg_path))} {what}", hint="point hfmem at a transformers model folder")

    fh, size = open_regular(cfg_path, fail)
    with fh:
        if size > MAX_CONFIG_BYTES:
            raise fail(f"is {size:,} bytes, expected a config.json of at most 100 MB")
        try:
            data = fh.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise fail(f"cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise fail(f"is over {MAX_CONFIG_BYTES:,} bytes, expected a config.json of at most 100 MB")
    return data


def load_local(folder: Path) -> FetchedMetadata:
    check_folder(str(folder), folder)
    from . import composite

    kind, comp, (st_config, st_headers) = composite.load_folder(str(folder))
    provenance = {"path": str(folder), "fingerprint": fingerprint(folder)}
    if kind == composite.P.DIFFUSERS_PIPELINE:
        return pipeline_metadata(comp, "local", None, provenance, str(folder / composite.MODEL_INDEX))
    if kind == composite.P.SENTENCE_TRANSFORMERS:
        provenance["files_read"] = comp.files_read
        return FetchedMetadata(config=st_config, headers=st_headers, source="local", revision=None,
                               provenance=provenance, code_location=str(folder), composite=comp)
    cfg_path = folder / "config.json"
    config = parse_config(_read_config(cfg_path), str(cfg_path))
    headers = read_local_checkpoint(folder)
    meta = FetchedMetadata(
        config=config,
        headers=headers,
        source="local",
        revision=None,
        provenance=provenance,
        code_location=str(folder),
    )
    if composite.is_timm_config(config.raw):
        meta.composite = composite.timm_composite(config, headers, ["config.json"] + (
            [n for n in ("model.safetensors", "model.safetensors.index.json") if (folder / n).exists()][:1]))
    return meta


def pipeline_metadata(comp, source: str, revision, provenance: dict, origin: str) -> FetchedMetadata:
    """The metadata of a diffusers pipeline: model_index.json stands as the config (``ModelConfig``), the
    components are in ``composite``."""
    from ..metadata.config import ModelConfig

    provenance = dict(provenance, files_read=comp.files_read)
    index = {"_class_name": comp.class_name, "_diffusers_version": comp.library_version}
    return FetchedMetadata(config=ModelConfig(raw=index, origin=origin), headers=None, source=source,
                           revision=revision, provenance=provenance, code_location=None, composite=comp)
