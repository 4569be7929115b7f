"""Plain-NumPy Equilibrium Propagation: the same algorithm as eqdyn's `sb17-1h` training step.

This file is deliberately independent of eqdyn and of JAX (it imports NumPy only), so it can
serve both as the baseline of `bench_epoch.py` and as an independent numerical cross-check
(`tests/test_numpy_reference.py`). It mirrors, operation for operation where it matters:

- the *leaky* formulation of the layered Hopfield energy with the hard sigmoid
  `rho(u) = clip(u, 0, 1)` (`eqdyn/models/_system.py`): the integrated variables are `u`, the
  network state is `s = rho(u)`, and the field is the derived `-dF/ds` with every `rho'` set
  to one,

      du_k/dt = -u_k + rho(u_{k-1}) W_k + rho(u_{k+1}) W_{k+1}^T + b_k      (rho(u_0) := x, raw)
      du_L/dt = -u_L + rho(u_{L-1}) W_L + b_L + beta (d - u_L)             (output layer)

  Note that the nudging term acts on the integrated output `u_L` itself (the derived cost
  `C = 1/2 ||y - d||^2` differentiated with respect to `y`, evaluated at `y = u_L`), whereas
  the *reported* loss `C` and the parameter gradients are evaluated at the observed state
  `rho(u)`, as `CompiledSystem.cost` / `param_grads` do;
- the relaxation of `eqdyn/dynamics/_relax.py`: `diffrax.Euler` with `ConstantStepSize` and a
  boolean steady-state `Event` `max|du/dt| < tol` (max over the whole batch and all layers).
  diffrax evaluates the event once on the initial state (a state that is already steady takes
  zero steps) and then after every step on the new state; the solve stops at the first step
  whose end state satisfies it, or when the time reaches `t1`. Its time grid is
  `t_1 = dt0`, `t_k = t1 * (k / n)` for `k >= 2` and `t_n = t1`, with
  `n = ceil(t1 / nextafter(dt0))`: uniform steps `dt0` when `t1` is a multiple of `dt0`
  (as in every preset), slightly shorter steps after the first one otherwise. The grid is
  mirrored here in the time dtype (exactly in the first case, to an ulp in the second);
- the EP estimate of `eqdyn/learning/_ep.py` (one-sided / random-sign):
  `g = 1/(beta B) [dF/dtheta(u^beta) - dF/dtheta(u^0)]` with
  `dF/dW_k = -rho(u_{k-1})^T rho(u_k)` (input side: raw `x`) and `dF/db_k = -sum_batch rho(u_k)`;
  the nudged phase starts from the free state; `beta` carries the per-batch random sign;
- the training step of `eqdyn/training/_loop.py` (`train_chunk`, SGD via optax):
  `theta <- theta + (-lr_k) g` with layer `k`'s rate shared by `W_k` and `b_k`, and persistent
  particles: the free phase starts from the example's last free state `u` (zeros at first),
  and the new free state is written back.

One deliberate difference in *cost*, none in results: diffrax evaluates the field twice per
Euler step (once in the step, once in the event check on the new state) and once more on the
initial state; here the event-check evaluation is reused for the next step, which gives the
same numbers with half the field evaluations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

__all__ = ["NumpyEP", "rho", "time_grid", "glorot_init", "one_hot"]


def rho(u: np.ndarray) -> np.ndarray:
    """Hard sigmoid `clip(u, 0, 1)`."""
    return np.clip(u, 0.0, 1.0)


def one_hot(labels: np.ndarray, n_classes: int, dtype=np.float32) -> np.ndarray:
    labels = np.asarray(labels)
    out = np.zeros((labels.shape[0], n_classes), dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


def glorot_init(sizes: Sequence[int], rng: np.random.Generator, dtype=np.float32):
    """Glorot-uniform weights `(n_{k-1}, n_k)` and zero biases `(1, n_k)` (as LayeredHopfield)."""
    weights, biases = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        lim = math.sqrt(6.0 / (n_in + n_out))
        weights.append(rng.uniform(-lim, lim, (n_in, n_out)).astype(dtype))
        biases.append(np.zeros((1, n_out), dtype))
    return weights, biases


def time_grid(t1: float, dt0: float, dtype=np.float32) -> np.ndarray:
    """The step sizes diffrax's `ConstantStepSize` takes from `t0 = 0` to `t1` (see module doc).

    Computed in `dtype` (diffrax's time dtype is the default float: float32, or float64 with
    `jax_enable_x64`). diffrax computes `t0 + (t1 - t0) * (k / n)` inside XLA, whose rounding
    of it is not reproducible from NumPy to the last ulp; here `t_k` is the correctly rounded
    `t1 k / n`, which is exact (uniform steps `dt0`, as diffrax gives) whenever `t1` is a
    multiple of `dt0`, and within an ulp of diffrax's times otherwise.
    """
    dtype = np.dtype(dtype).type
    t1_, dt0_ = dtype(t1), dtype(dt0)
    n = int(np.ceil(t1_ / np.nextafter(dt0_, dtype(np.inf))))
    ts = np.empty(n + 1, dtype)
    ts[0] = dtype(0.0)
    ts[1] = min(dt0_, t1_)
    nn = dtype(n)
    for k in range(2, n + 1):
        ts[k] = (t1_ * dtype(k)) / nn  # correctly rounded t1 k / n
    ts[n] = t1_
    # `diffrax._integrate._clip_to_end`: a step ending within 100 ULP of t1 is clipped to t1.
    floor = t1_
    for _ in range(100):
        floor = np.nextafter(floor, dtype(-np.inf))
    for k in range(1, n):
        if ts[k] > floor:
            ts[k] = t1_
    ts = ts[: np.argmax(ts >= t1_) + 1] if n > 0 else ts
    return np.diff(ts).astype(dtype)


class NumpyEP:
    """Layered Hopfield network trained with EP, in NumPy (see the module docstring).

    **Arguments:**

    - `sizes`: layer sizes, input first (e.g. `(784, 500, 10)`).
    - `weights`, `biases`: initial parameters (copied); Glorot-uniform / zeros from `seed` if None.
    - `lr`: one learning rate or one per weight layer, input side first.
    - `beta`: nudging strength (> 0; the sign is passed per batch to `step`).
    - `dt0`, `tol`, `free_t1`, `nudged_t1`: Euler step, steady-state tolerance and horizons
      (the trainer uses one `tol` for both phases; `nudged_tol` overrides it for the nudged one).
    - `n_examples`: number of persistent particles (one per training example).
    - `persistent`: start each free phase from the example's last free state (else zeros).
    - `dtype`: `np.float32` (default) or `np.float64`.
    - `relaxation`: `"euler"` (default) or `"blocks"` (eqdyn's `backend="blocks"`: sweeps of
      exact layer updates, odd layers then even ones; at most `min(max_steps, t1 / dt0)`).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights=None,
        biases=None,
        *,
        lr: float | Sequence[float] = (0.1, 0.05),
        beta: float = 1.0,
        dt0: float = 0.5,
        tol: float = 1e-3,
        free_t1: float = 50.0,
        nudged_t1: float = 50.0,
        nudged_tol: float | None = None,
        n_examples: int = 0,
        persistent: bool = True,
        dtype=np.float32,
        seed: int = 0,
        relaxation: str = "euler",
        max_steps: int = 4096,
    ):
        self.sizes = tuple(int(n) for n in sizes)
        self.L = len(self.sizes) - 1
        self.dtype = np.dtype(dtype).type
        if weights is None or biases is None:
            w0, b0 = glorot_init(self.sizes, np.random.default_rng(seed), self.dtype)
            weights = w0 if weights is None else weights
            biases = b0 if biases is None else biases
        self.W = [np.array(w, self.dtype, copy=True) for w in weights]
        self.b = [np.array(b, self.dtype, copy=True).reshape(1, -1) for b in biases]
        for k, (w, n_in, n_out) in enumerate(zip(self.W, self.sizes[:-1], self.sizes[1:])):
            if w.shape != (n_in, n_out):
                raise ValueError(f"weights[{k}] has shape {w.shape}; expected {(n_in, n_out)}")
        lr = (lr,) if isinstance(lr, (int, float)) else tuple(lr)
        if len(lr) == 1:
            lr = lr * self.L
        if len(lr) != self.L:
            raise ValueError(f"give one learning rate or {self.L}; got {len(lr)}")
        self.lr = tuple(float(v) for v in lr)
        self.beta = float(beta)
        self.dt0, self.tol = float(dt0), float(tol)
        self.nudged_tol = self.tol if nudged_tol is None else float(nudged_tol)
        self.free_t1, self.nudged_t1 = float(free_t1), float(nudged_t1)
        self.persistent = bool(persistent)
        if relaxation not in ("euler", "blocks"):
            raise ValueError(f"relaxation={relaxation!r}: use 'euler' or 'blocks'")
        self.relaxation, self.max_steps = relaxation, int(max_steps)
        self.particles = [np.zeros((n_examples, n), self.dtype) for n in self.sizes[1:]]
        self._grids = {}

    # -- parameters ----------------------------------------------------------------------
    @property
    def params(self) -> list[np.ndarray]:
        """`(W_1, ..., W_L, b_1, ..., b_L)`, eqdyn's order."""
        return [*self.W, *self.b]

    def init_state(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, n), self.dtype) for n in self.sizes[1:]]

    def _grid(self, t1: float) -> np.ndarray:
        g = self._grids.get(t1)
        if g is None:
            g = self._grids[t1] = time_grid(t1, self.dt0, self.dtype)
        return g

    # -- dynamics ------------------------------------------------------------------------
    def field_k(self, k, u, xw1, d, beta, s=None) -> np.ndarray:
        """The leaky field of layer `k` alone (see `field`; `s`: the clipped states, if
        already computed)."""
        L, W, b = self.L, self.W, self.b
        act = (lambda j: s[j]) if s is not None else (lambda j: np.clip(u[j], 0.0, 1.0))
        bottom_up = xw1 if k == 0 else act(k - 1) @ W[k]
        if k == L - 1 and beta != 0:
            f = beta * (d - u[k]) + b[k]
            f += bottom_up
        else:
            f = bottom_up + b[k]
        if k + 1 < L:
            f += act(k + 1) @ W[k + 1].T
        f -= u[k]
        return f

    def field(self, u, xw1, d, beta) -> list[np.ndarray]:
        """Leaky field `du/dt` at `u` (`xw1 = x @ W_1`, hoisted out of the relaxation).

        The terms are summed in the order of eqdyn's generated code (nudging, bias, bottom-up,
        top-down, leak), so that float32 results round the same way up to the matmuls.
        """
        s = [np.clip(uk, 0.0, 1.0) for uk in u]
        return [self.field_k(k, u, xw1, d, beta, s) for k in range(self.L)]

    @staticmethod
    def residual(u, f) -> float:
        """`max |du/dt|`, not counting potentials past [0, 1] that keep moving outwards
        (they no longer change `rho(u)`): the projected-gradient residual eqdyn uses."""
        worst = 0.0
        for uk, fk in zip(u, f):
            outward = ((uk >= 1.0) & (fk > 0)) | ((uk <= 0.0) & (fk < 0))
            worst = max(worst, float(np.max(np.where(outward, 0.0, np.abs(fk)))))
        return worst

    def relax(self, x, u0, d, beta, t1, tol=None) -> tuple[list[np.ndarray], int]:
        """Relaxation from `u0` until the residual is below `tol` or the horizon `t1`:
        Euler steps, or block sweeps with `relaxation="blocks"`; returns `(u, steps)`."""
        beta = self.dtype(beta)
        tol = self.dtype(self.tol if tol is None else tol)
        xw1 = x @ self.W[0]
        u = [np.array(uk, self.dtype, copy=True) for uk in u0]
        if self.relaxation == "blocks":
            return self._relax_blocks(u, xw1, d, beta, t1, tol)
        f = self.field(u, xw1, d, beta)
        if self.residual(u, f) < tol:
            return u, 0
        steps = 0
        for dt in self._grid(t1):
            for uk, fk in zip(u, f):
                uk += fk * dt
            steps += 1
            f = self.field(u, xw1, d, beta)
            if self.residual(u, f) < tol:
                break
        return u, steps

    def _jump(self, k, uk, fk, beta) -> np.ndarray:
        """Layer `k`'s exact minimiser given its neighbours: `u + f / alpha`, `alpha` its leak
        (`1`, or `1 + beta` on the nudged output); at `alpha <= 0` the bound the force
        points to."""
        alpha = 1.0 + float(beta) if k == self.L - 1 else 1.0
        if alpha > 0:
            return uk + fk / self.dtype(alpha)
        return np.where(fk > 0, self.dtype(1.0), np.where(fk < 0, self.dtype(0.0), uk))

    def _relax_blocks(self, u, xw1, d, beta, t1, tol):
        """Sweeps: layers 1, 3, 5, ... jump to their minimisers given their neighbours, then
        layers 2, 4, ...; the residual after a sweep is that of the first class (the second
        one's field is zero), the same test as eqdyn's `backend="blocks"`."""
        first, second = range(0, self.L, 2), range(1, self.L, 2)
        n_max = min(int(np.ceil(t1 / self.dt0 - 1e-9)), self.max_steps)
        f = self.field(u, xw1, d, beta)
        r = self.residual(u, f)
        steps = 0
        while r >= tol and steps < n_max:
            for k in first:
                u[k] = self._jump(k, u[k], f[k], beta)
            for k in second:
                u[k] = self._jump(k, u[k], self.field_k(k, u, xw1, d, beta), beta)
            f = {k: self.field_k(k, u, xw1, d, beta) for k in first}
            r = self.residual([u[k] for k in first], [f[k] for k in first])
            steps += 1
        return u, steps

    # -- learning ------------------------------------------------------------------------
    def param_grads(self, x, u) -> list[np.ndarray]:
        """`dF/dtheta` summed over the batch at the observed state `rho(u)`, eqdyn's order."""
        s = [x] + [np.clip(uk, 0.0, 1.0) for uk in u]
        gw = [-(s[k].T @ s[k + 1]) for k in range(self.L)]
        gb = [-np.sum(s[k + 1], axis=0, keepdims=True) for k in range(self.L)]
        return gw + gb

    def param_grads_delta(self, x, u_a, u_b) -> list[np.ndarray]:
        """`dF/dtheta(u_a) - dF/dtheta(u_b)`; the input layer's product once, on the
        difference (`x^T (rho(h_a) - rho(h_b))`), as eqdyn computes it."""
        sa = [np.clip(uk, 0.0, 1.0) for uk in u_a]
        sb = [np.clip(uk, 0.0, 1.0) for uk in u_b]
        gw = [-(x.T @ (sa[0] - sb[0]))]
        gw += [-(sa[k - 1].T @ sa[k]) + sb[k - 1].T @ sb[k] for k in range(1, self.L)]
        gb = [-np.sum(sa[k] - sb[k], axis=0, keepdims=True) for k in range(self.L)]
        return gw + gb

    def ep_gradient(self, x, d, s0, sign: float = 1.0, labels=None):
        """EP estimate (one-sided with `beta -> sign * beta`); returns `(grads, aux)`."""
        x = np.asarray(x, self.dtype)
        d = np.asarray(d, self.dtype)
        batch = x.shape[0]
        free, free_steps = self.relax(x, s0, d, 0.0, self.free_t1)
        beta = self.dtype(self.beta if sign >= 0 else -self.beta)
        nudged, nudged_steps = self.relax(x, free, d, beta, self.nudged_t1, self.nudged_tol)
        scale = self.dtype(1.0) / (beta * self.dtype(batch))
        grads = [scale * g for g in self.param_grads_delta(x, nudged, free)]
        y = np.clip(free[-1], 0.0, 1.0)
        loss = 0.5 * float(np.sum((y - d) ** 2)) / batch
        labels = np.argmax(d, axis=-1) if labels is None else np.asarray(labels)
        correct = int(np.sum(np.argmax(y, axis=-1) == labels))
        aux = dict(free_states=free, free_steps=free_steps, nudged_steps=nudged_steps,
                   loss=loss, correct=correct, beta=float(beta))
        return grads, aux

    def step(self, x, d, idx, sign: float = 1.0, labels=None) -> dict:
        """One training step on the batch `(x, d)` of examples `idx` (particle indices).

        `sign` (+1 / -1, or a bool: True is +1) is the random sign of beta for this batch.
        Returns the batch statistics (loss, correct, free_steps, nudged_steps, beta).
        """
        if isinstance(sign, (bool, np.bool_)):
            sign = 1.0 if sign else -1.0
        idx = np.asarray(idx)
        if self.persistent:
            s0 = [p[idx] for p in self.particles]
        else:
            s0 = self.init_state(len(idx))
        grads, aux = self.ep_gradient(x, d, s0, sign, labels)
        L = self.L
        for k in range(L):
            self.W[k] += self.dtype(-self.lr[k]) * grads[k]
            self.b[k] += self.dtype(-self.lr[k]) * grads[L + k]
        if self.persistent:
            for p, s in zip(self.particles, aux["free_states"]):
                p[idx] = s
        return {k: v for k, v in aux.items() if k != "free_states"}

    def epoch(self, x, y, batch_size: int = 20, *, order=None, signs=None, n_batches=None,
              rng: np.random.Generator | None = None, n_classes: int | None = None) -> dict:
        """Train over `(x, y)` (labels `y`) in minibatches; returns per-batch stats and timing.

        - `order`: example indices in visiting order (default: a permutation from `rng`);
          truncated to whole batches, like eqdyn's trainer.
        - `signs`: per-batch signs of beta (default: fair coin flips from `rng`).
        - `n_batches`: stop after this many batches (default: all).

        Particle `i` belongs to example `i` of `x`; `x` must have `n_examples` rows if persistent.
        """
        rng = rng or np.random.default_rng(0)
        n = x.shape[0]
        n_classes = n_classes or self.sizes[-1]
        order = rng.permutation(n) if order is None else np.asarray(order).reshape(-1)
        total = len(order) // batch_size
        nb = total if n_batches is None else min(int(n_batches), total)
        if signs is None:
            signs = rng.random(nb) < 0.5
        stats = dict(free_steps=[], nudged_steps=[], loss=[], correct=[], seconds=[])
        t_start = time.perf_counter()
        for i in range(nb):
            t0 = time.perf_counter()
            idx = order[i * batch_size : (i + 1) * batch_size]
            xb = np.asarray(x[idx], self.dtype)
            lb = np.asarray(y[idx])
            st = self.step(xb, one_hot(lb, n_classes, self.dtype), idx, bool(signs[i]), lb)
            stats["seconds"].append(time.perf_counter() - t0)
            for k in ("free_steps", "nudged_steps", "loss", "correct"):
                stats[k].append(st[k])
        out = {k: np.asarray(v) for k, v in stats.items()}
        out["total_seconds"] = time.perf_counter() - t_start
        out["n_batches"] = nb
        return out
