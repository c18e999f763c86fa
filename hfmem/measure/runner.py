"""Run a plan (``plan.py``) for real and record what the CUDA caching allocator reports per phase.

The model is the one hfmem.simulate builds (``hfmem.simulate.build``: the same class and attention
implementation) with random weights made directly on the device in the case's dtype (no download, no CPU
copy); the batch is the simulator's (``hfmem.simulate.inputs``, by the model's ``main_input_name``).
Training: ``iterations`` steps of ``grad_accum`` × (forward with labels, backward), then the optimizer step
and ``zero_grad(set_to_none=True)``; the output (and its logits) is dropped once the loss is taken, as
Trainer does. Inference: a prefill into a DynamicCache, then ``new_tokens`` one-token decode steps, under
``no_grad`` (hfmem.simulate.engine's own ``_prefill`` / ``_decode_step``).

Peak statistics are reset after the build (the peaks start from the built model, as the simulation's and
hfmem's estimates include the parameters) and after every phase; the overall peak is the maximum over the
phases. ``device="cpu"`` runs the same code path with every memory figure 0 (a smoke check without a GPU).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os

import torch

from ..errors import MeasureUnavailableError, SettingsError

IMPL_KWARGS = {"foreach": {"foreach": True}, "fused": {"fused": True}, "forloop": {"foreach": False}}
LR = 1e-5


class Memory:
    """The torch.cuda memory API a run reads; on the CPU every figure is 0."""

    def __init__(self, device: str):
        self.device = device
        self.cuda = device.startswith("cuda")

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def stat(self, name: str) -> int:
        return int(getattr(torch.cuda, name)()) if self.cuda else 0

    def reset(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def empty_cache(self):
        if self.cuda:
            torch.cuda.empty_cache()


def phase_stats(mem: Memory, phases: dict, name: str) -> None:
    """The peaks since the last call under ``name``, then reset them."""
    mem.sync()
    phases[name] = {"max_memory_allocated": mem.stat("max_memory_allocated"),
                    "max_memory_reserved": mem.stat("max_memory_reserved"),
                    "allocated_end": mem.stat("memory_allocated")}
    mem.reset()


def _need(module: str, what: str, pip: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MeasureUnavailableError(f"{what} needs {pip.split()[-1]}, which is not installed",
                                      hint=f"`{pip}`, then run hfmem measure again")


# -- building -------------------------------------------------------------------------------------------------
def build(plan: dict, config: dict, device: str):
    """The model on ``device`` with random weights, quantized / adapted / checkpointed as the plan says."""
    from ..simulate import build as sb

    attn = plan["attn"]
    if attn == "flash":
        _need("flash_attn", "--attn flash (flash_attention_2)", "pip install flash-attn")
    quant = plan.get("qlora") or plan.get("quant")
    if quant:
        _need("bitsandbytes", "QLoRA" if plan.get("qlora") else "bitsandbytes weights", "pip install bitsandbytes")
    torch.manual_seed(0)
    with torch.device(device):
        model = sb.build_model(config, dtype=sb.resolve_dtype(plan["weights_dtype"]),
                               attn="sdpa" if attn == "flash" else attn)
    if attn == "flash":
        model.set_attn_implementation("flash_attention_2")
    if plan["mode"] == "infer":
        if quant:
            quantize(model, quant, device)
        model.eval()
        return model
    model.train()
    if plan.get("qlora"):
        quantize(model, {"bits": 4, **plan["qlora"]}, device)
    if plan["grad_ckpt"] and not getattr(model, "supports_gradient_checkpointing", False):
        raise SettingsError("grad_ckpt: transformers does not support gradient checkpointing for this model",
                            setting="grad_ckpt")
    ckpt_kwargs = {"use_reentrant": bool(plan["reentrant"])}
    if plan.get("qlora") and plan["qlora"]["prepare_kbit"]:
        from peft import prepare_model_for_kbit_training

        # fp32 copies of the non-quantized parameters (norms, embeddings, LM head), input grads, checkpointing
        import inspect

        # peft 0.22 renamed gradient_checkpointing_kwargs to activation_checkpointing_kwargs (the old name
        # is deprecated); pass whichever this peft has
        name = ("activation_checkpointing_kwargs" if "activation_checkpointing_kwargs"
                in inspect.signature(prepare_model_for_kbit_training).parameters else "gradient_checkpointing_kwargs")
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=plan["grad_ckpt"],
                                                **{name: ckpt_kwargs})
    elif plan["grad_ckpt"]:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.x's name (see simulate.build)
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=ckpt_kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=ckpt_kwargs)
        if plan["lora"] and plan["reentrant"]:
            # reentrant checkpointing of a frozen base needs an input that requires grad (what PEFT's
            # prepare_model_for_kbit_training and Trainer do)
            model.enable_input_require_grads()
    if plan["lora"]:
        model = add_lora(model, plan["lora"])
        model.train()
    return model


def add_lora(model, lora: dict):
    from peft import LoraConfig, get_peft_model

    targets = lora["targets"]
    cfg = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], use_dora=lora["dora"],
                     target_modules=targets)
    fp32 = lora["adapter_dtype"] == "float32"
    model = get_peft_model(model, cfg, autocast_adapter_dtype=fp32)  # True: fp32 adapters (PEFT's default)
    if not fp32:
        dtype = getattr(torch, lora["adapter_dtype"])
        for name, p in model.named_parameters():
            if p.requires_grad and "lora_" in name:
                p.data = p.data.to(dtype)
    return model


def _output_embedding_names(model) -> set[str]:
    """The LM head stays unquantized, as transformers' ``get_keys_to_not_convert`` keeps it."""
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name for name, m in model.named_modules() if out is not None and m is out}


def quantize(model, quant: dict, device: str) -> None:
    """Replace every ``nn.Linear`` but the LM head by bitsandbytes' ``Linear4bit`` / ``Linear8bitLt``, as
    ``from_pretrained(quantization_config=BitsAndBytesConfig(...))`` does, quantizing the random weights on the
    way to the device (``Params4bit`` / ``Int8Params`` quantize when moved to CUDA)."""
    import bitsandbytes as bnb

    skip = _output_embedding_names(model)
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            full = f"{parent_name}.{name}" if parent_name else name
            if type(child) is not torch.nn.Linear or full in skip:
                continue
            weight = child.weight.data.to("cpu")
            if quant["bits"] == 4:
                storage = getattr(torch, quant.get("quant_storage", "uint8"))
                new = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                        compute_dtype=getattr(torch, quant["compute_dtype"]),
                                        compress_statistics=quant["double_quant"], quant_type=quant["quant_type"],
                                        quant_storage=storage, device="meta")
                new.weight = bnb.nn.Params4bit(weight, requires_grad=False, compress_statistics=quant["double_quant"],
                                               quant_type=quant["quant_type"], quant_storage=storage).to(device)
            else:
                new = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias=child.bias is not None,
                                          has_fp16_weights=False, threshold=6.0, device="meta")
                new.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False).to(device)
            if child.bias is not None:
                new.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, name, new)
            del child, weight
    if quant["bits"] == 4:
        model.is_loaded_in_4bit = True  # what PEFT reads to pick its bnb LoRA layers and kbit preparation
    else:
        model.is_loaded_in_8bit = True
    for p in model.parameters():
        p.requires_grad_(False)


# -- optimizers -----------------------------------------------------------------------------------------------
def make_optimizer(plan: dict, params: list):
    name = plan["optimizer"]
    if name in ("adamw-8bit", "paged-adamw-8bit"):
        _need("bitsandbytes", f"--optimizer {name}", "pip install bitsandbytes")
        import bitsandbytes as bnb

        cls = bnb.optim.PagedAdamW8bit if name.startswith("paged") else bnb.optim.AdamW8bit
        return cls(params, lr=LR)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=LR, **IMPL_KWARGS[plan["adamw_impl"]])
    from ..simulate.optim import make_optimizer as simulated  # SGD, Adafactor: built as the simulation builds them

    return simulated(name, "foreach", params)


# -- training -------------------------------------------------------------------------------------------------
def _batch(model, plan: dict, device: str, labels: bool):
    from ..simulate.inputs import InputSizes, build_inputs

    tokens = plan["seq"] if plan["mode"] == "train" else plan["context"]
    target = plan.get("target_seq")
    if target is None and plan["mode"] == "train" and getattr(model.config, "is_encoder_decoder", False):
        limit = getattr(model.config, "max_target_positions", None)
        target = min(tokens, int(limit)) if limit else tokens
    sizes = InputSizes(plan["batch"], tokens, target, plan.get("image_size"), plan.get("audio_seconds"))
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    with torch.device(device):
        batch = build_inputs(model, sizes, labels=labels, dtype=dtype)
    if batch.loss is not None:
        raise SettingsError("a CTC head's loss is not run by hfmem measure yet", setting="method")
    return batch


def _deepspeed(model, params, plan: dict):
    _need("deepspeed", "--zero (DeepSpeed ZeRO)", "pip install deepspeed")
    import deepspeed

    for key, value in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29517"), ("RANK", "0"), ("LOCAL_RANK", "0"),
                       ("WORLD_SIZE", "1")):
        os.environ.setdefault(key, value)  # one process, one GPU: DeepSpeed's own single-rank launch
    config = dict(plan["deepspeed"]["config"])
    if "optimizer" not in config and plan["optimizer"] == "adamw":
        config["optimizer"] = {"type": "AdamW", "params": {"lr": LR}}
    engine, optimizer, _, _ = deepspeed.initialize(model=model, model_parameters=params, config=config)
    return engine, optimizer


def train(model, plan: dict, mem: Memory, phases: dict) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise SettingsError("no trainable parameters", setting="method")
    batch = _batch(model, plan, mem.device, labels=True)
    amp = getattr(torch, plan["amp"]) if plan["amp"] else None
    engine = None
    if plan["deepspeed"]:
        engine, opt = _deepspeed(model, params, plan)
    elif plan["optimizer_in_backward"]:
        # torchtune's optimizer_in_bwd: one optimizer per parameter, stepped as soon as its gradient is complete
        per_param = {p: make_optimizer(plan, [p]) for p in params}

        def step(p):
            per_param[p].step()
            per_param[p].zero_grad(set_to_none=True)

        for p in params:
            p.register_post_accumulate_grad_hook(step)
        opt = None
    else:
        opt = make_optimizer(plan, params)
    scaler = torch.amp.GradScaler(mem.device) if plan["grad_scaler"] and engine is None else None
    phase_stats(mem, phases, "setup")
    for it in range(1, plan["iterations"] + 1):
        for k in range(1, plan["grad_accum"] + 1):
            # micro-batches of one step: forward@1.1, backward@1.1, forward@1.2, ... (plain forward@1 without)
            tag = f"{it}.{k}" if plan["grad_accum"] > 1 else f"{it}"
            autocast = torch.autocast(mem.device, dtype=amp) if amp is not None else contextlib.nullcontext()
            with autocast:
                loss = (engine or model)(**batch.tensors).loss
            phase_stats(mem, phases, f"forward@{tag}")
            if engine is not None:
                engine.backward(loss)
            elif scaler is not None:
                scaler.scale(loss).backward()
            else:
                loss.backward()
            del loss
            phase_stats(mem, phases, f"backward@{tag}")
        if engine is not None:
            engine.step()
        elif opt is not None:
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            opt.zero_grad(set_to_none=True)
        phase_stats(mem, phases, f"optimizer_step@{it}")


# -- inference ------------------------------------------------------------------------------------------------
def infer(model, plan: dict, mem: Memory, phases: dict) -> None:
    from ..simulate import engine

    prompt = _batch(model, plan, mem.device, labels=False)
    kind = engine._model_kind(model)
    state: dict = {}
    phase_stats(mem, phases, "setup")
    with torch.no_grad(), torch.device(mem.device):  # the start token of an encoder-decoder on the device
        if plan["logits"] == "all" and kind == "decoder":  # a plain forward: every position's logits
            out = model(**prompt.tensors, use_cache=True)
            state["cache"], state["next"] = engine._cache_of(out), engine._next_token(out)
            del out
        else:
            engine._prefill(model, prompt.tensors, kind, state)
        phase_stats(mem, phases, "prefill@1")
        if plan["new_tokens"] and kind != "encoder":
            for _ in range(plan["new_tokens"]):
                engine._decode_step(model, kind, state)
            phase_stats(mem, phases, "decode@1")


# -- one run --------------------------------------------------------------------------------------------------
def run(plan: dict, config: dict, *, device: str = "cuda", record: dict | None = None) -> dict:
    """Build and run ``plan`` on ``device``; fill ``record`` (status, phases, peaks, parameter counts).
    An out-of-memory error is recorded with the peaks reached (status "oom"); a ``SettingsError`` or
    ``MeasureUnavailableError`` is raised (nothing ran)."""
    rec = record if record is not None else {}
    mem = Memory(device)
    phases: dict = {}
    rec.update(status="error", phases=phases)
    try:
        model = build(plan, config, device)
        mem.sync()
        rec["model_class"] = type(model.get_base_model() if hasattr(model, "get_base_model") else model).__name__
        if hasattr(model, "get_nb_trainable_parameters"):  # PEFT's own count (adapters; all = base + adapters)
            trainable, total = model.get_nb_trainable_parameters()
        else:
            params = list(model.parameters())
            trainable = sum(p.numel() for p in params if p.requires_grad)
            total = sum(p.numel() for p in params)
        rec.update(trainable_parameters=int(trainable), all_parameters=int(total))
        rec["after_build"] = {"allocated": mem.stat("memory_allocated"), "reserved": mem.stat("memory_reserved")}
        mem.empty_cache()
        mem.reset()
        (train if plan["mode"] == "train" else infer)(model, plan, mem, phases)
        mem.sync()
        rec["status"] = "ok"
    except torch.OutOfMemoryError as exc:
        rec["status"], rec["reason"] = "oom", str(exc).strip().splitlines()[0][:300]
        phase_stats(mem, phases, "at_oom")
    except (SettingsError, MeasureUnavailableError):
        raise
    except Exception as exc:  # noqa: BLE001  (recorded: the report says what failed)
        text = str(exc).strip().splitlines()
        rec["status"], rec["reason"] = "error", f"{exc.__class__.__name__}: {text[0][:300] if text else ''}"
        with contextlib.suppress(Exception):  # a broken CUDA context
            phase_stats(mem, phases, "at_error")
    finally:
        rec["max_memory_allocated"] = max((p["max_memory_allocated"] for p in phases.values()), default=None)
        rec["max_memory_reserved"] = max((p["max_memory_reserved"] for p in phases.values()), default=None)
    return rec
