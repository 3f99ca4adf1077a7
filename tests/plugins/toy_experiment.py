"""A user's own experiment in one file outside the package (run by tests/test_experiments.py through
`fpkit experiment run tests/plugins/toy_experiment.py`): Ornstein-Uhlenbeck paths from the Langevin sampler
against the exact stationary variance D/θ."""

from dataclasses import dataclass

import numpy as np
from pydantic import Field

import fpkit
from fpkit.config import Schema
from fpkit.experiments import Claim, Experiment, Verdict


class Config(Schema):
    seed: int = Field(0, description="seed of the paths")
    theta: float = Field(1.0, gt=0, description="mean reversion θ (1/time)")
    diffusion: float = Field(0.5, gt=0, description="D (x²/time)")
    paths: int = Field(4000, ge=100, description="number of paths")


@dataclass
class Result:
    t: np.ndarray
    variance: np.ndarray
    exact: float
    standard_error: float


class OrnsteinUhlenbeck(Experiment):
    name = "toy-ou"
    title = "Ornstein-Uhlenbeck variance (a user's plug-in)"
    Config = Config
    quick = {"paths": 1000}

    def run(self, cfg, ctx):
        with ctx.stage("sampling"):
            sde = fpkit.SDE(drift=lambda x, t: -cfg["theta"] * x, diffusion=cfg["diffusion"])
            t = np.array([2.0, 4.0, 6.0])
            x = np.asarray(sde.sample(0.0, t, n_paths=cfg["paths"], dt=1e-2, seed=cfg["seed"]).x).reshape(t.size, -1)
        exact = cfg["diffusion"] / cfg["theta"] * (1 - np.exp(-2 * cfg["theta"] * t[-1]))
        return Result(t, x.var(axis=1), float(exact), float(exact * np.sqrt(2 / cfg["paths"])))

    def verdict(self, cfg, res):
        z = abs(res.variance[-1] - res.exact) / res.standard_error
        return Verdict([Claim("variance", z <= 4, float(z), "4 standard errors", "the sample variance is D/θ")],
                       summary=f"variance {res.variance[-1]:.4f} vs exact {res.exact:.4f}",
                       thresholds={"4 standard errors": "false alarm rate 6e-5 for a Gaussian statistic"})

    def report(self, cfg, res, verdict, figures):
        return f"Variance at t = {res.t[-1]:g}: {res.variance[-1]:.4f} (exact {res.exact:.4f}).\n"

    def figures(self, cfg, res, out):
        from fpkit.plotting import _pyplot, save_figure

        plt = _pyplot()
        fig, ax = plt.subplots()
        ax.plot(res.t, res.variance, "o-", label="paths")
        ax.axhline(res.exact, color="k", ls=":", label="exact")
        ax.set(xlabel="t", ylabel="variance")
        ax.legend()
        return {"variance over time": save_figure(fig, out / "variance.png")}


EXPERIMENT = OrnsteinUhlenbeck
