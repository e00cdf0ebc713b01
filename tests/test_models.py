"""Every registered student: the interface, paper parameter counts, gradients, seeding."""

import pytest
import torch

from east_ray.errors import BadValueError
from east_ray.models import STUDENTS, build_student

# name → (classes, mel bins, frames at paper input size, options, parameters, stage maps)
PAPER = {
    "cp_resnet": (
        20,
        128,
        1000,
        {"rho": 7, "base_channels": 128},
        5_534_612,
        [(128, 8, 62), (256, 8, 62), (512, 8, 62)],
    ),
    "mobile_fcn": (
        50,
        96,
        1456,
        {"n_mels": 96},
        314_098,
        [(128, 4, 30), (256, 1, 15), (256, 1, 15)],
    ),
}
# Small settings for the gradient test (cp_resnet's width is an option).
SMALL = {"cp_resnet": ({"base_channels": 8}, 64, 160), "mobile_fcn": ({"n_mels": 96}, 96, 480)}


def test_registry_is_covered() -> None:
    assert set(PAPER) == set(STUDENTS) == set(SMALL)


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_paper_size_shapes_and_parameter_count(name: str) -> None:
    classes, mels, frames, options, n_params, maps = PAPER[name]
    model = build_student(name, classes, seed=0, **options)
    assert sum(p.numel() for p in model.parameters()) == n_params
    model.train()
    out = model(torch.randn(2, mels, frames))
    assert out.logits.shape == (2, classes)
    assert [tuple(m.shape[1:]) for m in out.stages] == maps
    assert [frames // s for s in model.time_strides] == [m[2] for m in maps]
    out.logits.sum().backward()  # forward/backward at paper input size on CPU


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_gradients_reach_every_parameter(name: str) -> None:
    options, mels, frames = SMALL[name]
    model = build_student(name, 3, seed=0, **options)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, mels, frames, generator=torch.Generator().manual_seed(0))
    # Fixup starts each block's second conv at zero, which blocks the gradient of the
    # first; one step opens the path, and then every parameter must receive a gradient.
    for _ in range(2):
        opt.zero_grad()
        out = model(x)
        loss = out.logits.square().mean() + sum(m.square().mean() for m in out.stages)
        loss.backward()
        opt.step()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert silent == []


@pytest.mark.parametrize("name", sorted(STUDENTS))
def test_same_seed_same_weights_without_global_state(name: str) -> None:
    options, _, _ = SMALL[name]
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build_student(name, 5, seed=7, **options)
    assert torch.equal(torch.random.get_rng_state(), before)  # global RNG untouched
    b = build_student(name, 5, seed=7, **options)
    c = build_student(name, 5, seed=8, **options)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_cp_resnet_fixup_init_does_not_depend_on_models_built_before() -> None:
    first = build_student("cp_resnet", 4, seed=3, base_channels=8).state_dict()
    for _ in range(3):
        build_student("cp_resnet", 4, base_channels=8)
    again = build_student("cp_resnet", 4, seed=3, base_channels=8).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    block_conv2 = [v for k, v in first.items() if k.endswith("conv2.weight")]
    assert len(block_conv2) == 12 and all(not w.any() for w in block_conv2)


def test_unknown_names_and_options_are_listed() -> None:
    with pytest.raises(KeyError, match="known students: cp_resnet, mobile_fcn"):
        build_student("resnet50", 10)
    with pytest.raises(BadValueError, match="unknown option.*depth.*accepted options: rho"):
        build_student("cp_resnet", 10, depth=26)
    with pytest.raises(ValueError, match="n_mels: got 64"):
        build_student("mobile_fcn", 10, n_mels=64)
