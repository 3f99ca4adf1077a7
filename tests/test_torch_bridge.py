"""fpkit.torch (TorchEnsemble, Recorder) against the numba trainer and exact references.

* At identical weights the snapshot statistics equal the numba trainer's (grad, grad_var, loss to 1e-10
  relative); H·∇L is exact, so it is also checked against a fourth-order central difference of the numba
  trainer's gradient kernel and against a reverse-over-reverse Hessian, and λmax against the full
  Hessian's spectrum.
* Started from the same weights with the same seed (hence the same minibatches and SGLD noise, drawn from the
  same per-member streams), trajectories equal the numba trainer's for every optimiser and sampling.
* 1-D linear regression: the stationary variance of SGD through the bridge equals the exact value.
* Recorder: a hand-written loop over M torch modules with torch.optim.SGD gives TorchEnsemble's run.
"""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="fpkit.torch needs the optional extra: pip install -e '.[torch]'")

import fpkit  # noqa: E402
import fpkit.torch as ft  # noqa: E402
from fpkit.ensemble import Ensemble, EnsembleRun  # noqa: E402
from fpkit.errors import ConfigError  # noqa: E402
from fpkit.validation import references as ref  # noqa: E402

torch.set_num_threads(1)
D, K, N, M = 8, 3, 64, 16


def autoencoder():
    """The numba trainer's tanh 8 → 3 → 3 → 8 autoencoder without biases (W_l (n_out, n_in))."""
    L = torch.nn.Linear
    return torch.nn.Sequential(L(D, K, bias=False), torch.nn.Tanh(), L(K, K, bias=False), torch.nn.Tanh(),
                               L(K, D, bias=False))  # fmt: skip


def half_sq(out, y):
    """The numba trainer's loss: ½‖out − y‖² per sample, mean over the batch."""
    return 0.5 * ((out - y) ** 2).sum(-1).mean()


def pair(**train):
    """A numba Ensemble and a TorchEnsemble with the same data, seed, training keys and initial weights."""
    common = dict(lr=0.05, batch_size=8, members=M, seed=3, **train)
    ens = Ensemble(d=D, k=K, activation="tanh", n=N, **common)
    theta = ens.initial_state()["theta"]
    init = {f"{2 * i}.weight": w for i, w in enumerate(ens.arch.split(theta.T).values())}
    return ens, ft.TorchEnsemble(autoencoder, half_sq, ens.dataset.x, init=init, **common), theta


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def test_import_fpkit_does_not_import_torch():
    code = "import sys, fpkit, fpkit.ensemble, fpkit.prediction; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------- statistics at θ
@pytest.mark.parametrize("train", [{}, {"sampling": "distinct", "weight_decay": 0.03}])
def test_statistics_equal_the_numba_trainers_at_identical_weights(train):
    ens, te, theta = pair(steps=10, **train)
    theta = theta + 0.3 * np.random.default_rng(1).standard_normal(theta.shape)  # away from the init scale
    a, b = ens.statistics(theta, probe_seed=7), te.statistics(theta, probe_seed=7)
    for key in ("grad", "grad_var", "loss"):
        assert rel(b[key], a[key]) < 1e-10, key
    # the numba trainer's own H·∇L (a forward difference, ~1e-7 relative, in its first version) ...
    assert rel(b["hess_grad"], a["hess_grad"]) < 1e-5
    # ... and, independently of it, a fourth-order central difference of numba's gradient kernel (error ~h⁴,
    # ~ε/h; measured 2e-11)
    wd = ens.config["train"]["weight_decay"]
    v = a["grad"]
    h = 1e-3 / np.sqrt((v * v).sum(axis=0))
    gk = [ens.full_gradient(theta + c * h * v)[0] + wd * (theta + c * h * v) for c in (-2, -1, 1, 2)]
    fd = (8 * (gk[2] - gk[1]) - (gk[3] - gk[0])) / (12 * h)
    assert rel(b["hess_grad"], fd) < 1e-9
    assert rel(b["lam_max"], a["lam_max"]) < 1e-5


def test_exact_products_against_the_full_hessian_and_chunking():
    """H·∇L against the reverse-over-reverse Hessian (torch.func.hessian) of member 0; λmax with as many
    Lanczos steps as parameters against the Hessian's largest eigenvalue; chunks of 7 samples change nothing."""
    _, te, theta = pair(steps=10, lanczos_steps=72, probes=2)
    s = te.statistics(theta, probe_seed=0)
    chunked = ft.TorchEnsemble(autoencoder, half_sq, te.fn.X.numpy(), init=te._init_params, chunk_size=7,
                               lr=0.05, batch_size=8, members=M, seed=3, lanczos_steps=72, probes=2)  # fmt: skip
    c = chunked.statistics(theta, probe_seed=0)
    for key in ("grad", "grad_var", "hess_grad", "loss", "lam_max"):
        assert rel(c[key], s[key]) < 1e-12, key
    X = te.fn.X
    for m in range(2):
        w = [torch.tensor(theta[o : o + 24 if i != 1 else o + 9, m]) for i, o in enumerate((0, 24, 33))]
        shapes = [(K, D), (K, K), (D, K)]

        def loss(flat):
            W1, W2, W3 = (flat[a:b].reshape(sh) for (a, b), sh in zip([(0, 24), (24, 33), (33, 57)], shapes))
            return half_sq(torch.tanh(torch.tanh(X @ W1.T) @ W2.T) @ W3.T, X)

        flat = torch.cat(w)
        H = torch.func.hessian(loss)(flat).numpy()
        g = torch.func.grad(loss)(flat).numpy()
        assert rel(s["hess_grad"][:57, m], H @ g) < 1e-12
        assert s["lam_max"][m] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-10)
    assert te.layout.P == 57


# --------------------------------------------------------------------------------------- trajectories
@pytest.mark.parametrize("train", [
    {}, {"momentum": 0.5, "weight_decay": 0.01}, {"optimizer": "sgld", "temperature": 1e-3},
    {"optimizer": "svag", "svag_l": 2}, {"sampling": "distinct"}, {"sampling": "epochs"}, {"optimizer": "gd"},
], ids=["sgd", "momentum-wd", "sgld", "svag", "distinct", "epochs", "gd"])  # fmt: skip
def test_trajectories_equal_the_numba_trainers(train):
    """Same weights, same seed: the same minibatches (and SGLD noise) from the same streams; after 300 steps
    the weights agree to 1e-9 relative (measured ~1e-14 after 1000 steps)."""
    steps = 150 if train.get("optimizer") == "svag" else 300
    ens, te, _ = pair(steps=steps, snapshot_steps=[0, steps // 3, steps], statistics=False, **train)
    a, b = ens.train(), te.train()
    np.testing.assert_array_equal(a.step, b.step)
    assert b.names == ("0.weight", "2.weight", "4.weight")
    for na, nb in zip(a.names, b.names):
        assert rel(b.weights[nb], a.weights[na]) < 1e-9, (na, rel(b.weights[nb], a.weights[na]))


def test_linear_regression_stationary_variance_is_exact_sgds():
    """1-D regression y = w* x + ε through the bridge (nn.Linear(1, 1), ½(wx − y)²), iid batches of B: the
    variance of w about the least-squares ŵ, averaged over 20 snapshots ≥ 10 relaxation times apart,
    equals exact SGD's ηr²/(2B − ηs²(B+2)) (``linreg_sgd_variance``) within 4 standard errors (per-member
    time averages are independent); the standard SDE's ηr²/(2(B − ηs²)) lies more than 8 of them away."""
    eta, B, s2, r2, n, members = 0.3, 4, 1.0, 0.5, 20000, 1000
    rng = np.random.default_rng(11)
    x = rng.normal(0.0, np.sqrt(s2), (n, 1))
    y = 0.7 * x + rng.normal(0.0, np.sqrt(r2), (n, 1))
    te = ft.TorchEnsemble(lambda: torch.nn.Linear(1, 1, bias=False), half_sq, (x, y), members=members,
                          lr=eta, batch_size=B, snapshot_steps=list(range(60, 260, 10)), statistics=False,
                          seed=2)  # fmt: skip
    run = te.train()
    w_hat = float((x * y).sum() / (x * x).sum())
    u2 = (run.weights["weight"][:, :, 0, 0] - w_hat) ** 2  # (20, members)
    per_member = u2.mean(axis=0)
    var, se = per_member.mean(), per_member.std(ddof=1) / np.sqrt(members)
    exact = ref.linreg_sgd_variance(eta, B, s2, r2)
    assert abs(var - exact) < 4 * se, (var, exact, se)
    assert abs(var - ref.linreg_sde_variance(eta, B, s2, r2, "standard")) > 8 * se


# ------------------------------------------------------------------------------------ file and resume
def test_file_and_bit_identical_resume(tmp_path):
    ens_args = dict(steps=40, snapshots=6, lanczos_steps=5)
    _, te, _ = pair(**ens_args)
    full = te.train(tmp_path / "a.h5")
    _, te2, _ = pair(**ens_args)
    part = te2.train(tmp_path / "b.h5", stop_after=3)
    assert part.t.size == 3 and not (tmp_path / "b.h5.partial").exists()
    _, te3, _ = pair(**ens_args)
    done = te3.train(tmp_path / "b.h5", resume=True)
    for f in ("weights", "grad", "grad_var", "hess_grad"):
        for name in full.names:
            np.testing.assert_array_equal(getattr(done, f)[name], getattr(full, f)[name])
    np.testing.assert_array_equal(done.lam_max, full.lam_max)
    loaded = EnsembleRun.load(tmp_path / "a.h5")
    assert loaded.config["model"]["parameters"] == {"0.weight": [K, D], "2.weight": [K, K], "4.weight": [D, K]}
    assert loaded.t == pytest.approx(0.05 * loaded.step)
    _, other, _ = pair(steps=40, snapshots=6, lanczos_steps=6)
    with pytest.raises(ConfigError, match="configuration differs"):
        other.train(tmp_path / "b.h5", resume=True)


# ------------------------------------------------------------------------------------------- recorder
def test_recorder_on_a_hand_written_loop_gives_torch_ensembles_run():
    """M modules trained one by one with torch.optim.SGD on ``minibatch_indices``' batches, recorded at the
    schedule's steps, give TorchEnsemble's run (same weights, statistics, λmax)."""
    steps, snaps = 60, [0, 5, 20, 60]
    ens, te, theta = pair(steps=steps, snapshot_steps=snaps, lanczos_steps=8)
    run = te.train()
    X = torch.tensor(ens.dataset.x)
    models = [autoencoder().double() for _ in range(M)]
    for m, net in enumerate(models):
        with torch.no_grad():
            for p, name in zip(net.parameters(), run.names):
                p.copy_(torch.tensor(run.weights[name][0, m]))
    opts = [torch.optim.SGD(net.parameters(), lr=0.05) for net in models]
    idx = ft.minibatch_indices(N, 8, M, steps, seed=3)  # (steps, M, B)
    rec = ft.Recorder(half_sq, ens.dataset.x, lr=0.05, batch_size=8, lanczos_steps=8, seed=3)
    for step in range(steps + 1):
        if step in snaps:
            rec.snapshot(step, models)
        if step == steps:
            break
        for m, (net, opt) in enumerate(zip(models, opts)):
            xb = X[idx[step, m]]
            opt.zero_grad()
            half_sq(net(xb), xb).backward()
            opt.step()
    mine = rec.run()
    np.testing.assert_array_equal(mine.step, run.step)
    for f in ("weights", "grad", "grad_var", "hess_grad"):
        for name in run.names:
            assert rel(getattr(mine, f)[name], getattr(run, f)[name]) < 1e-10, (f, name)
    assert rel(mine.loss, run.loss) < 1e-10 and rel(mine.lam_max, run.lam_max) < 1e-8
    assert mine.config["train"]["optimizer"] == "user"


# ------------------------------------------------------------------------------------------ bad input
def test_bad_input_names_the_argument():
    x = np.random.default_rng(0).standard_normal((32, D))
    with pytest.raises(ConfigError, match="lr"):
        ft.TorchEnsemble(autoencoder, half_sq, x, lr=-1.0)
    with pytest.raises(ConfigError, match=r"unknown argument\(s\) \['lerning_rate'\]"):
        ft.TorchEnsemble(autoencoder, half_sq, x, lerning_rate=0.1)
    with pytest.raises(ConfigError, match="temperature"):
        ft.TorchEnsemble(autoencoder, half_sq, x, optimizer="sgld")
    with pytest.raises(ConfigError, match="`loss_fn` must be the mean over the batch"):
        ft.TorchEnsemble(autoencoder, lambda o, y: 0.5 * ((o - y) ** 2).sum(), x, members=2)
    with pytest.raises(ConfigError, match="`model` must be a torch.nn.Module or a callable"):
        ft.TorchEnsemble(3, half_sq, x, members=2)
    with pytest.raises(ConfigError, match=r"`init\['0.weight'\]` must have shape \(2, 3, 8\)"):
        ft.TorchEnsemble(autoencoder, half_sq, x, members=2,
                         init={"0.weight": np.zeros((2, 8, 3)), "2.weight": 0, "4.weight": 0})  # fmt: skip
    with pytest.raises(ConfigError, match="`batch_size` = 64 is larger than the data set"):
        ft.TorchEnsemble(autoencoder, half_sq, x, members=2, batch_size=64, sampling="distinct")
    with pytest.raises(ConfigError, match="`dtype`"):
        ft.TorchEnsemble(autoencoder, half_sq, x, dtype=torch.int32)
    with pytest.raises(ConfigError, match="x has 32 samples but y has 31"):
        ft.TorchEnsemble(autoencoder, half_sq, (x, x[:31]))
    rec = ft.Recorder(half_sq, x, lr=0.1)
    with pytest.raises(ConfigError, match="no snapshots recorded"):
        rec.run()
    rec.snapshot(3, [autoencoder().double() for _ in range(2)])
    with pytest.raises(ConfigError, match="`step` must increase"):
        rec.snapshot(3, [autoencoder().double() for _ in range(2)])
    with pytest.raises(ConfigError, match="same 2 members"):
        rec.snapshot(4, [autoencoder().double() for _ in range(3)])
    with pytest.raises(ConfigError, match="`sampling` must be one of"):
        ft.Recorder(half_sq, x, lr=0.1, sampling="iidd")


def test_members_are_initialised_from_their_own_seeds():
    """Member m's initial weights depend only on (seed, m): the first members of a larger ensemble equal a
    smaller one's; a module instance is re-initialised per member by its reset_parameters()."""
    x = np.random.default_rng(0).standard_normal((32, D))
    small = ft.TorchEnsemble(autoencoder, half_sq, x, members=3, seed=5).initial_state()["theta"]
    large = ft.TorchEnsemble(autoencoder, half_sq, x, members=5, seed=5).initial_state()["theta"]
    np.testing.assert_array_equal(large[:, :3], small)
    from_module = ft.TorchEnsemble(autoencoder(), half_sq, x, members=5, seed=5).initial_state()["theta"]
    np.testing.assert_array_equal(from_module, large)
    assert np.all(np.std(large, axis=1) > 0)
    assert fpkit.EnsembleRun is EnsembleRun


def test_mse_loss_module_statistics():
    """torch's nn.MSELoss refuses forward-over-reverse ("ZeroTensors are immutable"): H·grad and λmax fall back
    to reverse-over-reverse and equal those of the same loss written out (forward-over-reverse) to 1e-12."""
    x = np.random.default_rng(2).normal(size=(40, 5))
    net = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.Tanh(), torch.nn.Linear(3, 5)).double()
    kw = dict(members=8, lr=0.05, batch_size=4, steps=10, snapshots=2, lanczos_steps=5, seed=1)
    a = ft.TorchEnsemble(net, torch.nn.MSELoss(), x, **kw)
    b = ft.TorchEnsemble(net, lambda out, y: ((out - y) ** 2).mean(), x, **kw)
    th = a.initial_state()["theta"]
    sa, sb = a.statistics(th, probe_seed=4), b.statistics(th, probe_seed=4)
    assert a.fn.hvp_mode == "reverse" and b.fn.hvp_mode == "forward"
    for k in ("grad", "grad_var", "hess_grad", "loss", "lam_max"):
        assert np.allclose(sa[k], sb[k], rtol=1e-12, atol=1e-14 * np.abs(sb[k]).max()), k
