"""Device selection of the torch bridge (issue 16 item 6). No GPU is lent here, so the CUDA path itself is not
run; these tests check that a device is parsed and refused clearly, and, on torch's "meta" device (tensors
with shapes and no data: any tensor the code made on another device would raise "Expected all tensors to be
on the same device"), that a training step, the full-batch and per-sample gradients and the exact H·v create
every tensor on the module's device. Skips without torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason='needs torch: pip install "fpkit[torch]"')

import fpkit.torch as ft  # noqa: E402
from fpkit.errors import ConfigError  # noqa: E402

torch.set_num_threads(1)
X = np.random.default_rng(0).normal(size=(32, 5))


def net():
    return torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.Tanh(), torch.nn.Linear(3, 5))


def mse(out, y):
    return 0.5 * ((out - y) ** 2).sum(-1).mean()


KW = dict(members=8, lr=0.05, batch_size=4, steps=10, snapshots=2, lanczos_steps=3, seed=1)


class Devices(torch.overrides.TorchFunctionMode):
    """Records the devices of the floating-point tensors every torch call of the block gets (the meta device
    does not refuse a CPU operand, so placement is checked here)."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}

        def visit(a):
            if isinstance(a, torch.Tensor) and a.is_floating_point() and a.ndim > 0:
                self.seen.add(a.device.type)
            elif isinstance(a, (list, tuple)):
                for b in a:
                    visit(b)
            elif isinstance(a, dict):
                for b in a.values():
                    visit(b)

        visit(args)
        visit(kwargs)
        return func(*args, **kwargs)


def test_device_is_checked_before_any_work():
    with pytest.raises(ConfigError, match="`device`"):
        ft.TorchEnsemble(net, mse, X, device="gpu0", **KW)
    with pytest.raises(ConfigError, match="`device`"):
        ft.Recorder(mse, X, lr=0.05, device=3.5)
    if not torch.cuda.is_available():  # the CPU build here: CUDA is refused by name, not deep inside torch
        with pytest.raises(ConfigError, match="cuda.is_available"):
            ft.TorchEnsemble(net, mse, X, device="cuda", **KW)
    ens = ft.TorchEnsemble(net, mse, X, device=torch.device("cpu"), **KW)
    assert ens.device == torch.device("cpu") and ens.fn.X.device.type == "cpu"


@pytest.mark.parametrize("optimizer", [{}, {"momentum": 0.5}, {"optimizer": "sgld", "temperature": 1e-3},
                                       {"optimizer": "svag", "svag_l": 2}, {"optimizer": "gd"}])  # fmt: skip
def test_training_step_stays_on_the_modules_device(optimizer):
    """The step code (minibatch indices, SGLD noise, momentum, SVAG's combination, the update) on "meta"."""
    ens = ft.TorchEnsemble(net, mse, X, **{**KW, **optimizer})
    state = ens.initial_state()
    meta = torch.device("meta")
    ens.device = meta
    ens.fn.X, ens.fn.Y = ens.fn.X.to(meta), ens.fn.Y.to(meta)
    params = {k: v.to(meta) for k, v in ens._to_torch.__func__(ens, state["theta"]).items()}
    vel = {k: torch.zeros_like(v) for k, v in params.items()} if "momentum" in optimizer else None
    with Devices() as devices:
        ens._steps(params, vel, state, 3)
    assert state["step"] == 3 and all(p.device == meta for p in params.values())
    assert devices.seen == {"meta"}


def test_statistics_kernels_stay_on_the_modules_device():
    ens = ft.TorchEnsemble(net, mse, X, **KW)
    meta = torch.device("meta")
    fn = ens.fn
    fn.X, fn.Y = fn.X.to(meta), fn.Y.to(meta)
    params = {k: v.to(meta) for k, v in ens._init_params.items()}
    with Devices() as devices:
        g = fn.batch_gradient(params, None, None)
        hv = fn.hess_vec(params, g, fn.buffers)
        per, val = fn._per_sample(params, fn.buffers, fn.X[:4], fn.Y[:4])
    assert devices.seen == {"meta"}
    for d in (g, hv, per):
        for k, t in d.items():
            assert t.device == meta and t.shape[0] == KW["members"], k
    assert val.shape == (KW["members"], 4)


def test_member_initialisation_leaves_the_callers_generators_alone(monkeypatch):
    """Members are seeded on torch's CPU generator only: torch.manual_seed would also have reseeded the
    caller's CUDA generators (fork_rng(devices=[]) does not restore them)."""
    torch.manual_seed(123)
    before = torch.get_rng_state()
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(seed))
    ens = ft.TorchEnsemble(net, mse, X, **KW)
    assert calls == [] and torch.equal(torch.get_rng_state(), before)
    # member m is what net() gives under the CPU generator seeded by member_seed(seed, m)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(ft.member_seed(KW["seed"], 5))
        ref = net().double()
    assert torch.equal(ens._init_params["0.weight"][5], ref[0].weight)


class Projected(torch.nn.Module):
    """A module with a floating buffer used as a matrix."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(5, 3)
        self.register_buffer("proj", torch.linspace(-1.0, 1.0, 15).reshape(3, 5))

    def forward(self, x):
        return torch.tanh(self.lin(x)) @ self.proj


def test_recorder_converts_floating_buffers_with_the_parameters():
    """float32 models recorded in float64: the buffer follows the parameters (it was left float32, and the
    matmul refused the mixed dtypes); the statistics equal those of the same models converted beforehand."""
    torch.manual_seed(0)
    models = [Projected().float() for _ in range(4)]
    rec32 = ft.Recorder(mse, X, lr=0.05, batch_size=4, lanczos_steps=3)
    rec32.snapshot(0, models)
    rec64 = ft.Recorder(mse, X, lr=0.05, batch_size=4, lanczos_steps=3)
    rec64.snapshot(0, [m.double() for m in models])
    a, b = rec32.run(), rec64.run()
    for field in ("grad", "grad_var", "hess_grad"):
        for name in getattr(b, field):
            assert np.array_equal(getattr(a, field)[name], getattr(b, field)[name]), (field, name)
