"""Is a model reference a folder or a Hub repo id, and is the repo id one the Hub accepts?

Checked before any source is asked, so a malformed id is a ``UsageError`` that says the rule, never a
request (or a cache key) built from it.
"""

from __future__ import annotations

import re

from ..errors import UsageError
from .local import looks_like_path

# The Hub's own rule (huggingface_hub.utils.validate_repo_id, its REPO_ID_REGEX with re.ASCII): NAME or
# ORG/NAME, each part 1-96 of A-Z a-z 0-9 - _ . starting and ending with a letter, digit or _; no -- or ..;
# not ending in .git. Checked here without importing huggingface_hub (a cache hit never needs it), then by
# validate_repo_id itself before huggingface_hub first sees the id.
_PART = r"(?=[A-Za-z0-9_])[A-Za-z0-9_.\-]{0,95}[A-Za-z0-9_]|[A-Za-z0-9_]"
_REPO_ID = re.compile(rf"(?:(?:{_PART})/)?(?:{_PART})", re.ASCII)
REPO_ID_RULE = ("a Hub repo id is NAME or ORG/NAME, each 1 to 96 characters of A-Z a-z 0-9 - _ . that start and "
                "end with a letter, digit or _, without -- or .., not ending in .git")


def _shown(model: str) -> str:
    """The model as given, for a message: quoted, and cut when absurdly long."""
    return repr(model) if len(model) <= 120 else f"{model[:100]!r}… ({len(model):,} characters)"


def _bad_id(model: str, rule: str = REPO_ID_RULE) -> UsageError:
    return UsageError(f"{_shown(model)} is neither a folder nor a Hub repo id: {rule}",
                      hint="use ORG/NAME (e.g. baichuan-inc/Baichuan-7B) or a path to a model folder")


def _is_path(model: str) -> bool:
    try:
        return looks_like_path(model)
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte: not a folder
        return False


def matches_repo_id_rule(repo_id: str) -> bool:
    """``repo_id`` follows the Hub's rule as restated above (no huggingface_hub import)."""
    return bool(_REPO_ID.fullmatch(repo_id)) and "--" not in repo_id and ".." not in repo_id \
        and not repo_id.endswith(".git")


def check_repo_id(repo_id: str) -> None:
    """``UsageError`` unless ``repo_id`` follows the Hub's rules (huggingface_hub's ``validate_repo_id``)."""
    if not isinstance(repo_id, str) or not matches_repo_id_rule(repo_id):
        raise _bad_id(repo_id if isinstance(repo_id, str) else repr(repo_id))
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        rule = str(exc).split(": '")[0].rstrip(".:")  # its rule, without the id it repeats
        raise _bad_id(repo_id, rule) from None
