"""Typed errors raised by the core.

Each error carries a one-line message that says what is wrong and what to do. The CLI turns them into
a line on stderr and an exit code in exactly one place (``hfmem.cli.errors.error_boundary``, applied once around the whole app); the core
never prints.
"""

from __future__ import annotations


class HfmemError(Exception):
    """Base class: ``str(err)`` is the user-facing line, ``exit_code`` the process status."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # one line, hint appended
        return f"{self.message} — {self.hint}" if self.hint else self.message


class UsageError(HfmemError):
    """Bad arguments (bad repo id, unknown option value)."""

    exit_code = 2


class SettingsError(UsageError, ValueError):
    """An invalid setting (an unknown dtype, a batch of 0, a combination that does not exist).

    ``setting`` names it in the Python API's terms (``lora_targets``, ``compute_dtype``); the CLI boundary
    maps that name to its flag (``hfmem.cli.options.SETTING_FLAGS``). Also a ``ValueError``, so callers of
    the Python API may catch either."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None, setting: str | None = None):
        super().__init__(message, hint=hint)
        self.setting = setting


class ModelNotFoundError(HfmemError):
    exit_code = 3


class GatedRepoError(HfmemError):
    exit_code = 4


class RevisionNotFoundError(HfmemError):
    exit_code = 3


class ConfigError(HfmemError):
    """config.json missing or malformed."""

    exit_code = 5


class UnsupportedArchitectureError(HfmemError):
    """Neither transformers nor the checkpoint headers let us count this model."""

    exit_code = 6


class SafetensorsHeaderError(HfmemError):
    """A safetensors header is truncated, too large or inconsistent."""

    exit_code = 7


class GGUFRepoError(ConfigError):
    """The repo or folder holds GGUF files and no config.json: a llama.cpp model. ``hfmem`` and ``hfmem infer``
    catch it and answer from the GGUF headers instead."""


class GGUFHeaderError(HfmemError):
    """A GGUF file's header (magic, version, metadata, tensor infos) is truncated, damaged, absurd or of a
    version hfmem does not read."""

    exit_code = 7


class HubUnavailableError(HfmemError):
    """The Hub could not be reached (connection error, timeout or 5xx after retries).

    Sources catch this to fall back to the result cache, the Hugging Face cache or the snapshot; it only
    reaches the user when none of those has the model.
    """

    exit_code = 8
    network = False  # True for connection errors and timeouts, False for an HTTP 5xx answer


class OfflineMissError(HfmemError):
    """Offline (by request or because the Hub is unreachable) and no local copy of the model exists."""

    exit_code = 8


class RemoteCodeError(HfmemError):
    """The repository's custom code failed to build a model."""

    exit_code = 6


class MeasureUnavailableError(HfmemError):
    """``hfmem measure`` cannot run here: no CUDA GPU, or a package the settings need (bitsandbytes, DeepSpeed,
    flash-attn) is not installed. Exit 69, sysexits' ``EX_UNAVAILABLE`` ("a service is unavailable ... a
    support program or file does not exist"): nothing is wrong with the arguments (2) and it is not a bug (70)."""

    exit_code = 69


class NoCudaDeviceError(MeasureUnavailableError):
    """``hfmem measure`` found no CUDA GPU (no CUDA build of torch, no driver, or no visible device)."""


class NoGPUFoundError(HfmemError):
    """``--gpu auto`` found no GPU on this machine (no NVML, nvidia-smi, rocm-smi or Apple silicon answered).
    Exit 69 like ``MeasureUnavailableError``: what is missing is the hardware, not a valid argument."""

    exit_code = 69


class MeasureRunError(HfmemError):
    """The measured run itself failed on the GPU (out of memory, a crash of its process); the report of what
    was measured up to then is still printed."""

    exit_code = 1
