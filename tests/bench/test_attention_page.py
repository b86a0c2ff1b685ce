"""The attention page: ``python -m bench attention MODEL`` and the figure the runner writes per transformer."""
from __future__ import annotations

import json

import torch
import torchvision

from bench.cli import main
from bench.figures.attention import class_token_attention


def _tiny_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2,
                                                 hidden_dim=16, mlp_dim=32, num_classes=4)
    model.heads.head.reset_parameters()
    return model.eval()


def test_class_token_attention_is_each_layers_class_row_on_the_patch_grid():
    model = _tiny_vit()
    x = torch.randn(2, 3, 32, 32)
    per_head, rollout, names, predicted = class_token_attention(model, x)
    assert per_head.shape == (2, 3, 2, 4, 4) and rollout.shape == (2, 1, 32, 32) and len(names) == 3
    assert torch.equal(predicted, model(x).argmax(1))
    # By hand for the last layer: torch's own need_weights=True path on that layer's input.
    seen = {}
    block = model.encoder.layers[-1]
    handle = block.register_forward_pre_hook(lambda _m, args: seen.update(x=args[0]))
    model(x)
    handle.remove()
    h = block.ln_1(seen["x"])
    _, weights = block.self_attention(h, h, h, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(per_head[:, -1], weights[:, :, 0, 1:].reshape(2, 2, 4, 4), rtol=1e-5, atol=1e-6)
    # Each class-token row is a distribution over all tokens: the patches hold at most all of it.
    assert (per_head.flatten(3).sum(-1) <= 1 + 1e-5).all()


def test_attention_command_writes_the_figure_and_its_summary(tmp_path):
    out = tmp_path / "vit.png"
    assert main(["attention", "vit_slim", "--images", "2", "--device", "cpu", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["heads"] == 4 and summary["grid"] == [8, 8] and len(summary["layers"]) == 4
    assert len(summary["predicted"]) == 2


def test_attention_command_refuses_a_cnn_in_one_line(tmp_path, capsys):
    assert main(["attention", "small_cnn", "--device", "cpu", "--out", str(tmp_path / "x.png")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "no supported attention module" in error and error.count("\n") == 1
    assert not (tmp_path / "x.png").exists()
