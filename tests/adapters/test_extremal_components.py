"""Each piece of the extremal optimiser against TorchRay's, in float64 on the CPU."""
from __future__ import annotations

import pytest
import torch
from torchray_oracle import ep, float64_torchray, tiny_cnn, torchray_run

from adapters.extremal.area import AreaConstraint
from adapters.extremal.explain import extremal_masks
from adapters.extremal.mask_generator import MaskGenerator, MaskGeometry
from adapters.extremal.optimiser import ProjectedSGD
from adapters.extremal.pyramid import apply_mask, perturbation_pyramid
from adapters.extremal.rewards import variant_reward
from adapters.extremal.settings import ExtremalSettings
from adapters.extremal.backend import Backend

F64 = torch.float64
SIZES = [(224, 224), (224, 299), (112, 112)]


def _params(geometry: MaskGeometry, rows: int, seed: int) -> torch.Tensor:
    """Random parameters, plus the all-ones start (ties everywhere) and zero blocks (masks of exactly 0)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(rows, 1, *geometry.shape_in, generator=g, dtype=F64)
    p[0] = 1.0
    p[1, :, : geometry.shape_in[0] // 2] = 0.0
    return p


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_mask_generator_matches_torchray(size):
    height, width = size
    geometry = MaskGeometry(height, width)
    with float64_torchray() as oracle:
        reference = oracle.MaskGenerator((height, width), 7, 21)
    assert tuple(reference.shape_in) == geometry.shape_in
    assert tuple(reference.shape_out) == geometry.shape_out
    # The per-pixel weight table is the periodic phase table, exactly.
    table = geometry.kernel_weights()
    h_out, w_out = geometry.shape_out
    tiled = table.repeat(1, -(-h_out // 7), -(-w_out // 7))[:, :h_out, :w_out]
    assert torch.equal(tiled, reference.weight[0])

    params = _params(geometry, 3, seed=sum(size))
    ours = MaskGenerator(geometry, F64, "cpu", Backend("eager"))
    p_ref, p_ours = params.clone().requires_grad_(), params.clone().requires_grad_()
    cropped_ref, full_ref = reference.generate(p_ref)
    cropped, full = ours(p_ours)
    assert cropped.shape == (3, 1, height, width) and full.shape == (3, 1, h_out, w_out)
    assert (cropped - cropped_ref).abs().max() <= 1e-12
    assert (full - full_ref).abs().max() <= 1e-12
    assert full.min() == 0.0  # the zero block reaches the clamp's boundary, where gradients stop

    g = torch.Generator().manual_seed(7)
    weight_cropped = torch.randn(cropped.shape, generator=g, dtype=F64)
    weight_full = torch.randn(full.shape, generator=g, dtype=F64)
    (grad_ref,) = torch.autograd.grad((cropped_ref * weight_cropped).sum() + (full_ref * weight_full).sum(), p_ref)
    (grad,) = torch.autograd.grad((cropped * weight_cropped).sum() + (full * weight_full).sum(), p_ours)
    assert (grad - grad_ref).abs().max() <= 1e-10 * grad_ref.abs().max()


def test_mask_generator_keeps_no_candidate_tensors_for_backward():
    """What autograd holds for the generator's backward: parameters, mask and one normaliser per pixel."""
    geometry = MaskGeometry(224, 224)
    rows = 2
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    for backend in ("eager",):
        generator = MaskGenerator(geometry, torch.float32, "cpu", Backend(backend))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            generator(torch.rand(rows, 1, *geometry.shape_in).requires_grad_())
        per_row = sum(saved.values()) / rows
        # TorchRay keeps 81 candidates and their softmax per pixel of the 260 x 260 mask (~47 MB a row).
        candidates_bytes = 2 * geometry.candidates * geometry.padded_pixels * 4
        assert per_row <= candidates_bytes / 10


def test_pyramid_matches_torchray_per_image():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 112, 112, generator=g, dtype=F64)
    pyramid = perturbation_pyramid(x)
    assert pyramid.shape == (2, 8, 3, 112, 112)
    for i in range(2):
        with float64_torchray() as oracle:
            reference = oracle.Perturbation(x[i:i + 1], num_levels=8).pyramid
        assert (pyramid[i] - reference).abs().max() <= 1e-12
    assert torch.equal(pyramid[:, -1], x)  # the last level is the image itself


def test_mask_application_and_gradient_match_torchray():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 3, 112, 112, generator=g, dtype=F64)
    pyramid = perturbation_pyramid(x)
    with float64_torchray() as oracle:
        perturbation = oracle.Perturbation(x, num_levels=8)
    mask = torch.rand(3, 1, 112, 112, generator=g, dtype=F64)
    mask[0, :, :40] = 0.0
    mask[0, :, 40:80] = 1.0
    for k in range(8):  # every exact level k/7, where the floor switches levels
        mask[1, :, 14 * k:14 * (k + 1)] = k / 7
    m_ref, m_ours = mask.clone().requires_grad_(), mask.clone().requires_grad_()
    z_ref = perturbation.apply(m_ref)
    z = apply_mask(pyramid, torch.zeros(3, dtype=torch.long), m_ours)
    assert (z - z_ref).abs().max() <= 1e-12
    weight = torch.randn(z.shape, generator=g, dtype=F64)
    (grad_ref,) = torch.autograd.grad((z_ref * weight).sum(), m_ref)
    (grad,) = torch.autograd.grad((z * weight).sum(), m_ours)
    assert (grad - grad_ref).abs().max() <= 1e-12
    assert grad[0, :, 40:80].abs().max() == 0  # m = 1: both levels are the image


def test_mask_application_reads_each_rows_own_image():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 3, 28, 28, generator=g, dtype=F64)
    pyramid = perturbation_pyramid(x)
    mask = torch.rand(4, 1, 28, 28, generator=g, dtype=F64)
    image = torch.tensor([2, 0, 2, 1])
    z = apply_mask(pyramid, image, mask)
    for r in range(4):
        alone = apply_mask(pyramid[image[r]:image[r] + 1], torch.zeros(1, dtype=torch.long), mask[r:r + 1])
        assert torch.equal(z[r:r + 1], alone)


@pytest.mark.parametrize("areas", [[0.05, 0.2], [0.018, 0.1, 0.5]])
def test_area_penalty_and_gradient_match_the_sorted_reference(areas):
    geometry = MaskGeometry(112, 112)
    generator = MaskGenerator(geometry, F64, "cpu", Backend("eager"))
    n = geometry.padded_pixels
    # The all-ones start has many exactly tied values: ties must be ranked as torch.sort ranks them.
    params = _params(geometry, len(areas), seed=11)
    p_ref, p_ours = params.clone().requires_grad_(), params.clone().requires_grad_()
    _, full_ref = generator(p_ref)
    _, full = generator(p_ours)
    reference = torch.ones(len(areas), n, dtype=F64)
    for i, a in enumerate(areas):
        reference[i, :int(n * (1 - a))] = 0  # TorchRay's reference vector
    expected = ((full_ref.reshape(len(areas), -1).sort(dim=1)[0] - reference) ** 2).mean(dim=1)
    residual = AreaConstraint(areas, n, F64, "cpu", ties="sort").residual(full)
    assert (residual - expected).abs().max() <= 1e-14
    (grad_ref,) = torch.autograd.grad(expected.sum(), p_ref)
    (grad,) = torch.autograd.grad(residual.sum(), p_ours)
    assert (grad - grad_ref).abs().max() <= 1e-14
    assert grad.abs().max() > 0


def test_area_penalty_by_selection_equals_the_sort_where_nothing_ties():
    areas = [0.05, 0.2, 0.05, 0.5]
    g = torch.Generator().manual_seed(12)
    masks = torch.rand(4, 1, 30, 40, generator=g, dtype=F64)
    by_sort, by_select = masks.clone().requires_grad_(), masks.clone().requires_grad_()
    sort = AreaConstraint(areas, 1200, F64, "cpu", ties="sort").residual(by_sort)
    select = AreaConstraint(areas, 1200, F64, "cpu", ties="select").residual(by_select)
    assert (sort - select).abs().max() <= 1e-14
    (g_sort,) = torch.autograd.grad(sort.sum(), by_sort)
    (g_select,) = torch.autograd.grad(select.sum(), by_select)
    assert (g_sort - g_select).abs().max() <= 1e-15


def test_area_penalty_by_selection_breaks_ties_by_index():
    # 10 pixels: 4 below, 4 tied at 0.5, 2 above; area 0.4 -> the top holds 4: the 2 above and the
    # last 2 tied ones by index.
    values = torch.tensor([[0.1, 0.5, 0.2, 0.5, 0.9, 0.5, 0.3, 0.8, 0.5, 0.0]], dtype=F64)
    constraint = AreaConstraint([0.4], 10, F64, "cpu", ties="select")
    top = constraint._top(values)
    assert top.tolist() == [[False, False, False, False, True, True, False, True, True, False]]
    mask = values.reshape(1, 1, 1, 10).clone().requires_grad_()
    residual = constraint.residual(mask)
    expected = ((values.sort(dim=1)[0] - constraint.reference) ** 2).mean()  # ties do not change the value
    assert (residual - expected).abs().max() <= 1e-15


@pytest.mark.parametrize("variant", ["preserve", "delete", "dual"])
def test_logit_reward_matches_torchray(variant):
    g = torch.Generator().manual_seed(6)
    rows = 3
    logits = torch.randn(rows * (2 if variant == "dual" else 1), 5, generator=g, dtype=F64)
    target = 2
    expected = ep_reward("simple_reward", logits, target, variant, rows)
    ours = variant_reward(logits, torch.full((rows,), target), "logit", variant)
    assert (ours - expected).abs().max() <= 1e-15


@pytest.mark.parametrize("variant", ["preserve", "delete", "dual"])
def test_contrastive_reward_matches_torchray_through_energy_and_gradient(variant):
    g = torch.Generator().manual_seed(8)
    rows = 3
    logits = torch.randn(rows * (2 if variant == "dual" else 1), 5, generator=g, dtype=F64)
    target = 1
    l_ref, l_ours = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    energy_ref = ep_reward("contrastive_reward", l_ref, target, variant, rows).sum()
    ours = variant_reward(l_ours, torch.full((rows,), target), "contrastive", variant)
    assert (ours.sum() - energy_ref).abs() <= 1e-14
    (grad_ref,) = torch.autograd.grad(energy_ref, l_ref)
    (grad,) = torch.autograd.grad(ours.sum(), l_ours)
    assert (grad - grad_ref).abs().max() <= 1e-14
    # And per row it is what it claims: target minus the best other class (TorchRay's rows are mixed).
    scores = logits[:rows]
    others = torch.cat([scores[:, :target], scores[:, target + 1:]], dim=1).amax(dim=1)
    direct = scores[:, target] - others
    if variant == "delete":
        direct = -direct
    if variant == "dual":
        deleted = logits[rows:]
        direct = direct - (deleted[:, target] - torch.cat([deleted[:, :target], deleted[:, target + 1:]], 1).amax(1))
    assert (ours - direct).abs().max() <= 1e-15


def ep_reward(name: str, logits: torch.Tensor, target: int, variant: str, rows: int) -> torch.Tensor:
    """TorchRay's reward as its optimiser reduces it: reshape(areas, -1).mean(1)."""
    with float64_torchray() as oracle:
        return getattr(oracle, name)(logits, target, variant=variant).reshape(rows, -1).mean(dim=1)


def test_projected_sgd_step_matches_torch_sgd_with_clamp():
    g = torch.Generator().manual_seed(9)
    start = torch.rand(2, 1, 4, 4, generator=g, dtype=F64)
    reference = start.clone().requires_grad_()
    sgd = torch.optim.SGD([reference], lr=0.01, momentum=0.9, dampening=0.9)
    ours = start.clone()
    step = ProjectedSGD(0.01, 0.9, 0.9)
    for _ in range(4):
        grad = torch.randn(start.shape, generator=g, dtype=F64) * 60  # large enough to hit both bounds
        reference.grad = grad.clone()
        sgd.step()
        reference.data = reference.data.clamp(0, 1)
        step.step(ours, grad)
        assert torch.equal(ours, reference.detach())
    assert (ours == 0).any() and (ours == 1).any()


def test_penalty_schedule_grows_like_the_reference():
    weights = ExtremalSettings(iterations=800).penalty_weights()
    running = 300.0
    for t in (0, 1, 2, 799):
        assert weights[t] == pytest.approx(300 * 1.0035 ** t, rel=1e-12)
    for t in range(800):
        assert weights[t] == running  # grown by repeated multiplication, bit for bit
        running *= 1.0035
    fast = ExtremalSettings(iterations=800).fast(200).penalty_weights()
    assert len(fast) == 200
    assert fast[-1] == pytest.approx(300 * 1.0035 ** (199 * 4), rel=1e-12)  # the 800-step schedule, compressed


@pytest.mark.parametrize("iterations", [1, 2])
def test_first_steps_match_torchray_including_flip_parity(iterations):
    """Iteration 0 is mirrored (even), iteration 1 is not: one and two full steps equal TorchRay's."""
    model = tiny_cnn()
    g = torch.Generator().manual_seed(10)
    x = torch.randn(1, 3, 112, 112, generator=g, dtype=F64)
    params, masks_ref, _ = torchray_run(model, x, 3, [0.05, 0.2], iterations + 1)
    seen = {}
    torchray = {"backend": "eager", "geometry": "torchray"}
    result = extremal_masks(model, x, 3, [0.05, 0.2], ExtremalSettings(iterations=iterations, **torchray),
                            chunk_rows=2, callback=lambda t, rows, p: seen.__setitem__(t, p.clone()))
    assert (seen[iterations - 1] - params[iterations]).abs().max() <= 1e-12
    # Without the flip, the first step differs: the parity is really exercised.
    unflipped = {}
    extremal_masks(model, x, 3, [0.05, 0.2], ExtremalSettings(iterations=1, flip=False, **torchray),
                   chunk_rows=2, callback=lambda t, rows, p: unflipped.__setitem__(t, p.clone()))
    assert (unflipped[0] - params[1]).abs().max() > 1e-9
    assert result.masks.shape == (1, 1, 2, 1, 112, 112)


def test_compiled_generator_matches_torchray_in_float32():
    """The fused backend (torch.compile) against TorchRay's float32 generator: values and gradients."""
    geometry = MaskGeometry(112, 112)
    params = _params(geometry, 2, seed=12).float()
    reference = ep.MaskGenerator((112, 112), 7, 21)
    ours = MaskGenerator(geometry, torch.float32, "cpu", Backend("compiled"))
    p_ref, p_ours = params.clone().requires_grad_(), params.clone().requires_grad_()
    cropped_ref, full_ref = reference.generate(p_ref)
    cropped, full = ours(p_ours)
    assert ours.backend.resolved == "compiled"
    assert (full - full_ref).abs().max() <= 2e-5
    assert (cropped - cropped_ref).abs().max() <= 2e-5
    weight = torch.randn(full.shape, generator=torch.Generator().manual_seed(13))
    (grad_ref,) = torch.autograd.grad((full_ref * weight).sum(), p_ref)
    (grad,) = torch.autograd.grad((full * weight).sum(), p_ours)
    assert (grad - grad_ref).abs().max() <= 2e-5 * grad_ref.abs().max()
