"""A torch module made functional over the stacked parameters of M members, and the snapshot statistics.

Shared by :class:`fpkit.torch.TorchEnsemble` and :class:`fpkit.torch.Recorder`. Parameters of all members
live in dicts ``{name: tensor (M, *shape)}`` (``torch.func.stack_module_state``); every computation is one
``torch.func.vmap`` over members, never a Python loop over them. The flat order of the P entries is the
module's ``named_parameters()`` order, each parameter row-major (for an ``nn.Sequential`` of bias-free
``nn.Linear`` layers this is the numba trainer's order W1, W2, ...).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call, grad, grad_and_value, jvp, vmap
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._pytree import tree_flatten, tree_leaves, tree_map

from ..errors import ConfigError
from ..solvers.lanczos import lanczos_max

CHUNK_BYTES = 1 << 28
"""Default memory budget (bytes) of one chunk of per-sample gradients of all members (``chunk_size``)."""


@dataclass
class _Layout:
    """Names, shapes and flat offsets of a module's parameters (the ``arch`` the ensemble writer uses)."""

    names: tuple
    shapes: tuple
    offsets: tuple
    P: int

    @classmethod
    def of(cls, params: dict) -> _Layout:
        """From stacked parameters ``{name: (M, *shape)}``."""
        names, shapes, offsets, off = [], [], [], 0
        for name, p in params.items():
            names.append(name)
            shapes.append(tuple(int(s) for s in p.shape[1:]))
            offsets.append(off)
            off += math.prod(shapes[-1])
        return cls(tuple(names), tuple(shapes), tuple(offsets), off)

    def views(self, flat: np.ndarray) -> dict:
        """(..., P) -> {name: (..., *shape)} (views where numpy can reshape without copying; the ensemble
        writer's in-memory store reads the arch through this, as ``fpkit.ensemble.spec._Arch.views``)."""
        out = {}
        for name, shape, off in zip(self.names, self.shapes, self.offsets):
            size = math.prod(shape)
            out[name] = flat[..., off : off + size].reshape(flat.shape[:-1] + shape)
        return out

    def split(self, flat: np.ndarray) -> dict:
        """(..., P) -> {name: (..., *shape)} (copies)."""
        return {name: v.copy() for name, v in self.views(flat).items()}

    def flatten(self, tensors: dict) -> torch.Tensor:
        """{name: (M, *shape)} -> (M, P)."""
        return torch.cat([tensors[n].reshape(tensors[n].shape[0], -1) for n in self.names], dim=1)

    def unflatten(self, flat: torch.Tensor) -> dict:
        """(M, P) -> {name: (M, *shape)} (views)."""
        return {n: flat[:, o : o + math.prod(s)].reshape((flat.shape[0], *s))
                for n, s, o in zip(self.names, self.shapes, self.offsets)}  # fmt: skip


def as_device(device) -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:1", a torch.device) as a torch.device, checked before any work: an
    unknown name, or CUDA asked of a torch without a usable GPU, is a ConfigError naming ``device``."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"`device` must be a torch device such as 'cpu' or 'cuda', got {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"`device` = {device!r}: torch.cuda.is_available() is False here (a CPU build of torch, or "
                          "no GPU); use device='cpu'")  # fmt: skip
    return dev


def as_data(data, dtype: torch.dtype, device) -> tuple:
    """``data`` -> (x, y, y_given) tensors on ``device``: x (n, ...) or (x, y) or a ``fpkit.data`` Dataset.

    Floating arrays take ``dtype``; integer targets (class labels) keep theirs. Without targets y is x
    (an autoencoder's target is its input)."""
    from ..data import Dataset

    if isinstance(data, Dataset):
        if data.online:
            raise ConfigError("`data`: online data sets are not supported by fpkit.torch; draw a fixed sample")
        x, y = data.x, data.y
    elif isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ConfigError(f"`data` must be x, (x, y) or a fpkit.data Dataset; got a sequence of {len(data)}")
        x, y = data
    else:
        x, y = data, None

    def tensor(a, name):
        t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
        if t.ndim < 1 or t.shape[0] < 2:
            raise ConfigError(f"`data` {name} must be an array with at least 2 samples along axis 0, got "
                              f"shape {tuple(t.shape)}")  # fmt: skip
        if t.is_floating_point():
            t = t.to(dtype)
            if not torch.isfinite(t).all():
                raise ConfigError(f"`data` {name} holds non-finite values")
        return t.to(device)

    X = tensor(x, "x")
    if y is None:
        return X, X, False
    Y = tensor(y, "y")
    if Y.shape[0] != X.shape[0]:
        raise ConfigError(f"`data`: x has {X.shape[0]} samples but y has {Y.shape[0]}")
    return X, Y, True


def _layout_key(a):
    """What a captured graph depends on: a tensor's shape, strides, dtype, device; other leaves themselves."""
    if isinstance(a, torch.Tensor):
        return (tuple(a.shape), a.stride(), a.dtype, a.device, a.requires_grad)
    return a if isinstance(a, (int, float, bool, str, type(None))) else repr(a)


class Captured:
    """``fn`` (a ``torch.func`` transform of the model and loss) replayed as a captured graph of aten ops.

    Under ``vmap(grad(...))`` every op of a small model passes functorch's batching and autograd layers; for
    the digits autoencoder 64-32-8-32-64 at M = 256 that dispatch was ~15 % of a training step. The graph is
    captured once per input layout (shapes, strides, dtypes, devices) by ``make_fx`` on fake tensors and then
    runs the same aten kernels in the same order, so its results are the eager ones bit for bit; the first
    call checks exactly that and otherwise keeps ``fn``. Also kept eager: a model whose ops need tensor values
    while they are recorded (fake tensors have none, so the capture fails) and a graph that would write into
    an input. What is not seen is Python state outside the inputs: a module whose ops change
    with such state during training must be run with ``capture=False``.
    """

    def __init__(self, fn, enabled: bool = True):
        self.fn, self.enabled = fn, enabled
        self.graphs: dict = {}  # layout key -> graph module, or None (eager)

    def __call__(self, *args):
        if not self.enabled:
            return self.fn(*args)
        leaves, spec = tree_flatten(args)
        key = (str(spec), tuple(_layout_key(a) for a in leaves))
        if key not in self.graphs:
            self.graphs[key], out = self._capture(args)
            return out
        gm = self.graphs[key]
        return self.fn(*args) if gm is None else gm(*args)

    def _capture(self, args) -> tuple:
        out = self.fn(*args)  # the eager result: returned, and the reference the graph must reproduce
        if any(isinstance(a, torch.Tensor) and a.device.type == "meta" for a in tree_leaves(args)):
            return None, out  # no values to check the graph against
        # shells of the same layout, each its own storage (an input passed twice, as x and y of an
        # autoencoder, must not be traced as one node)
        shells = tree_map(lambda a: torch.empty_strided(a.shape, a.stride(), dtype=a.dtype, device=a.device)
                          if isinstance(a, torch.Tensor) else a, args)  # fmt: skip
        try:
            # through *args: functorch's wrappers expose the signature of the loss method, self included
            gm = make_fx(lambda *a: self.fn(*a), tracing_mode="fake")(*shells)
        except Exception:  # value-dependent ops, or an op without a fake-tensor rule: stay eager
            return None, out
        for node in gm.graph.nodes:
            target = node.target
            if isinstance(target, torch._ops.OpOverload) and target._schema.is_mutable:
                return None, out
        with torch.no_grad():
            again = gm(*args)
        a, b = tree_leaves(out), tree_leaves(again)
        same = len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b))
        return (gm if same else None), out


def compiled(fn):
    """``torch.compile`` (inductor) of ``fn``, the training gradient, for ``TorchEnsemble(compile=True)``.

    Fuses the elementwise ops around the matmuls into C++ loops: ~25 % less CPU per gradient than the captured
    graph on the digits autoencoder at M = 256 (scripts/bench_torch_bridge.py --compile), after a compile of
    10-60 s per input shape. Fused ops round differently: trajectories then agree with the eager ones to
    rounding (checked against the numba trainer to 1e-9), not bit for bit. Needs a C++ compiler (checked)."""
    import shutil

    if not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++")):
        raise ConfigError("`compile` = True needs a C++ compiler for torch.compile's CPU code (g++, c++ or "
                          "clang++, or $CXX); none was found on PATH")  # fmt: skip
    return torch.compile(fn, dynamic=False)


class Functional:
    """``base`` (a module, used for its structure only) with per-member parameters, data and a loss.

    ``loss_fn(output, target)`` must be the mean over the batch of a per-sample loss (checked on two
    samples); statistics evaluate it on single samples (batches of one) for per-sample gradients.
    """

    def __init__(self, base: torch.nn.Module, loss_fn, X: torch.Tensor, Y: torch.Tensor, buffers: dict,
                 chunk_size: int | None, capture: bool = True, compile: bool = False):  # fmt: skip
        if not callable(loss_fn):
            raise ConfigError(f"`loss_fn` must be callable as loss_fn(output, target), got {loss_fn!r}")
        self.base, self.loss_fn, self.X, self.Y, self.buffers = base, loss_fn, X, Y, buffers
        self.n = int(X.shape[0])
        self.chunk_size = chunk_size
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ConfigError(f"`chunk_size` must be a positive int (samples per chunk), got {chunk_size!r}")
        self.chunk_members = None  # members that size the whole-ensemble chunks (a shard's: the ensemble's M)
        self.hvp_mode = "forward"  # "reverse" once forward-over-reverse is refused by an op (_hvp_one)
        self.capture, self.compile = bool(capture), bool(compile)
        self._transforms()

    def _transforms(self) -> None:
        # the training step's gradients run as captured graphs (Captured) or compiled; the statistics eager
        batch = vmap(grad(self.batch_loss), in_dims=(0, 0, 0, 0))
        full = vmap(grad(self.batch_loss), in_dims=(0, 0, None, None))
        if getattr(self, "compile", False):
            self._batch_grad, self._full_grad = compiled(batch), compiled(full)
        else:
            self._batch_grad, self._full_grad = Captured(batch, self.capture), Captured(full, self.capture)
        per_sample = vmap(grad_and_value(self.sample_loss), in_dims=(None, None, 0, 0))
        self._per_sample = vmap(per_sample, in_dims=(0, 0, None, None))
        self._hvp = vmap(self._hvp_one, in_dims=(0, 0, 0, None, None))

    _TRANSFORMS = ("_batch_grad", "_full_grad", "_per_sample", "_hvp")

    def __getstate__(self) -> dict:  # the vmapped closures are rebuilt, not pickled (Dask shards)
        return {k: v for k, v in self.__dict__.items() if k not in self._TRANSFORMS}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._transforms()

    # ------------------------------------------------------------------------------------------- losses
    def batch_loss(self, params, buffers, x, y):
        """Loss of one member on a batch x (B, ...), targets y (B, ...)."""
        return self.loss_fn(functional_call(self.base, (params, buffers), (x,)), y)

    def sample_loss(self, params, buffers, x, y):
        """Loss of one member on one sample (a batch of one)."""
        return self.batch_loss(params, buffers, x[None], y[None])

    def check_loss(self, params: dict) -> None:
        """The loss of two samples must be the mean of their single-sample losses (member 0)."""
        p0 = {k: v[0] for k, v in params.items()}
        b0 = {k: v[0] for k, v in self.buffers.items()}
        with torch.no_grad():
            both = self.batch_loss(p0, b0, self.X[:2], self.Y[:2])
            one = [self.sample_loss(p0, b0, self.X[i], self.Y[i]) for i in range(2)]
        if not isinstance(both, torch.Tensor) or both.ndim != 0:
            raise ConfigError("`loss_fn(output, target)` must return a scalar tensor (the batch's mean loss)")
        mean = 0.5 * (one[0] + one[1])
        if not torch.isclose(both, mean, rtol=1e-5, atol=1e-12 * float(abs(mean)) + 1e-30):
            raise ConfigError(
                f"`loss_fn` must be the mean over the batch of a per-sample loss: on two samples it gave "
                f"{float(both):.6g}, the mean of their single-sample losses is {float(mean):.6g} (use "
                "reduction='mean' over the batch, e.g. lambda out, y: 0.5 * ((out - y)**2).sum(-1).mean())"
            )

    # ---------------------------------------------------------------------------------------- gradients
    def batch_gradient(self, params: dict, xb: torch.Tensor | None, yb: torch.Tensor | None) -> dict:
        """Minibatch-mean gradient of every member: xb (M, B, ...) per-member batches, or None (full batch)."""
        if xb is None:
            return self._full_grad(params, self.buffers, self.X, self.Y)
        return self._batch_grad(params, self.buffers, xb, yb)

    def _chunks(self, M: int, P: int, itemsize: int):
        c = self.chunk_size or max(1, CHUNK_BYTES // max(1, 3 * M * P * itemsize))
        for a in range(0, self.n, c):
            yield a, min(self.n, a + c)

    def _hvp_one(self, params, buffers, v, x, y):
        def g(p):
            return grad(self.batch_loss)(p, buffers, x, y)

        if self.hvp_mode == "forward":
            return jvp(g, (params,), (v,))[1]

        def g_dot_v(p):  # reverse-over-reverse: the same exact H·v, for ops without forward-mode support
            gp = g(p)
            return sum((gp[k] * v[k]).sum() for k in gp)

        return grad(g_dot_v)(params)

    def hess_vec(self, params: dict, v: dict, buffers: dict, chunk_members: int | None = None) -> dict:
        """Exact H·v of the full-batch data loss per member (forward-over-reverse: ``jvp`` of ``grad``),
        summed over chunks of samples weighted by their share of the data (chunks sized for
        ``chunk_members`` members, default those of ``params``)."""
        M = next(iter(params.values())).shape[0]
        P = sum(p[0].numel() for p in params.values())
        out = None
        for a, b in self._chunks(chunk_members or M, P, next(iter(params.values())).element_size()):
            try:
                hv = self._hvp(params, buffers, v, self.X[a:b], self.Y[a:b])
            except RuntimeError as exc:
                # torch's mse_loss (nn.MSELoss) has no forward-over-reverse derivative ("ZeroTensors are
                # immutable", torch 2.13): fall back to reverse-over-reverse for good
                if self.hvp_mode != "forward" or "ZeroTensor" not in str(exc):
                    raise
                self.hvp_mode = "reverse"
                hv = self._hvp(params, buffers, v, self.X[a:b], self.Y[a:b])
            w = (b - a) / self.n
            out = ({k: w * t for k, t in hv.items()} if out is None
                   else {k: out[k] + w * t for k, t in hv.items()})  # fmt: skip
        return out

    # --------------------------------------------------------------------------------------- statistics
    def statistics(self, layout: _Layout, params: dict, *, var_factor: float, weight_decay: float,
                   probes: int, lanczos_steps: int, probe_seed: int) -> dict:  # fmt: skip
        """The numba trainer's snapshot statistics at ``params`` (see ``fpkit.ensemble``), as numpy arrays:
        ``grad``, ``grad_var``, ``hess_grad`` (P, M), ``loss`` (M,), ``lam_max`` (probes,).

        grad = g + wd·θ with g the mean per-sample data gradient; grad_var = (mean of g_i² − g²)⁺ ×
        ``var_factor`` (1/B iid, (n−B)/(B(n−1)) distinct/epochs, 0 full); hess_grad = H·grad + wd·grad by
        exact forward-over-reverse products; lam_max by Lanczos (``fpkit.solvers.lanczos``) from the start
        vector ``np.random.default_rng(probe_seed).standard_normal((P, probes))``, as the numba trainer.
        """
        M = next(iter(params.values())).shape[0]
        P = layout.P
        params = {k: v.detach() for k, v in params.items()}
        gsum = {k: torch.zeros_like(v) for k, v in params.items()}
        gsq = {k: torch.zeros_like(v) for k, v in params.items()}
        lsum = None
        cm = self.chunk_members or M  # a shard sums over the chunks of the whole ensemble: the same bits
        with torch.no_grad():
            for a, b in self._chunks(cm, P, next(iter(params.values())).element_size()):
                g, val = self._per_sample(params, self.buffers, self.X[a:b], self.Y[a:b])
                for k in gsum:
                    gsum[k] += g[k].sum(dim=1)
                    gsq[k] += (g[k] * g[k]).sum(dim=1)
                lsum = val.sum(dim=1) if lsum is None else lsum + val.sum(dim=1)
        n = self.n
        g = {k: gsum[k] / n for k in gsum}
        var = {k: torch.clamp(gsq[k] / n - g[k] * g[k], min=0.0) * var_factor for k in g}
        full = {k: g[k] + weight_decay * params[k] for k in g}
        hg = self.hess_vec(params, full, self.buffers, chunk_members=cm)
        hg = {k: hg[k] + weight_decay * full[k] for k in hg}

        def flat(d):
            return layout.flatten(d).T.detach().cpu().numpy().astype(np.float64)

        pr = {k: v[:probes] for k, v in params.items()}
        pb = {k: v[:probes] for k, v in self.buffers.items()}
        dtype, device = next(iter(params.values())).dtype, next(iter(params.values())).device

        def matvec(V):  # V (P, probes) numpy -> H V + wd V
            vt = layout.unflatten(torch.as_tensor(V.T.copy(), dtype=dtype, device=device))
            hv = self.hess_vec(pr, vt, pb)
            return flat({k: hv[k] + weight_decay * vt[k] for k in hv})

        v0 = np.random.default_rng(probe_seed).standard_normal((P, probes))
        lam = lanczos_max(matvec, v0, lanczos_steps) if probes else np.empty(0)  # a shard without the probes
        return {"grad": flat(full), "grad_var": flat(var), "hess_grad": flat(hg),
                "loss": (lsum / n).detach().cpu().numpy().astype(np.float64), "lam_max": lam}  # fmt: skip


def var_factor(sampling: str, n: int, batch_size: int) -> float:
    """Variance of the minibatch-mean gradient per unit per-sample variance: 1/B (iid), (n − B)/(B(n − 1))
    (distinct, epochs), 0 (full)."""
    if sampling == "full":
        return 0.0
    if sampling == "iid":
        return 1.0 / batch_size
    return (n - batch_size) / (batch_size * (n - 1.0)) if n > 1 else 0.0
