"""llama.cpp's memory for one GGUF model (``hfmem infer --engine llama.cpp``; Ollama and LM Studio run llama.cpp
underneath): every buffer llama.cpp allocates at load, per device, as its load log prints them.

* **Model buffers** (``load_tensors: CUDA0 model buffer size``): tensors go to a device by layer, as
  llama-model.cpp ``load_tensors`` assigns them: the input layer (token_embd) always stays on the CPU; the
  last ``-ngl`` repeating layers go to the GPUs, and the output layer too when ``-ngl`` exceeds the layer count;
  the GPU layers are split over several GPUs by ``--tensor-split`` (cumulative fractions, ``upper_bound``);
  ``-ot REGEX=DEVICE`` and ``--n-cpu-moe N`` move matching tensors. A GPU buffer is the sum of each tensor's
  allocation size (ggml-cuda.cu ``ggml_backend_cuda_buffer_type_get_alloc_size``: a quantized tensor whose row
  length is not a multiple of MATRIX_ROW_PADDING = 512 gets one partial row more) padded to the buffer's 128-byte
  alignment. The CPU's weights stay in the memory-mapped file (``CPU_Mapped``): the buffer is the span of the
  file from the first to the last byte of the CPU tensors (llama_model_loader ``get_mapping_range``), one per
  file of a split model.
* **KV cache** (llama-kv-cache.cpp): per layer, ``ggml_row_size(type_k, n_embd_k_gqa) · cells`` for K and the
  same with ``type_v`` for V; sliding-window layers (llama-kv-cache-iswa.cpp) hold
  ``min(cells, pad(n_swa · n_seq + n_ubatch, 256))`` cells unless ``--swa-full``. A layer's KV lives with the
  layer (on the CPU with ``--no-kv-offload``).
* **Output buffer** (llama-context.cpp ``output_reserve``): float32 logits for ``max(1, n_seq)`` outputs,
  in the host buffer of the output device.
* **Compute buffers** (``compute buffer size``): the graph allocator's peak for one micro-batch of ``-ub``
  tokens against the whole cache; see ``compute_buffers`` for the model and its check against published logs.
* **CUDA context** per GPU: driver context, llama.cpp's kernels and cuBLAS's workspace, a stated default.

Every quantity is an integer of bytes. What it predicts: per GPU, the device total nvidia-smi shows (buffers +
CUDA context); on the CPU, the resident memory llama.cpp adds (the mapped weights it touches, CPU KV, host
compute and output buffers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import SettingsError
from ..model.gguf_model import GGUFModel, layer_of
from ..units import MiB
from .overheads import CUDA_CONTEXT_BYTES

# ggml-cuda: ggml_backend_cuda_buffer_type_get_alignment returns 128; MATRIX_ROW_PADDING (ggml-cuda/common.cuh)
# pads quantized rows so the mmq/mmvq kernels can read whole 512-element tiles.
CUDA_ALIGNMENT = 128
MATRIX_ROW_PADDING = 512
# The KV cache's cell count is padded to 256 (llama-context.cpp pads n_ctx with GGML_PAD(n_ctx, 256)), and the
# SWA cache's too (llama-kv-cache-iswa.cpp).
KV_PAD = 256
# The CUDA context per GPU in use: hfmem's one sourced default (scenarios/overheads.py: 0.47 GiB measured with
# lazy module loading, rounded up to 512 MiB). No published measurement of llama.cpp's own context was found; its
# --fit keeps a 1024 MiB margin per device for everything outside its buffers. Override with --cuda-context.
LLAMACPP_CUDA_CONTEXT_BYTES = CUDA_CONTEXT_BYTES

# -ctk / -ctv: the types llama.cpp's common/arg.cpp accepts (kv_cache_types).
KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
FLASH_ATTN = ("on", "off", "auto")
CPU = "CPU"


def gpu_name(i: int) -> str:
    return f"CUDA{i}"


def ggml_block(type_name: str) -> tuple[int, int]:
    """(block size, bytes per block) of a ggml type, from the gguf package's table (GGML_QUANT_SIZES)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    return GGML_QUANT_SIZES[GGMLQuantizationType[type_name.upper()]]


def row_bytes(type_name: str, n: int) -> int:
    """ggml_row_size: bytes of ``n`` consecutive elements of a type (``n`` a multiple of its block size)."""
    block, size = ggml_block(type_name)
    if n % block:
        raise SettingsError(f"a row of {n} elements is not a whole number of {type_name} blocks of {block}",
                            setting="type_k")
    return n // block * size


def pad(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def is_quantized(type_name: str) -> bool:
    """ggml_is_quantized: every block type (block size > 1); F32/F16/BF16 and the integer types are not."""
    return ggml_block(type_name)[0] > 1


def cuda_alloc_bytes(tensor) -> int:
    """One tensor's bytes in a CUDA buffer: its size, one partial row more when a quantized row is not a multiple
    of 512 elements, padded to the buffer alignment."""
    size = tensor.nbytes
    ne0 = tensor.shape[0] if tensor.shape else 1
    if is_quantized(tensor.ggml_type) and ne0 % MATRIX_ROW_PADDING:
        size += row_bytes(tensor.ggml_type, MATRIX_ROW_PADDING - ne0 % MATRIX_ROW_PADDING)
    return pad(size, CUDA_ALIGNMENT)


@dataclass(frozen=True)
class LlamaCppSettings:
    """llama-server's options that change memory, with llama.cpp's defaults. ``context`` is per sequence, as
    everywhere in hfmem: llama.cpp's ``-c`` is ``context · parallel`` (the cells all sequences share)."""

    context: int = 4096
    parallel: int = 1                       # -np: sequences at once
    n_batch: int = 2048                     # -b: logical batch
    n_ubatch: int = 512                     # -ub: physical batch, what the compute graph is sized for
    n_gpu_layers: int | None = None         # -ngl; None: every layer (llama.cpp's default offloads all)
    gpus: int = 1
    tensor_split: tuple[float, ...] | None = None  # -ts; None: equal GPUs get equal shares
    n_cpu_moe: int = 0                      # --n-cpu-moe N: experts of the first N layers on the CPU
    cpu_moe: bool = False                   # --cpu-moe: every layer's experts on the CPU
    override_tensors: tuple[tuple[str, str], ...] = ()  # -ot REGEX=BUFFER, in order
    type_k: str = "f16"                     # -ctk
    type_v: str = "f16"                     # -ctv
    flash_attn: str = "auto"                # -fa on|off|auto
    swa_full: bool = False                  # --swa-full
    kv_offload: bool = True                 # --no-kv-offload turns it off
    mmap: bool = True                       # --no-mmap: CPU weights copied into a CPU buffer
    images: int = 0                         # served with the mmproj projector when > 0
    kv_unified: bool = False                # --kv-unified: one KV stream shared by all sequences
    embeddings: bool = False                # --embeddings (Ollama's runner always sets it): room for the
                                            # n_embd embedding of every output beside its logits
    cuda_context_bytes: int = LLAMACPP_CUDA_CONTEXT_BYTES

    def validate(self) -> "LlamaCppSettings":
        def bad(msg: str, setting: str):
            raise SettingsError(msg, setting=setting)

        if self.context < 1:
            bad("context must be at least 1 token", "context")
        if self.parallel < 1:
            bad("parallel must be at least 1", "parallel")
        if self.n_ubatch < 1 or self.n_batch < 1:
            bad("n_batch and n_ubatch must be at least 1", "n_ubatch")
        if self.n_gpu_layers is not None and self.n_gpu_layers < 0:
            bad("n_gpu_layers must be 0 or more", "n_gpu_layers")
        if self.gpus < 1:
            bad("gpus must be at least 1", "gpus")
        if self.tensor_split is not None:
            if len(self.tensor_split) > self.gpus:
                bad(f"tensor_split has {len(self.tensor_split)} shares for {self.gpus} GPU(s)", "tensor_split")
            if any(s < 0 for s in self.tensor_split) or sum(self.tensor_split) <= 0:
                bad("tensor_split shares must be 0 or more, and not all 0", "tensor_split")
        for name in ("type_k", "type_v"):
            if getattr(self, name).lower() not in KV_TYPES:
                bad(f"{name} {getattr(self, name)!r} is not one of {', '.join(KV_TYPES)}", name)
        if self.flash_attn not in FLASH_ATTN:
            bad(f"flash_attn {self.flash_attn!r} is not one of on, off, auto", "flash_attn")
        if self.type_v.lower() not in ("f32", "f16", "bf16") and self.flash_attn == "off":
            bad(f"type_v {self.type_v} is a quantized V cache, which needs flash attention (llama.cpp refuses it "
                "with flash attention off)", "type_v")
        for pattern, device in self.override_tensors:
            try:
                re.compile(pattern)
            except re.error as exc:
                bad(f"override_tensors pattern {pattern!r} is not a regular expression ({exc})", "override_tensors")
            gpu = re.fullmatch(r"CUDA(\d+)", device.upper())
            if device.upper() != CPU and gpu is None:
                bad(f"override_tensors buffer {device!r} is not CPU or CUDAn", "override_tensors")
            if gpu is not None and int(gpu.group(1)) >= self.gpus:
                bad(f"override_tensors buffer {device} names a GPU beyond the {self.gpus} of --gpus "
                    f"(CUDA0..CUDA{self.gpus - 1})", "override_tensors")
        if self.cuda_context_bytes < 0:
            bad("cuda_context_bytes must be 0 or more", "cuda_context_bytes")
        return self

    @property
    def n_ctx(self) -> int:
        """llama.cpp's -c for this plan: hfmem's per-sequence context times the sequences."""
        return self.context * self.parallel

    @property
    def n_stream(self) -> int:
        """KV streams: one per sequence, or one shared stream with --kv-unified (llama_kv_cache's n_stream)."""
        return 1 if self.kv_unified else self.parallel

    @property
    def cells_per_stream(self) -> int:
        """llama-context.cpp: ``n_ctx = GGML_PAD(n_ctx, 256)``; without a unified cache each sequence gets
        ``GGML_PAD(n_ctx / n_seq_max, 256)`` cells and n_ctx becomes that times n_seq_max."""
        n_ctx = pad(self.n_ctx, KV_PAD)
        return n_ctx if self.kv_unified else pad(n_ctx // self.parallel, KV_PAD)

    @property
    def cells(self) -> int:
        """KV cells of the whole cache (all streams)."""
        return self.cells_per_stream * self.n_stream

    @property
    def ubatch(self) -> int:
        """cparams.n_ubatch: min(n_ubatch, n_batch, n_ctx) (llama-context.cpp, causal models)."""
        return min(self.n_ubatch, self.n_batch, pad(self.n_ctx, KV_PAD))

    def flash(self) -> bool:
        """-fa auto: llama.cpp turns flash attention on when every device supports it for the model's head size,
        which the CUDA and CPU backends do for the architectures hfmem describes."""
        return self.flash_attn != "off"


@dataclass
class DeviceMemory:
    """One device's buffers as llama.cpp's load log names them."""

    device: str                 # "CUDA0", "CUDA1", ..., "CPU"
    model_bytes: int = 0        # model buffer (CPU: CPU_Mapped with mmap)
    k_bytes: int = 0
    v_bytes: int = 0
    compute_bytes: int = 0      # GPU: CUDAn compute buffer; CPU: CUDA_Host (or CPU) compute buffer
    output_bytes: int = 0       # host output buffer (on the CPU row)
    context_bytes: int = 0      # CUDA context (GPUs only)
    layers: int = 0             # repeating layers assigned here
    output_layer: bool = False
    projector_bytes: int = 0    # mmproj weights (GPU 0, or the CPU without GPUs)

    @property
    def kv_bytes(self) -> int:
        return self.k_bytes + self.v_bytes

    @property
    def total_bytes(self) -> int:
        return (self.model_bytes + self.kv_bytes + self.compute_bytes + self.output_bytes + self.context_bytes
                + self.projector_bytes)


@dataclass
class LlamaCppEstimate:
    model: GGUFModel
    settings: LlamaCppSettings
    n_gpu_layers: int                   # resolved -ngl (0..n_layer+1)
    devices: list[DeviceMemory]         # GPUs in order, then the CPU
    kv_cells: int
    kv_cells_swa: int | None
    flash_attn: bool
    assumptions: list[str] = field(default_factory=list)
    predicts: str = ("per GPU: device total as nvidia-smi shows it (llama.cpp's buffers + CUDA context); "
                     "CPU: memory llama.cpp holds in RAM (mapped weights, CPU KV, host buffers)")

    @property
    def gpus(self) -> list[DeviceMemory]:
        return [d for d in self.devices if d.device != CPU]

    @property
    def cpu(self) -> DeviceMemory:
        return next(d for d in self.devices if d.device == CPU)

    @property
    def gpu_peak_bytes(self) -> int:
        """The largest GPU's total (0 without GPU layers): what must fit each GPU."""
        return max((d.total_bytes for d in self.gpus), default=0)

    @property
    def kv_bytes(self) -> int:
        return sum(d.kv_bytes for d in self.devices)

    @property
    def model_bytes(self) -> int:
        return sum(d.model_bytes for d in self.devices)


# ---------------------------------------------------------------- placement


def _splits(s: LlamaCppSettings) -> list[float]:
    """llama-model.cpp: cumulative, normalised shares of the GPU layers per device (default: equal, as free
    memory splits equal GPUs)."""
    shares = list(s.tensor_split or [1.0] * s.gpus) + [0.0] * (s.gpus - len(s.tensor_split or [1.0] * s.gpus))
    total = sum(shares)
    out, acc = [], 0.0
    for v in shares:
        acc += v
        out.append(acc / total)
    return out


def layer_devices(m: GGUFModel, s: LlamaCppSettings) -> tuple[int, list[str]]:
    """(resolved ngl, device of each of the n_layer + 1 layers: the repeating layers, then the output layer).

    llama-model.cpp ``load_tensors``: ``i_gpu_start = max(n_layer + 1 - ngl, 0)``, ``act_gpu_layers = min(ngl,
    n_layer + 1)``; layer ``il`` (the output layer is ``il = n_layer``) is on a GPU when ``i_gpu_start <= il <
    i_gpu_start + act_gpu_layers``, the GPU being ``upper_bound(splits, (il - i_gpu_start) / act_gpu_layers)``.
    So ``-ngl 1`` offloads the output layer only, and ``-ngl n_layer + 1`` everything."""
    n_layer = m.n_layer
    ngl = n_layer + 1 if s.n_gpu_layers is None else min(s.n_gpu_layers, n_layer + 1)
    if s.gpus == 0:
        ngl = 0
    i_gpu_start = max(n_layer + 1 - ngl, 0)
    act = min(ngl, n_layer + 1)
    splits = _splits(s)
    out = []
    for il in range(n_layer + 1):
        if il < i_gpu_start or il - i_gpu_start >= act:
            out.append(CPU)
            continue
        x = (il - i_gpu_start) / act
        gpu = next((i for i, v in enumerate(splits) if v > x), len(splits) - 1)  # std::upper_bound
        out.append(gpu_name(gpu))
    return ngl, out


def _overrides(s: LlamaCppSettings, m: GGUFModel) -> list[tuple[re.Pattern, str]]:
    """-ot patterns, then --n-cpu-moe / --cpu-moe's (common/arg.cpp: ``blk\\.N\\.ffn_(up|down|gate)_exps``
    for each of the first N layers; ``\\.ffn_(up|down|gate)_exps`` for all), first match wins."""
    pats = [(re.compile(p), d.upper()) for p, d in s.override_tensors]
    if s.cpu_moe:
        pats.append((re.compile(r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"), CPU))
    for il in range(min(s.n_cpu_moe, m.n_layer)):
        pats.append((re.compile(rf"blk\.{il}\.ffn_(up|down|gate|gate_up)_(ch|)exps"), CPU))
    return pats


def tensor_device(name: str, layers: list[str], pats) -> str:
    for pat, dev in pats:
        if pat.search(name):
            return dev
    il = layer_of(name)
    if il is not None:
        return layers[il] if il < len(layers) - 1 else CPU
    if name.startswith(("token_embd", "token_types", "position_embd")) and not name.startswith("token_embd_norm"):
        return CPU  # the input layer: "always keep it on the CPU" (llama-model.cpp)
    return layers[-1]  # output_norm, output, and the other non-repeating tensors belong to the output layer


def placement(headers, m: GGUFModel, s: LlamaCppSettings, layers: list[str]) -> tuple[tuple[str, ...], ...]:
    """The device of every tensor, part by part in file order: the one placement every buffer below reads."""
    pats = _overrides(s, m)
    return tuple(tuple(tensor_device(t.name, layers, pats) for t in h.tensors) for h in headers)


def model_buffers(headers, placed, layers: list[str], *, mmap: bool = True) -> dict[str, int]:
    """Model buffer bytes per device (see the module docstring). ``headers``: the GGUFHeader of each part;
    ``placed``: ``placement(...)`` of the same parts."""
    out: dict[str, int] = {}
    for h, devs in zip(headers, placed):
        first, last = None, 0
        cpu_copy = 0
        for t, dev in zip(h.tensors, devs):
            if dev == CPU:
                start = h.data_offset + t.offset
                first = start if first is None else min(first, start)
                last = max(last, start + t.nbytes)
                cpu_copy += pad(t.nbytes, 32)
            else:
                out[dev] = out.get(dev, 0) + cuda_alloc_bytes(t)
        if first is not None:
            out[CPU] = out.get(CPU, 0) + ((last - first) if mmap else cpu_copy)
    # Tied embeddings: with no output.weight, llama.cpp loads token_embd a second time as the output matrix
    # (create_tensor(..., TENSOR_DUPLICATED)) on the output layer's device.
    tensors = [t for h in headers for t in h.tensors]
    if layers[-1] != CPU and not any(t.name == "output.weight" for t in tensors):
        emb = next((t for t in tensors if t.name == "token_embd.weight"), None)
        if emb is not None:
            out[layers[-1]] = out.get(layers[-1], 0) + cuda_alloc_bytes(emb)
    return out


def cpu_matrices(headers, placed) -> list:
    """The matrices kept on the CPU that a GPU or the CPU multiplies (token_embd is only gathered from)."""
    return [t for h, devs in zip(headers, placed) for t, dev in zip(h.tensors, devs)
            if dev == CPU and len(t.shape) >= 2 and not t.name.startswith("token_embd")]


# ---------------------------------------------------------------- KV cache


def kv_cells_swa(m: GGUFModel, s: LlamaCppSettings) -> int | None:
    """Cells per stream of the sliding-window cache (llama-kv-cache-iswa.cpp): ``GGML_PAD(min(size_base,
    n_swa · (unified ? n_seq_max : 1) + n_ubatch), 256)``; None when no layer slides or with --swa-full."""
    if not any(m.swa_layers) or s.swa_full:
        return None
    per_seq = s.parallel if s.kv_unified else 1
    return pad(min(s.cells_per_stream, m.n_swa * per_seq + s.ubatch), KV_PAD)


def _kv_tensor_bytes(type_name: str, n_embd_gqa: int, cells: int, n_stream: int, on_gpu: bool) -> int:
    """One layer's K (or V) tensor, ``ggml_new_tensor_3d(type, n_embd_gqa, cells, n_stream)``, as allocated: on a
    GPU with the quantized-row padding and the 128-byte alignment, on the CPU padded to 32."""
    size = row_bytes(type_name, n_embd_gqa) * cells * n_stream
    if not on_gpu:
        return pad(size, 32)
    if is_quantized(type_name) and n_embd_gqa % MATRIX_ROW_PADDING:
        size += row_bytes(type_name, MATRIX_ROW_PADDING - n_embd_gqa % MATRIX_ROW_PADDING)
    return pad(size, CUDA_ALIGNMENT)


def kv_by_device(m: GGUFModel, s: LlamaCppSettings, layers: list[str]) -> dict[str, tuple[int, int]]:
    """(K bytes, V bytes) per device: each layer's cache on its layer's device (the CPU with --no-kv-offload)."""
    cells, swa_cells = s.cells_per_stream, kv_cells_swa(m, s)
    out: dict[str, tuple[int, int]] = {}
    for il in m.kv_layers:
        n = swa_cells if swa_cells is not None and m.swa_layers[il] else cells
        dev = layers[il] if s.kv_offload else CPU
        k = _kv_tensor_bytes(s.type_k, m.n_embd_k_gqa(il), n, s.n_stream, dev != CPU)
        v = _kv_tensor_bytes(s.type_v, m.n_embd_v_gqa(il), n, s.n_stream, dev != CPU)
        pk, pv = out.get(dev, (0, 0))
        out[dev] = (pk + k, pv + v)
    return out


# ---------------------------------------------------------------- output and compute buffers


def output_bytes(m: GGUFModel, s: LlamaCppSettings) -> int:
    """llama-context.cpp output_reserve: float32 logits of n_vocab for max(1, n_seq) outputs, and with
    embeddings on their n_embd floats too (Ollama creates every context with embeddings on: ollama
    llama/llama.go NewContextParams)."""
    return 4 * (m.n_vocab + (m.n_embd if s.embeddings else 0)) * max(1, s.parallel)


def _stages(m: GGUFModel, s: LlamaCppSettings, flash: bool) -> tuple[int, int, int]:
    """(attention, feed-forward, output) peaks of the reserve graph, in bytes; see ``compute_buffers``."""
    n_tok = s.ubatch
    e4 = 4 * m.n_embd * n_tok                       # one f32 activation of the residual width
    n_kv = s.cells_per_stream
    # an iSWA model keeps two caches (and two masks) even with --swa-full, where both are full size
    swa = kv_cells_swa(m, s) or n_kv if any(m.swa_layers) else None
    caches = [n_kv] if swa is None else [swa] if all(m.swa_layers) else [n_kv, swa]
    rows = pad(n_tok, 64)                           # GGML_KQ_MASK_PAD
    mask32 = [4 * c * rows for c in caches]         # one f32 KQ mask per cache (full, sliding)
    if flash:
        # the f16 casts of every mask, beside the f32 mask of the largest cache
        attn = sum(2 * c * rows for c in caches) + max(mask32) + e4
    else:
        # the f32 scores of the largest cache (soft_max runs in place), the masks, Q/K/V/out and the residual
        attn = 4 * max(caches) * n_tok * m.max_head + sum(mask32) + 5 * e4
    experts = m.n_expert_used if m.is_moe else 1
    ffn = 4 * 4 * max(m.n_ff or (0,)) * n_tok * experts + e4 // 2
    out = 4 * m.n_vocab * n_tok + 5 * e4 // 2      # every token an output in the reserve graph
    return attn, ffn, out


def compute_buffers(m: GGUFModel, s: LlamaCppSettings, layers: list[str], flash: bool,
                    cpu_weight_bytes: int = 0) -> dict[str, int]:
    """The graph allocator's peak per device for llama.cpp's reserve graph (llama-context.cpp
    ``sched_reserve``): ``-ub`` tokens, each one an output, attending to the whole cache.

    ggml-alloc packs the graph's tensors into one buffer per device, reusing freed space, so its peak is not a
    closed form; hfmem takes the largest of three stages, each the tensors live there:

    * attention, without flash attention: the f32 KQ scores ``n_kv · n_tokens · n_head`` (soft_max in place),
      the f32 KQ masks ``n_kv · pad(n_tokens, 64)`` of each cache (full and sliding-window), and five
      activations of ``n_embd · n_tokens`` (Q, K, V, the attention output, the residual); with flash attention:
      the masks' f16 casts, the f32 mask of the largest cache, and one activation;
    * feed-forward: four f32 tensors of ``n_ff · n_tokens`` (per used expert: gate, up, their product and the
      allocator's reuse slack) and half an activation;
    * output: the f32 logits ``n_vocab · n_tokens`` and 2.5 activations.

    The coefficients were fitted to llama.cpp's own CPU runs of small real models
    (benchmarks/measured/llamacpp-cpu/runs.json: every one within 8 %) and are checked against published
    GPU logs in docs/accuracy.md. A GPU holds the stages of the layers it runs (the output stage where the output
    layer is); the host buffer holds what is built on the CPU: the token embeddings (token_embd stays there)
    and the f32 masks. With layers on the CPU and a GPU in use, llama.cpp offloads the CPU layers' matrix
    products of a batch to the GPU (``op_offload``), copying each weight there: the largest such weight joins
    the GPU's buffer."""
    attn, ffn, out_stage = _stages(m, s, flash)
    layer_peak = max(attn, ffn)
    out: dict[str, int] = {}
    for dev in {d for d in layers[:-1]}:
        out[dev] = layer_peak
    out_dev = layers[-1]
    out[out_dev] = max(out.get(out_dev, 0), out_stage)
    gpus = sorted(d for d in out if d != CPU)
    if gpus:
        n_tok = s.ubatch
        n_kv = s.cells_per_stream
        host = 4 * m.n_embd * n_tok + 4 * n_kv * pad(n_tok, 64)
        out[CPU] = max(out.get(CPU, 0), host)
        if CPU in layers and cpu_weight_bytes and n_tok >= 32:
            out[gpus[0]] += cpu_weight_bytes
    return out


# ---------------------------------------------------------------- the estimate


def estimate_llamacpp(headers, m: GGUFModel, s: LlamaCppSettings, *, projector_bytes: int = 0) -> LlamaCppEstimate:
    s = s.validate()
    ngl, layers = layer_devices(m, s)
    flash = s.flash()
    devices = {gpu_name(i): DeviceMemory(gpu_name(i)) for i in range(s.gpus)}
    devices[CPU] = DeviceMemory(CPU)
    placed = placement(headers, m, s, layers)
    on_cpu = cpu_matrices(headers, placed)
    for dev, b in model_buffers(headers, placed, layers, mmap=s.mmap).items():
        devices[dev].model_bytes += b
    for dev, (k, v) in kv_by_device(m, s, layers).items():
        devices[dev].k_bytes += k
        devices[dev].v_bytes += v
    largest_cpu = max((t.nbytes for t in on_cpu), default=0)
    for dev, b in compute_buffers(m, s, layers, flash, largest_cpu).items():
        devices[dev].compute_bytes += b
    devices[CPU].output_bytes = output_bytes(m, s)
    for dev in layers[:-1]:
        devices[dev].layers += 1
    devices[layers[-1]].output_layer = True
    used_gpus = [d for name, d in devices.items() if name != CPU and (d.layers or d.output_layer or d.model_bytes)]
    for d in used_gpus:
        d.context_bytes = s.cuda_context_bytes
    if s.images and projector_bytes:
        (used_gpus[0] if used_gpus else devices[CPU]).projector_bytes = projector_bytes
    swa = kv_cells_swa(m, s)
    notes = [
        f"-ngl {ngl}: {sum(1 for d in layers[:-1] if d != CPU)}/{m.n_layer} repeating layers on GPU, output layer "
        f"on {layers[-1]}; token_embd stays on the CPU (llama.cpp keeps the input layer there)",
        f"KV cache: {s.cells} cells (-c {s.n_ctx} = context {s.context} × {s.parallel} sequence(s), padded to "
        f"{KV_PAD}{' per sequence' if not s.kv_unified and s.parallel > 1 else ''}), K {s.type_k}, V {s.type_v}"
        + (f"; sliding-window layers: {swa} cells per stream" if swa is not None else ""),
        f"flash attention {'on' if flash else 'off'}" + (" (-fa auto)" if s.flash_attn == "auto" else ""),
        f"compute buffers sized for -ub {min(s.n_ubatch, s.n_batch)} tokens (llama.cpp's reserve graph)",
        f"CUDA context {s.cuda_context_bytes / MiB:.0f} MiB per GPU in use (--cuda-context to change)",
    ]
    if s.mmap and devices[CPU].model_bytes:
        notes.append("CPU weights are memory-mapped from the file (CPU_Mapped); with --no-mmap they are copied")
    repackable = {"Q4_0", "Q4_K", "IQ4_NL", "Q8_0"}  # ggml-cpu's repack.cpp layouts (AVX2 / NEON builds)
    if any(t.ggml_type in repackable for t in on_cpu):
        notes.append("not counted: on CPUs with AVX2 or NEON llama.cpp may copy CPU-resident Q4_0/Q4_K/IQ4_NL/Q8_0 "
                     "matrices into a CPU_REPACK buffer beside the mapped file (their bytes again, in RAM)")
    if s.images and not projector_bytes:
        notes.append("images: no mmproj file in the repo, so no projector was counted")
    elif s.images:
        where = used_gpus[0].device if used_gpus else CPU
        notes.append(f"images: the mmproj projector's weights ({projector_bytes / MiB:.2f} MiB) on {where}; not "
                     "counted: its compute buffer for encoding the images")
    return LlamaCppEstimate(model=m, settings=s, n_gpu_layers=ngl,
                            devices=[devices[gpu_name(i)] for i in range(s.gpus)] + [devices[CPU]],
                            kv_cells=s.cells, kv_cells_swa=swa, flash_attn=flash, assumptions=notes)
