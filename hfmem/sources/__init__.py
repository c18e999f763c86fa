"""sources: where a model's metadata comes from — a local folder, the Hub (through huggingface_hub only),
the Hugging Face cache, hfmem's shipped snapshot — and hfmem's own result cache of finished inventories."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..metadata.config import ModelConfig
from ..metadata.safetensors import CheckpointHeaders


@dataclass
class FetchedMetadata:
    """What a source found: config.json, the checkpoint's headers when available, and where it came from."""

    config: ModelConfig
    headers: CheckpointHeaders | None
    source: str  # "hub", "local", "hf-cache"
    revision: str | None
    provenance: dict = field(default_factory=dict)
    code_location: str | None = None  # repo id or folder that --trust-remote-code can load code from
    # A diffusers pipeline, sentence-transformers model or timm model: its components as read
    # (``composite.CompositeMeta``); None for a plain transformers model. For sentence-transformers ``config`` and
    # ``headers`` are the Transformer module's; for a pipeline ``config`` stands for model_index.json.
    composite: object | None = None


def env_flag(name: str) -> bool:
    """huggingface_hub's reading of boolean variables (``HF_HUB_OFFLINE=1/true/yes/on``)."""
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


# ---------------------------------------------------------------- credentials in HF_ENDPOINT
# ``HF_ENDPOINT=https://user:secret@mirror.example`` is legal (a proxy or a private mirror behind basic
# auth). The endpoint is shown in notes, errors, provenance and cache keys; none of them may carry the
# credentials. ``redacted_endpoint`` is the one form of the endpoint hfmem shows or stores; ``scrub`` is the
# last line of defence for any text hfmem prints (errors raised by huggingface_hub may embed URLs).

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s?#]*@")


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` after the scheme."""
    return _USERINFO.sub(lambda m: m.group("scheme"), url)


def raw_endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT")


def redacted_endpoint(default: str = "https://huggingface.co") -> str:
    """HF_ENDPOINT (or the default) as hfmem shows and stores it: no credentials."""
    return strip_userinfo((raw_endpoint() or default).rstrip("/"))


def endpoint_cache_id() -> str:
    """The endpoint's part of a result-cache key: HF_ENDPOINT as given when it has no credentials (so keys
    stay as they were), else the endpoint without them plus a hash of the whole value (two sets of
    credentials are two keys, and the secret is never in clear text)."""
    import hashlib

    raw = raw_endpoint() or ""
    clean = strip_userinfo(raw)
    if clean == raw:
        return raw
    return f"{clean.rstrip('/')}#{hashlib.sha256(raw.encode()).hexdigest()[:12]}"


def _secrets() -> list[str]:
    from urllib.parse import unquote, urlsplit

    raw = raw_endpoint() or ""
    try:
        parts = urlsplit(raw)
        user, password = parts.username, parts.password
    except ValueError:
        return []
    userinfo = raw.split("://", 1)[-1].split("@", 1)[0] if "@" in raw else ""
    found = [s for s in (userinfo, unquote(userinfo), password, unquote(password or "")) if s and len(s) >= 4]
    if user and password is None and len(user) >= 4:  # a token given as the user name
        found.append(user)
    return sorted(set(found), key=len, reverse=True)


def scrub(text: str) -> str:
    """``text`` with URL credentials removed, and HF_ENDPOINT's own credentials wherever they appear."""
    text = strip_userinfo(text)
    for secret in _secrets():
        text = text.replace(secret, "***")
    return text


def hf_hub_cache_dir() -> str:
    """The Hugging Face cache folder, by huggingface_hub's documented precedence (HF_HUB_CACHE, then the
    deprecated HUGGINGFACE_HUB_CACHE, then HF_HOME/hub, HF_HOME defaulting to $XDG_CACHE_HOME/huggingface).
    Used only to decide whether to look: the lookup itself is huggingface_hub's ``try_to_load_from_cache``."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.path.expanduser(os.environ[var])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    home = os.path.expanduser(os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface"))
    return os.path.join(home, "hub")
