"""The training gradient of fpkit.torch as a captured graph (``fpkit.torch._functional.Captured``, issue 16).

The reference is the eager ``torch.func`` path (``capture=False``): the captured graph runs the same aten
kernels in the same order, so trajectories must be equal bit for bit, not merely close; and a model whose ops
change from call to call must be caught by the first call's check and stay eager. Skips without torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason='needs torch: pip install "fpkit[torch]"')

import fpkit.torch as ft  # noqa: E402

torch.set_num_threads(1)
rng = np.random.default_rng(5)
X, Y = rng.normal(size=(48, 6)), rng.normal(size=(48, 2))


def mlp():
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))


def mse(out, y):
    return 0.5 * ((out - y) ** 2).sum(-1).mean()


def trained(model, data, capture, **kw):
    ens = ft.TorchEnsemble(model, mse, data, capture=capture, members=12, lr=0.05, batch_size=4, seed=2,
                           steps=40, statistics=False, **kw)  # fmt: skip
    state = ens.initial_state()
    ens.advance(state, 40)
    return ens, state["theta"]


@pytest.mark.parametrize("kw", [{}, {"optimizer": "gd"}, {"momentum": 0.9, "weight_decay": 1e-3},
                                {"optimizer": "svag", "svag_l": 2}])  # fmt: skip
def test_captured_training_is_the_eager_training_bit_for_bit(kw):
    """Regression (x and y distinct inputs of the graph) with biases and ReLU, every optimiser path."""
    ens, theta = trained(mlp, (X, Y), True, **kw)
    graphs = list(ens.fn._full_grad.graphs.values() if kw.get("optimizer") == "gd"
                  else ens.fn._batch_grad.graphs.values())  # fmt: skip
    assert len(graphs) == 1 and isinstance(graphs[0], torch.fx.GraphModule)  # the graph ran, not a fallback
    _, eager = trained(mlp, (X, Y), False, **kw)
    assert np.array_equal(theta, eager)


class Alternating(torch.nn.Module):
    """Its sign flips at every gradient evaluation: Python state the graph cannot see (the documented
    ``capture=False`` case). Calls without autograd (the loss check) do not count."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += torch.is_grad_enabled()
        return self.lin(x) * (1.0 if self.calls % 2 else -1.0)


def test_a_model_whose_ops_change_between_calls_is_refused_by_the_first_call_check():
    ens, theta = trained(Alternating, (X, Y), True)
    # the eager call and the capture saw opposite signs: the graph disagreed with the eager result
    assert list(ens.fn._batch_grad.graphs.values()) == [None]
    assert ens.base.calls == 40 + 1  # every step ran the module eagerly (+ the one capture)


def test_compile_needs_a_cpp_compiler(monkeypatch):
    import shutil

    from fpkit.errors import ConfigError

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="`compile`.*C\\+\\+ compiler"):
        ft.TorchEnsemble(mlp, mse, (X, Y), compile=True, members=4, lr=0.05, batch_size=4, steps=2)


@pytest.mark.slow
@pytest.mark.parametrize("train", [{}, {"optimizer": "gd"}], ids=["sgd", "gd"])
def test_compiled_trajectories_equal_the_numba_trainers(train):
    """torch.compile fuses ops (other roundings): started from the numba trainer's weights with its seed, the
    tanh 8-3-3-8 autoencoder's weights still agree with the numba trainer's to 1e-9 relative after 1000
    steps (the acceptance bound of the eager bridge)."""
    from fpkit.ensemble import Ensemble

    common = dict(lr=0.05, batch_size=8, members=16, seed=3, steps=1000, snapshot_steps=[0, 1000],
                  statistics=False, **train)  # fmt: skip
    ens = Ensemble(d=8, k=3, activation="tanh", n=64, **common)
    theta = ens.initial_state()["theta"]
    init = {f"{2 * i}.weight": w for i, w in enumerate(ens.arch.split(theta.T).values())}

    def autoencoder():
        L = torch.nn.Linear
        return torch.nn.Sequential(L(8, 3, bias=False), torch.nn.Tanh(), L(3, 3, bias=False), torch.nn.Tanh(),
                                   L(3, 8, bias=False))  # fmt: skip

    te = ft.TorchEnsemble(autoencoder, mse, ens.dataset.x, init=init, compile=True, **common)
    a, b = ens.train(), te.train()
    for na, nb in zip(a.names, b.names):
        err = float(np.max(np.abs(b.weights[nb] - a.weights[na])) / np.max(np.abs(a.weights[na])))
        assert err < 1e-9, (na, err)
