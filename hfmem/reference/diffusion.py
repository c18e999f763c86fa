"""Published, measured GPU memory of diffusion pipelines (reference data only, no estimates).

Each entry is one number somebody printed after running a diffusers pipeline, copied with its
settings, the quantity measured and a verbatim quote, so that an estimate can later be compared like
with like (same model, same memory mode, same quantity).

Units: diffusers' docs print ``torch.cuda.max_memory_allocated() / 1024**3`` (or
``max_memory_reserved``) and label the result "GB"; those values are GiB and are converted with
2**30. The derekl35/diffusers-quantization-benchmarks CSV (the data behind the "Exploring
Quantization Backends in Diffusers" blog) reproduces the torchao doc's 31.447 for the BF16 load, so
its "GB" is read as GiB too. Where a source states neither the quantity nor the divisor, the value
is read as GiB and ``unit_note`` says so; ``stated`` keeps the text as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GIB = 2**30

_DIFFUSERS_GIT = "huggingface/diffusers"
_BENCH_CSV = (
    "https://huggingface.co/datasets/derekl35/diffusers-quantization-benchmarks/blob/main/"
    "diffusers_quantization_benchmark.csv (data of https://huggingface.co/blog/diffusers-quantization)"
)
_BENCH_HEADER = (
    "Library,Precision,CPU Offload,Memory After Loading (GB),Peak Memory GB,Inference Time (Seconds)"
)
_BENCH_SETTINGS = {"dtype": "bfloat16", "pipeline": "FluxPipeline"}
_BENCH_NOTE = (
    "CSV column 'Peak Memory GB' / 'Memory After Loading (GB)'; the torch call is not named in the "
    "CSV; its BF16 load value 31.447 equals the torchao doc's max_memory_reserved()/1024**3, so read "
    "as GiB (x 2**30)"
)


@dataclass(frozen=True)
class PipelineMeasurement:
    """One published memory measurement of a diffusion pipeline run."""

    model: str
    quantity: str  # "max_memory_allocated" | "max_memory_reserved" | "device_used"
    value_bytes: int
    stated: str
    settings: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    gpu: str | None = None
    source: str = ""
    quote: str = ""
    unit_note: str = ""


def _gib(value: float) -> int:
    return round(value * GIB)


def _bench(precision: str, offload: bool, column: str, value: str, row: str, quant: dict) -> PipelineMeasurement:
    settings = dict(_BENCH_SETTINGS)
    settings.update(quant)
    settings["memory_mode"] = "enable_model_cpu_offload" if offload else "none"
    settings["measured_at"] = "after loading" if column == "load" else "peak of the pipeline call"
    return PipelineMeasurement(
        model="black-forest-labs/FLUX.1-dev",
        quantity="device_used",
        value_bytes=_gib(float(value)),
        stated=f"{value} ({'Memory After Loading (GB)' if column == 'load' else 'Peak Memory GB'})",
        settings=settings,
        versions={},
        gpu="NVIDIA H100 (blog: 'Benchmarked on Flux.1-dev on H100' per its summary; not in the CSV)",
        source=_BENCH_CSV,
        quote=f"{_BENCH_HEADER} / {row}",
        unit_note=_BENCH_NOTE,
    )


PIPELINE_MEASUREMENTS: tuple[PipelineMeasurement, ...] = (
    PipelineMeasurement(
        model="stabilityai/stable-diffusion-xl-base-1.0",
        quantity="max_memory_allocated",
        value_bytes=_gib(10.47),
        stated="Max memory reserved: 10.47 GB",
        settings={
            "pipeline": "AutoPipelineForText2Image",
            "dtype": "float16",
            "device_map": "cuda",
            "memory_mode": "none",
            "height": "default (1024)",
            "width": "default (1024)",
            "num_inference_steps": "default (50)",
            "guidance_scale": "default (5.0, so CFG batch 2)",
            "num_images_per_prompt": 1,
        },
        source=f"{_DIFFUSERS_GIT} docs/source/en/using-diffusers/loading.md (commit 58eb52c0803e, 'Reuse a pipeline')",
        quote=(
            'image = pipeline_sdxl(prompt).images[0]\nprint(f"Max memory reserved: '
            '{torch.cuda.max_memory_allocated() / 1024**3:.2f} GB")\n# Max memory reserved: 10.47 GB'
        ),
        unit_note="label says 'reserved' but the call is max_memory_allocated(); divided by 1024**3, so GiB",
    ),
    PipelineMeasurement(
        model="black-forest-labs/FLUX.1-dev",
        quantity="max_memory_reserved",
        value_bytes=_gib(31.447),
        stated="Without quantization: ~31.447 GB",
        settings={"dtype": "bfloat16", "memory_mode": "none", "measured_at": "after pipe.to('cuda'), before the call"},
        source=f"{_DIFFUSERS_GIT} docs/source/en/quantization/torchao.md at commit cd991d1e1a64 (removed in 64a5187d96f9)",
        quote=(
            '# Without quantization: ~31.447 GB\n# With quantization: ~20.40 GB\nprint(f"Pipeline memory usage: '
            '{torch.cuda.max_memory_reserved() / 1024**3:.3f} GB")'
        ),
        unit_note="max_memory_reserved()/1024**3, so GiB",
    ),
    PipelineMeasurement(
        model="black-forest-labs/FLUX.1-dev",
        quantity="max_memory_reserved",
        value_bytes=_gib(20.40),
        stated="With quantization: ~20.40 GB",
        settings={
            "dtype": "bfloat16",
            "memory_mode": "none",
            "quantization": {"transformer": "torchao int8wo (TorchAoConfig('int8wo'))"},
            "measured_at": "after pipe.to('cuda'), before the call",
        },
        source=f"{_DIFFUSERS_GIT} docs/source/en/quantization/torchao.md at commit cd991d1e1a64",
        quote='quantization_config = TorchAoConfig("int8wo") ... # With quantization: ~20.40 GB',
        unit_note="max_memory_reserved()/1024**3, so GiB",
    ),
    PipelineMeasurement(
        model="SG161222/Realistic_Vision_V6.0_B1_noVAE",
        quantity="max_memory_allocated",
        value_bytes=_gib(4.406213283538818),
        stated="Max memory allocated: 4.406213283538818 GB",
        settings={
            "pipeline": "StableDiffusionPipeline (SD1.5 architecture) + IP-Adapter ip-adapter_sd15.bin",
            "dtype": "float16",
            "memory_mode": "none",
            "num_inference_steps": 50,
            "guidance_scale": "default (7.5, with negative_prompt)",
            "height": "default (512)",
            "width": "default (512)",
        },
        source=f"{_DIFFUSERS_GIT} docs/source/en/using-diffusers/loading.md at commit 7635d3d37fa4 (removed in 2c4ee10b7736)",
        quote=(
            'return bytes / 1024 / 1024 / 1024\nprint(f"Max memory allocated: '
            '{bytes_to_giga_bytes(torch.cuda.max_memory_allocated())} GB")\n"Max memory allocated: 4.406213283538818 GB"'
        ),
        unit_note="bytes/1024/1024/1024, so GiB",
    ),
    PipelineMeasurement(
        model="SG161222/Realistic_Vision_V6.0_B1_noVAE + guoyww/animatediff-motion-adapter-v1-5-2",
        quantity="max_memory_allocated",
        value_bytes=_gib(15.178664207458496),
        stated="Max memory allocated: 15.178664207458496 GB",
        settings={"pipeline": "AnimateDiffPipeline.from_pipe(StableDiffusionPipeline)", "dtype": "float16", "memory_mode": "none"},
        source=f"{_DIFFUSERS_GIT} docs/source/en/using-diffusers/loading.md at commit 7635d3d37fa4",
        quote=(
            "The [`AnimateDiffPipeline`] is more memory-intensive and consumes 15GB of memory ... "
            '"Max memory allocated: 15.178664207458496 GB"'
        ),
        unit_note="bytes/1024/1024/1024, so GiB",
    ),
    PipelineMeasurement(
        model="Qwen/Qwen-Image",
        quantity="max_memory_allocated",
        value_bytes=_gib(14.93),
        stated="only uses 14.93GB of memory",
        settings={
            "dtype": "bfloat16",
            "device_map": "cuda",
            "memory_mode": "none",
            "quantization": {"transformer": "bitsandbytes nf4, bf16 compute", "text_encoder": "bitsandbytes nf4, bf16 compute"},
            "height": "default",
            "width": "default",
        },
        source=f"{_DIFFUSERS_GIT} docs/source/en/quicktour.md (commit 58eb52c0803e, 'Quantization')",
        quote="The example below quantizes the model to 4-bits and only uses 14.93GB of memory.",
        unit_note="the example prints max_memory_allocated()/1024**3, so read as GiB",
    ),
    PipelineMeasurement(
        model="Qwen/Qwen-Image",
        quantity="max_memory_allocated",
        value_bytes=_gib(12.54),
        stated="only requires ~12.54GB of memory",
        settings={
            "dtype": "bfloat16",
            "memory_mode": "enable_model_cpu_offload",
            "quantization": {"transformer": "bitsandbytes nf4, bf16 compute", "text_encoder": "bitsandbytes nf4, bf16 compute"},
        },
        source=f"{_DIFFUSERS_GIT} docs/source/en/quicktour.md (commit 58eb52c0803e, 'Memory usage')",
        quote="By combining quantization and offloading, the following example only requires ~12.54GB of memory.",
        unit_note="the example prints max_memory_allocated()/1024**3, so read as GiB",
    ),
    PipelineMeasurement(
        model="THUDM/CogVideoX-5b",
        quantity="device_used",
        value_bytes=_gib(14.79),
        stated="This utilized about 14.79 GB.",
        settings={
            "dtype": "bfloat16",
            "memory_mode": "group offload: transformer leaf_level use_stream=True; text_encoder block_level "
            "num_blocks_per_group=2; vae leaf_level",
            "num_inference_steps": 50,
            "guidance_scale": 6,
        },
        source=f"{_DIFFUSERS_GIT} docs/source/en/optimization/memory.md at commit 9a147b82f72e (PR #10503 'Module Group Offloading')",
        quote="video = pipe(prompt=prompt, guidance_scale=6, num_inference_steps=50).frames[0]\n"
        "# This utilized about 14.79 GB. It can be further reduced by using tiling and using leaf_level offloading throughout the pipeline.",
        unit_note="quantity and divisor not stated; read as GiB",
    ),
    PipelineMeasurement(
        model="THUDM/CogVideoX-5b",
        quantity="device_used",
        value_bytes=_gib(33),
        stated="~33GB",
        settings={"memory_mode": "none", "note": "docs table 'memory usage (disabled)'"},
        source=f"{_DIFFUSERS_GIT} docs/source/en/api/pipelines/cogvideox.md (commit 58eb52c0803e)",
        quote="| enable_sequential_cpu_offload | <4GB | ~33GB (very slow inference speed) |",
        unit_note="quantity and divisor not stated; read as GiB; the table does not say which CogVideoX checkpoint",
    ),
    PipelineMeasurement(
        model="THUDM/CogVideoX-5b",
        quantity="device_used",
        value_bytes=_gib(19),
        stated="19GB",
        settings={"memory_mode": "enable_model_cpu_offload"},
        source=f"{_DIFFUSERS_GIT} docs/source/en/api/pipelines/cogvideox.md (commit 58eb52c0803e)",
        quote="| enable_model_cpu_offload | 19GB | 33GB |",
        unit_note="quantity and divisor not stated; read as GiB; checkpoint not named in the table",
    ),
    PipelineMeasurement(
        model="THUDM/CogVideoX-5b",
        quantity="device_used",
        value_bytes=_gib(11),
        stated="11GB (with enable_model_cpu_offload)",
        settings={"memory_mode": "enable_model_cpu_offload", "vae": "enable_tiling"},
        source=f"{_DIFFUSERS_GIT} docs/source/en/api/pipelines/cogvideox.md (commit 58eb52c0803e)",
        quote="| enable_tiling | 11GB (with enable_model_cpu_offload) | --- |",
        unit_note="quantity and divisor not stated; read as GiB; checkpoint not named in the table",
    ),
    _bench("BF16", False, "load", "31.447", "Diffusers,BF16,False,31.447,36.166,12", {}),
    _bench("BF16", False, "peak", "36.166", "Diffusers,BF16,False,31.447,36.166,12", {}),
    _bench("BF16", True, "peak", "23.271", "Diffusers,BF16,True,0.000,23.271,20", {}),
    _bench("4-bit", False, "peak", "17.281", "bitsandbytes,4-bit,False,12.584,17.281,12",
           {"quantization": {"transformer_and_text_encoder_2": "bitsandbytes 4-bit (the blog's BnB 4-bit run)"}}),
    _bench("4-bit", True, "peak", "12.383", "bitsandbytes,4-bit,True,12.383,12.383,17",
           {"quantization": {"transformer_and_text_encoder_2": "bitsandbytes 4-bit (the blog's BnB 4-bit run)"}}),
    _bench("8-bit", False, "peak", "24.432", "bitsandbytes,8-bit,False,19.273,24.432,27",
           {"quantization": {"transformer_and_text_encoder_2": "bitsandbytes 8-bit"}}),
    _bench("int8_weight_only", False, "peak", "21.482", "torchao,int8_weight_only,False,17.020,21.482,15",
           {"quantization": {"components": "torchao int8_weight_only"}}),
    _bench("Q4_1", True, "peak", "9.164", "GGUF,Q4_1,True,0.000,9.164,28",
           {"quantization": {"transformer": "GGUF Q4_1"}}),
    _bench("Q8_0", False, "peak", "25.973", "GGUF,Q8_0,False,21.502,25.973,15",
           {"quantization": {"transformer": "GGUF Q8_0"}}),
    _bench("FP8 (e4m3)", False, "peak", "28.451", "Diffusers,FP8 (e4m3),False,23.682,28.451,13",
           {"quantization": {"transformer": "layerwise casting, storage float8_e4m3fn"}}),
)
