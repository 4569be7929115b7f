"""Vector-field EP against symmetric EP on scikit-learn's 8x8 digits, with the weight alignment.

Three runs from the same feedforward weights (64-128-10, hard sigmoid, leaky, float32, batch 20,
plain SGD at rates (0.1, 0.05), symmetric nudging at beta 0.5, fused Euler dt 0.5 for at most
60 free and 30 nudged steps, no persistent particles):

- `symmetric`: `LayeredHopfield` trained by EP (tied weights);
- `vf-symmetric-init`: `VectorFieldHopfield` with `B_k = W_k^T` at the start, trained by
  `VectorFieldEP` (the feedforward and feedback weights then move apart);
- `vf-random-init`: `VectorFieldHopfield` with independent feedback weights.

Each epoch records the test accuracy (free phase from zero, the same relaxation) and, for the
vector-field runs, the angle between `W_2` and `B_2^T` (`eqdyn.models.alignment_angles`).

Usage (from the repository root):

    python benchmarks/study_vector_field.py [--epochs 20]   # writes results/vector_field_digits.{json,png}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from eqdyn.data import load_dataset
from eqdyn.dynamics import FusedEuler, relax_core
from eqdyn.learning import EP, Symmetric, VectorFieldEP
from eqdyn.models import LayeredHopfield, VectorFieldHopfield, alignment_angles

HERE = Path(__file__).resolve().parent
SIZES = (64, 128, 10)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--out", default=str(HERE / "results" / "vector_field_digits.json"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    ds = load_dataset("digits")
    xs, ys = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    xt, yt = jnp.asarray(ds.x_test), jnp.asarray(ds.y_test)
    free, nudged = FusedEuler(dt=0.5, t1=30.0), FusedEuler(dt=0.5, t1=15.0)
    beta, lrs, B = 0.5, (0.1, 0.05), 20

    vf0 = VectorFieldHopfield(SIZES, key=jax.random.PRNGKey(0))
    W, R, b = vf0.system.split(vf0.params)
    runs = {
        "symmetric": (LayeredHopfield(SIZES, key=None, weights=W, biases=b),
                      EP(beta, Symmetric(), free, nudged)),
        "vf-symmetric-init": (vf0.with_params((*W, *(w.T for w in W[1:]), *b)),
                              VectorFieldEP(beta, free=free, nudged=nudged)),
        "vf-random-init": (vf0, VectorFieldEP(beta, free=free, nudged=nudged)),
    }
    out = {"sizes": SIZES, "beta": beta, "lr": lrs, "batch": B, "epochs": args.epochs, "runs": {}}
    for name, (model, rule) in runs.items():
        groups = model.lr_groups
        rates = [lrs[g] if g < len(lrs) else lrs[-1] for g in groups]

        @eqx.filter_jit
        def step(m, x, d, rule=rule, rates=rates):
            grads, stats = rule(m, x, d, m.init_state(x.shape[0]))
            return m.with_params(tuple(p - r * g for p, r, g in zip(m.params, rates, grads)))

        @eqx.filter_jit
        def accuracy(m, x, y):
            res = relax_core(m, x, m.init_state(x.shape[0]), 0.0, None, free)
            return jnp.mean(m.predict(res.states, x) == y)

        hist = []
        rng = np.random.default_rng(0)
        for epoch in range(1, args.epochs + 1):
            perm = rng.permutation(len(ys))
            for i in range(0, len(perm) - B + 1, B):
                idx = perm[i:i + B]
                model = step(model, xs[idx], jax.nn.one_hot(ys[idx], 10))
            row = {"epoch": epoch, "test_accuracy": float(accuracy(model, xt, yt))}
            if isinstance(model, VectorFieldHopfield):
                row["angle_W2_B2T_deg"] = float(alignment_angles(model)[0])
            hist.append(row)
            print(name, row, flush=True)
        out["runs"][name] = hist
    out["wall_s"] = time.perf_counter() - t0
    out["command"] = " ".join(["python", "benchmarks/study_vector_field.py", *(argv or sys.argv[1:])])
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    png = Path(args.out).with_suffix(".png")
    _plot(out, png)
    print(f"wrote {args.out} and {png} ({out['wall_s']:.0f} s)")
    return 0


def _plot(out, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, hist in out["runs"].items():
        ep = [r["epoch"] for r in hist]
        a1.plot(ep, [100 * r["test_accuracy"] for r in hist], label=name)
        if "angle_W2_B2T_deg" in hist[0]:
            a2.plot(ep, [r["angle_W2_B2T_deg"] for r in hist], label=name)
    a1.set(xlabel="epoch", ylabel="test accuracy (%)", title="digits, 64-128-10")
    a2.set(xlabel="epoch", ylabel="angle(W_2, B_2^T) (degrees)", title="weight alignment")
    a1.legend()
    a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())
