"""KernelSynth: series drawn from Gaussian processes with random kernel compositions.

Chronos' recipe (Ansari et al. 2024, ``scripts/kernel-synth.py``): pick 1-5 kernels from a bank
(ExpSineSquared with calendar periods, DotProduct, RBF, RationalQuadratic, WhiteKernel,
Constant), join them with random ``+`` / ``*`` and draw one GP sample on ``x = t / L``.
Chronos samples with scikit-learn's exact GP, which is O(L^3); here two routes exist:

- ``method="spectral"`` (default, O(L * features)): every leaf kernel is sampled from its
  spectrum — random Fourier features for RBF/RationalQuadratic (RQ as a Gamma scale mixture
  of RBFs), the exact Bessel harmonic expansion for ExpSineSquared, exact low-rank draws for
  DotProduct/Constant, iid draws for White. A sum node adds independent samples (exact); a
  product node multiplies them, which keeps the covariance exactly ``k1 * k2`` but makes the
  marginals heavier-tailed than Gaussian (more variety, no cost).
- ``method="exact"``: float64 Cholesky of the full kernel matrix, the reference for tests and
  fine up to ~1024 points.

Parameter ranges (x in units of the series length, periods in steps):
ExpSineSquared period in the frequency's natural periods and their 1/2, 1/3 harmonics,
length scale log-U[0.5, 3]; DotProduct sigma_0 in {0, 0.5, 1, 3}; RBF length scale
log-U[0.02, 10]; RationalQuadratic length scale log-U[0.05, 2], alpha log-U[0.1, 10];
White noise level (variance) log-U[0.005, 1]; Constant log-U[0.1, 10].
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from scipy.special import ive

from tsfm.data.synthetic import (
    Sample,
    choose,
    finite_float32,
    log_uniform,
    nonseasonal_freq,
    seasonal_freq,
    usable_periods,
)

__all__ = [
    "ExpSineSquared", "DotProduct", "RBF", "RationalQuadratic", "White", "Constant", "Sum",
    "Product", "Kernel", "kernel_synth", "random_kernel", "sample_kernel",
]


class Kernel(ABC):
    """A covariance function on ``x = t / L`` that can give its matrix or a sample."""

    @abstractmethod
    def matrix(self, x: np.ndarray) -> np.ndarray:
        """The covariance matrix on the points ``x``."""

    @abstractmethod
    def sample(self, rng: np.random.Generator, x: np.ndarray, n_features: int) -> np.ndarray:
        """One draw with this covariance on ``x`` (``n_features`` random features where used)."""

    def periods(self) -> tuple[float, ...]:
        return ()

    def __add__(self, other: Kernel) -> Kernel:
        return Sum(self, other)

    def __mul__(self, other: Kernel) -> Kernel:
        return Product(self, other)


@dataclass(frozen=True)
class ExpSineSquared(Kernel):
    """``exp(-2 sin^2(pi r / p) / l^2)`` with the period ``p`` in steps."""

    period: float
    length_scale: float = 1.0
    length: int = 1  # series length L, to turn the period in steps into x units

    def matrix(self, x: np.ndarray) -> np.ndarray:
        r = np.abs(x[:, None] - x[None, :])
        return np.exp(-2.0 * np.sin(np.pi * r * self.length / self.period) ** 2 / self.length_scale**2)

    def sample(self, rng: np.random.Generator, x: np.ndarray, n_features: int) -> np.ndarray:
        # exp(z cos(theta)) = I_0(z) + 2 sum_k I_k(z) cos(k theta), z = 1/l^2: the spectrum is the
        # harmonics k/p with weights e^{-z} I_k(z), so a sample is an exact random Fourier series.
        z = 1.0 / self.length_scale**2
        k = np.arange(64)
        weights = ive(k, z) * np.where(k == 0, 1.0, 2.0)
        keep = max(1, int(np.searchsorted(np.cumsum(weights), weights.sum() * (1 - 1e-6))) + 1)
        k, weights = k[:keep], weights[:keep]
        theta = 2.0 * np.pi * np.outer(x * self.length / self.period, k)
        a = rng.standard_normal((2, keep)) * np.sqrt(weights)
        return np.cos(theta) @ a[0] + np.sin(theta) @ a[1]

    def periods(self) -> tuple[float, ...]:
        return (self.period,)


@dataclass(frozen=True)
class DotProduct(Kernel):
    """``sigma_0^2 + x x'``: a random line (offset and slope)."""

    sigma_0: float = 1.0

    def matrix(self, x: np.ndarray) -> np.ndarray:
        return self.sigma_0**2 + np.outer(x, x)

    def sample(self, rng: np.random.Generator, x: np.ndarray, n_features: int) -> np.ndarray:
        z = rng.standard_normal(2)
        return self.sigma_0 * z[0] + z[1] * x


@dataclass(frozen=True)
class RBF(Kernel):
    """``exp(-r^2 / (2 l^2))``."""

    length_scale: float = 1.0

    def matrix(self, x: np.ndarray) -> np.ndarray:
        r = x[:, None] - x[None, :]
        return np.exp(-0.5 * (r / self.length_scale) ** 2)

    def sample(self, rng: np.random.Generator, x: np.ndarray, n_features: int) -> np.ndarray:
        omega = rng.standard_normal(n_features) / self.length_scale
        return _fourier_features(rng, x, omega)


@dataclass(frozen=True)
class RationalQuadratic(Kernel):
    """``(1 + r^2 / (2 alpha l^2))^-alpha``: a Gamma(alpha, rate alpha l^2) mixture of RBF precisions."""

    length_scale: float = 1.0
    alpha: float = 1.0

    def matrix(self, x: np.ndarray) -> np.ndarray:
        r2 = (x[:, None] - x[None, :]) ** 2
        return (1.0 + r2 / (2.0 * self.alpha * self.length_scale**2)) ** (-self.alpha)

    def sample(self, rng: np.random.Generator, x: np.ndarray, n_features: int) -> np.ndarray:
        tau = rng.gamma(self.alpha, 1.0 / (self.alpha * self.length_scale**2), n_features)
        omega = rng.standard_normal(n_features) * np.sqrt(tau)
        return _fourier_features(rng, x, omega)


@dataclass(frozen=True)
class White(Kernel):
    """``noise_level * delta(x, x')``: independent noise."""

    noise_level: float = 0.1

    def matrix(self, x: np.ndarray) -> np.ndarray:
        return self.noise_level * np.eye(len(x))

    def sample(self, rng: np.random.Generator, x: np.ndarray, n_features: int) -> np.ndarray:
        return np.sqrt(self.noise_level) * rng.standard_normal(len(x))


@dataclass(frozen=True)
class Constant(Kernel):
    """``c``: a random constant."""

    value: float = 1.0

    def matrix(self, x: np.ndarray) -> np.ndarray:
        return np.full((len(x), len(x)), self.value)

    def sample(self, rng: np.random.Generator, x: np.ndarray, n_features: int) -> np.ndarray:
        return np.full(len(x), np.sqrt(self.value) * rng.standard_normal())


@dataclass(frozen=True)
class Sum(Kernel):
    left: Kernel
    right: Kernel

    def matrix(self, x: np.ndarray) -> np.ndarray:
        return self.left.matrix(x) + self.right.matrix(x)

    def sample(self, rng: np.random.Generator, x: np.ndarray, n_features: int) -> np.ndarray:
        return self.left.sample(rng, x, n_features) + self.right.sample(rng, x, n_features)

    def periods(self) -> tuple[float, ...]:
        return self.left.periods() + self.right.periods()


@dataclass(frozen=True)
class Product(Kernel):
    left: Kernel
    right: Kernel

    def matrix(self, x: np.ndarray) -> np.ndarray:
        return self.left.matrix(x) * self.right.matrix(x)

    def sample(self, rng: np.random.Generator, x: np.ndarray, n_features: int) -> np.ndarray:
        return self.left.sample(rng, x, n_features) * self.right.sample(rng, x, n_features)

    def periods(self) -> tuple[float, ...]:
        return self.left.periods() + self.right.periods()


def _fourier_features(rng: np.random.Generator, x: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """A GP sample from random frequencies: mean of cos/sin pairs with N(0, 1) weights."""
    phase = np.outer(x, omega)
    a = rng.standard_normal((2, len(omega)))
    return (np.cos(phase) @ a[0] + np.sin(phase) @ a[1]) / np.sqrt(len(omega))


# Probability that one drawn kernel is of each kind (periodic only when the frequency has periods).
KERNEL_WEIGHTS: dict[str, float] = {
    "periodic": 0.40, "linear": 0.14, "rbf": 0.16, "rq": 0.12, "white": 0.10, "constant": 0.08,
}


def _draw_kernel(rng: np.random.Generator, kind: str, periods: tuple[float, ...], length: int) -> Kernel:
    if kind == "periodic":
        base = periods[int(rng.integers(len(periods)))]
        harmonic = int(rng.choice([1, 1, 1, 2, 3])) if base >= 12 else 1
        return ExpSineSquared(base / harmonic, log_uniform(rng, 0.5, 3.0), length)
    if kind == "linear":
        return DotProduct(float(rng.choice([0.0, 0.5, 1.0, 3.0])))
    if kind == "rbf":
        return RBF(log_uniform(rng, 0.02, 10.0))
    if kind == "rq":
        return RationalQuadratic(log_uniform(rng, 0.05, 2.0), log_uniform(rng, 0.1, 10.0))
    if kind == "white":
        return White(log_uniform(rng, 0.005, 1.0))
    return Constant(log_uniform(rng, 0.1, 10.0))


def random_kernel(
    rng: np.random.Generator, length: int, periods: tuple[float, ...], max_kernels: int = 5
) -> Kernel:
    """1..max_kernels kernels joined left to right by random + / *, as in Chronos.

    At least one non-white, non-constant kernel is drawn so the sample is never pure noise.
    """
    weights = dict(KERNEL_WEIGHTS)
    if not periods:
        weights["periodic"] = 0.0
    n = int(rng.integers(1, max_kernels + 1))
    kinds = [choose(rng, weights) for _ in range(n)]
    if all(k in ("white", "constant") for k in kinds):
        kinds[0] = choose(rng, {k: w for k, w in weights.items() if k not in ("white", "constant")})
    kernels = [_draw_kernel(rng, kind, periods, length) for kind in kinds]
    expr = kernels[0]
    for k in kernels[1:]:
        expr = expr + k if rng.random() < 0.5 else expr * k
    return expr


def sample_kernel(
    rng: np.random.Generator,
    kernel: Kernel,
    length: int,
    *,
    method: str = "spectral",
    n_features: int = 64,
) -> np.ndarray:
    """One float64 sample of ``kernel`` on ``x = arange(length) / length``."""
    x = np.arange(length, dtype=np.float64) / length
    if method == "spectral":
        return np.asarray(kernel.sample(rng, x, n_features), dtype=np.float64)
    if method != "exact":
        raise ValueError(f"unknown KernelSynth method {method!r}; use 'spectral' or 'exact'")
    cov = kernel.matrix(x)
    scale = max(float(np.mean(np.diag(cov))), 1e-12)
    for jitter in (1e-8, 1e-6, 1e-4, 1e-2):
        try:
            chol = np.linalg.cholesky(cov + jitter * scale * np.eye(length))
            break
        except np.linalg.LinAlgError:
            continue
    else:  # pragma: no cover - a PSD matrix plus 1% diagonal always factorises
        raise np.linalg.LinAlgError("kernel matrix is not positive definite")
    return chol @ rng.standard_normal(length)


def kernel_synth(
    rng: np.random.Generator,
    length: int,
    *,
    max_kernels: int = 5,
    seasonal_prob: float = 0.8,
    method: str = "spectral",
    n_features: int = 64,
) -> Sample:
    """A KernelSynth series whose periodic kernels use natural periods of its frequency.

    With probability ``seasonal_prob`` the series gets a seasonal frequency and periodic kernels
    may enter the composition; otherwise it is labelled with a non-seasonal frequency.
    """
    if rng.random() < seasonal_prob:
        freq = seasonal_freq(rng, length)
    else:
        freq = nonseasonal_freq(rng, length)
    periods = usable_periods(freq, length, min_cycles=1.0)
    kernel = random_kernel(rng, length, periods, max_kernels)
    values = sample_kernel(rng, kernel, length, method=method, n_features=n_features)
    return Sample(finite_float32(values), freq, tuple(sorted(set(kernel.periods()))))
