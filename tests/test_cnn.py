"""The seed note's CNN questions (issue 13, item 6) for ResNet-50, answered by hfmem and checked against a hand
enumeration of the architecture written here.

The seed note (shared/seed/, "LLM 参数分析" and "输入输出") states: a Conv2d(Cin, Cout, K) holds Cin·Cout·K·K
parameters (no bias), a BatchNorm(N) 2N, feature maps grow with the batch, and nn.ReLU(inplace=True) saves
memory. The enumeration below is ResNet-50 as He et al. 2015 (arXiv:1512.03385, table 1) and transformers'
modeling_resnet.py build it for microsoft/resnet-50's config (depths [3, 4, 6, 3], hidden_sizes
[256 .. 2048], layer_type bottleneck, downsample_in_first_stage false): stem conv 7×7/2 3→64 + BN + ReLU +
maxpool 3×3/2; per bottleneck 1×1 reduce, 3×3 (stride 2 in the first block of stages 2-4), 1×1 expand ×4,
every conv without bias and followed by BN; a 1×1 projection shortcut conv + BN in each stage's first block;
ReLU after the first two convs and after the residual add; global average pool; fc 2048→1000 with bias.
Its total, 25,557,032, is torchvision's published ``ResNet50_Weights.IMAGENET1K_V1`` ``num_params``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from typer.testing import CliRunner

from hfmem import api
from hfmem.api import Options
from hfmem.cli import app, route_argv

FOLDER = str(Path(__file__).parent / "data" / "hub-configs" / "microsoft" / "resnet-50")
TORCHVISION_RESNET50_PARAMS = 25_557_032  # torchvision ResNet50_Weights.IMAGENET1K_V1.meta["num_params"]
IMAGE_PX = 224
FP32_BYTES = 4
INT64_BYTES = 8
CUDA_BLOCK_BYTES = 512  # c10/cuda/CUDACachingAllocator.cpp kMinBlockSize: every allocation is rounded up to it
FC_IN, FC_OUT = 2048, 1000


# -- the hand enumeration ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvBN:
    """One Conv2d (no bias, padding K // 2 as transformers' ResNetConvLayer; 0 for the 1×1 shortcut, the
    same thing) followed by BatchNorm2d(cout); ``relu``: a ReLU follows the BN directly."""

    name: str
    cin: int
    cout: int
    k: int
    stride: int
    in_px: int
    relu: bool

    @property
    def out_px(self) -> int:
        return (self.in_px + 2 * (self.k // 2) - self.k) // self.stride + 1

    @property
    def conv_params(self) -> int:
        return self.cin * self.cout * self.k * self.k  # the seed's Cin × Cout × K × K

    @property
    def out_elems(self) -> int:  # per sample
        return self.cout * self.out_px ** 2


@dataclass(frozen=True)
class Block:
    """A bottleneck: reduce, 3×3, expand, optional projection shortcut, ReLU after the add."""

    convs: tuple[ConvBN, ...]
    shortcut: ConvBN | None

    @property
    def out(self) -> ConvBN:
        return self.convs[-1]


def resnet50(image_px: int = IMAGE_PX) -> tuple[ConvBN, int, list[list[Block]]]:
    """(stem conv, maxpool output side, stages of blocks) of ResNet-50 at ``image_px`` pixels."""
    stem = ConvBN("stem", 3, 64, 7, 2, image_px, relu=True)
    px = (stem.out_px + 2 * 1 - 3) // 2 + 1  # MaxPool2d(kernel 3, stride 2, padding 1)
    pooled_px, cin, stages = px, 64, []
    for s, (depth, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        blocks = []
        for b in range(depth):
            stride = 2 if s > 0 and b == 0 else 1  # downsample_in_first_stage false; 3×3 carries the stride
            reduce = ConvBN(f"s{s}b{b}.reduce", cin, width, 1, 1, px, relu=True)
            mid = ConvBN(f"s{s}b{b}.3x3", width, width, 3, stride, px, relu=True)
            expand = ConvBN(f"s{s}b{b}.expand", width, 4 * width, 1, 1, mid.out_px, relu=False)
            shortcut = ConvBN(f"s{s}b{b}.shortcut", cin, 4 * width, 1, stride, px, relu=False) if b == 0 else None
            blocks.append(Block((reduce, mid, expand), shortcut))
            cin, px = 4 * width, expand.out_px
        stages.append(blocks)
    return stem, pooled_px, stages


def all_convs(image_px: int = IMAGE_PX) -> list[ConvBN]:
    stem, _, stages = resnet50(image_px)
    convs = [stem]
    for blocks in stages:
        for blk in blocks:
            convs += [*blk.convs, *([blk.shortcut] if blk.shortcut else [])]
    return convs


def relu_elems(image_px: int = IMAGE_PX) -> list[int]:
    """Per-sample sizes of every ReLU output: after each conv with ``relu``, and after each residual add."""
    _, _, stages = resnet50(image_px)
    return [c.out_elems for c in all_convs(image_px) if c.relu] + \
        [blk.out.out_elems for blocks in stages for blk in blocks]


def hand_params() -> dict[str, int]:
    convs = all_convs()
    bn_channels = sum(c.cout for c in convs)
    return {
        "conv": sum(c.conv_params for c in convs),
        "bn": 2 * bn_channels,  # the seed's 2N: weight (gamma) and bias (beta)
        "fc": FC_IN * FC_OUT + FC_OUT,
        # running_mean + running_var (N fp32 each) and one int64 num_batches_tracked per BatchNorm2d
        "bn_buffer_bytes": 2 * bn_channels * FP32_BYTES + len(convs) * INT64_BYTES,
        "bn_layers": len(convs),
    }


def round_block(nbytes: int) -> int:
    return -(-nbytes // CUDA_BLOCK_BYTES) * CUDA_BLOCK_BYTES


def saved_after_forward_bytes(batch: int) -> int:
    """What one training forward (loss included) leaves allocated for backward at ``batch``, by what each op's
    autograd formula saves (torch/csrc/autograd/derivatives.yaml):

    * conv: its input and weight: the input is the previous op's output (or pixel_values, live before), weight
      is a parameter: no new storage;
    * BatchNorm (training): its input (the conv output, cout·px² per sample) and two per-channel fp32 stats
      (save_mean, save_invstd: batch-independent);
    * ReLU (``relu``/``threshold_backward``): its output;
    * a BN output is consumed by the ReLU (or by the residual add, which saves nothing) and freed;
    * maxpool: its input (the stem ReLU output, already kept) and the int64 indices of its output; its output
      is kept by the next convs;
    * global average pool (``mean``): shapes only; its [2048] output is kept by the fc's addmm;
    * cross-entropy: log_softmax keeps its [1000] output (the logits are freed), nll_loss a scalar
      total_weight; plus the scalar loss itself.

    Each storage is rounded up to the CUDA allocator's 512-byte block, as the simulator counts them.
    """
    stem, pooled_px, _ = resnet50()
    per_sample_fp32 = [c.out_elems for c in all_convs()] + relu_elems()
    per_sample_fp32 += [64 * pooled_px ** 2, FC_IN, FC_OUT]  # maxpool output, pooled features, log-probs
    scaled = [round_block(batch * n * FP32_BYTES) for n in per_sample_fp32]
    scaled.append(round_block(batch * 64 * pooled_px ** 2 * INT64_BYTES))  # maxpool indices
    constant = [round_block(c.cout * FP32_BYTES) for c in all_convs() for _ in range(2)]  # BN save_mean/invstd
    constant += [round_block(FP32_BYTES)] * 2  # nll_loss total_weight, the loss
    return sum(scaled) + sum(constant)


# -- hfmem's answers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inventory():
    return api.analyze(FOLDER, Options(offline=True)).inventory


@pytest.fixture(scope="module")
def cli_doc():
    result = CliRunner().invoke(app, route_argv([FOLDER, "--offline", "--format", "json"]))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["models"][0]


def test_hand_enumeration_is_resnet50():
    h = hand_params()
    assert h["bn_layers"] == 53  # 1 stem + 16 blocks × 3 + 4 shortcuts
    assert h["conv"] == 23_454_912 and h["bn"] == 53_120 and h["fc"] == 2_049_000
    assert h["conv"] + h["bn"] + h["fc"] == TORCHVISION_RESNET50_PARAMS
    assert h["bn_buffer_bytes"] == 212_904


def test_inventory_counts_conv_bn_and_fc(inventory):
    h = hand_params()
    assert inventory.num_params == TORCHVISION_RESNET50_PARAMS
    assert inventory.persistent_buffer_bytes == h["bn_buffer_bytes"]
    assert inventory.non_persistent_buffer_bytes == 0
    # the census groups tensors by name and shape: transformers names the conv weight "convolution.weight" and
    # the BN's "normalization.weight"/"normalization.bias" in ResNetConvLayer and ResNetShortCut
    census = inventory.tensors
    conv = sum(t["params"] for t in census if t["name"] == "convolution.weight")
    bn = sum(t["params"] for t in census if t["name"].startswith("normalization."))
    linear = [t for t in census if t["role"] == "linear"]
    assert conv == h["conv"]
    assert bn == h["bn"]
    assert sum(t["count"] for t in census if t["name"] == "normalization.weight") == h["bn_layers"]
    assert [(t["in_features"], t["out_features"], t["bias"], t["params"]) for t in linear] == \
        [(FC_IN, FC_OUT, FC_OUT, h["fc"])]
    assert conv + bn + sum(t["params"] for t in linear) == inventory.num_params
    # every conv shape of the enumeration, with its multiplicity
    hand_shapes: dict[tuple, int] = {}
    for c in all_convs():
        key = (c.cout, c.cin, c.k, c.k)
        hand_shapes[key] = hand_shapes.get(key, 0) + 1
    assert {tuple(t["shape"]): t["count"] for t in census if t["name"] == "convolution.weight"} == hand_shapes


def test_cli_json_matches_hand_counts(cli_doc, inventory):
    h = hand_params()
    stem = all_convs()[0]
    assert cli_doc["parameters"] == TORCHVISION_RESNET50_PARAMS == inventory.num_params
    assert cli_doc["buffers_bytes"] == h["bn_buffer_bytes"]
    modules = cli_doc["modules"]
    assert modules["classifier.1"] == {"parameters": h["fc"], "buffers_bytes": 0}
    # the stem: one conv + one BN (two 64-float stats buffers + num_batches_tracked)
    assert modules["resnet.embedder"] == {"parameters": stem.conv_params + 2 * 64,
                                          "buffers_bytes": 2 * 64 * FP32_BYTES + INT64_BYTES}
    assert modules["resnet"]["parameters"] == h["conv"] + h["bn"]
    assert modules["resnet"]["buffers_bytes"] == h["bn_buffer_bytes"]
    assert {t["role"]: t["parameters"] for t in cli_doc["towers"]} == \
        {"vision_encoder": h["conv"] + h["bn"], "head": h["fc"]}


def test_stage_shapes_match_transformers_forward():
    """Each stage's output at 224×224, by the enumeration and by transformers' own ResNet run on the meta
    device (shapes only), and the per-sample sizes of every conv, BN and ReLU output."""
    torch = pytest.importorskip("torch")
    from transformers import ResNetConfig, ResNetForImageClassification

    stem, pooled_px, stages = resnet50()
    hand = [(blocks[-1].out.cout, blocks[-1].out.out_px) for blocks in stages]
    assert hand == [(256, 56), (512, 28), (1024, 14), (2048, 7)]

    config = json.loads((Path(FOLDER) / "config.json").read_text())
    cfg = ResNetConfig(**{k: v for k, v in config.items() if k not in ("architectures", "transformers_version")})
    with torch.device("meta"):
        model = ResNetForImageClassification(cfg)
    model.train()
    elems: dict[str, int] = {}

    def count(module, _inputs, output):
        kind = type(module).__name__
        elems[kind] = elems.get(kind, 0) + output[0].numel()  # one sample

    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU)):
            m.register_forward_hook(count)
    out = model(torch.empty(1, 3, IMAGE_PX, IMAGE_PX, device="meta"), output_hidden_states=True)
    assert [(h.shape[1], h.shape[2]) for h in out.hidden_states[1:]] == hand
    assert tuple(out.hidden_states[0].shape) == (1, 64, pooled_px, pooled_px)
    conv_elems = sum(c.out_elems for c in all_convs())
    assert elems == {"Conv2d": conv_elems, "BatchNorm2d": conv_elems, "ReLU": sum(relu_elems())}
    # the seed's "feature maps": every conv, BN and ReLU output of one sample in fp32: 121.4 MiB
    assert (2 * conv_elems + sum(relu_elems())) * FP32_BYTES == 127_346_688


def test_simulated_saved_activations_match_hand_model():
    """hfmem's simulation of a training step (fp32, plain SGD) against ``saved_after_forward_bytes``.

    Tolerance: none. The simulator counts whole storages rounded to the 512-byte CUDA block, and the hand
    model lists every storage autograd keeps after the forward, rounded the same way; no term is estimated,
    so the two must agree to the byte (a change in what torch's autograd saves for BN, ReLU or maxpool would
    show here). The per-sample growth (batch 2 minus batch 1) drops the batch-independent BN stats."""
    pytest.importorskip("torch")
    forward = {}
    for batch in (1, 2):
        rep = api.simulate_model(FOLDER, "train", Options(offline=True), batch=batch, dtype="float32",
                                 optimizer="sgd")
        phase = rep.result.phase("forward", 2)  # the steady state; SGD without momentum keeps no state
        forward[batch] = phase.live_bytes_end - phase.live_bytes_start
        assert forward[batch] == saved_after_forward_bytes(batch)
    per_sample = forward[2] - forward[1]
    assert per_sample == saved_after_forward_bytes(2) - saved_after_forward_bytes(1) == 85_311_488
    # unrounded: Σ (conv outputs + ReLU outputs + maxpool output + 2048 + 1000) fp32 + maxpool's int64 indices
    stem, pooled_px, _ = resnet50()
    exact = (sum(c.out_elems for c in all_convs()) + sum(relu_elems()) + 64 * pooled_px ** 2 + FC_IN + FC_OUT) \
        * FP32_BYTES + 64 * pooled_px ** 2 * INT64_BYTES
    assert exact == 85_311_392 and per_sample - exact == round_block(FC_OUT * FP32_BYTES) - FC_OUT * FP32_BYTES
