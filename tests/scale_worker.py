"""Run by tests/test_scale.py in a subprocess, so that XLA's forced host devices and
`jax.distributed` stay out of the main test process.

    python tests/scale_worker.py devices OUT.json         (XLA_FLAGS forcing 4 host devices)
    python tests/scale_worker.py sweep-devices OUT.json   (the same; a sweep on 4 devices vs 1)
    python tests/scale_worker.py process I P PORT OUT.json (one of P processes on 127.0.0.1)
    python tests/scale_worker.py single OUT.json          (one process, one device)

Writes the largest differences between sharded and single-device training as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np

#: a few batches of tiny training: fused Euler relaxation (quick to compile), 3 x 20 examples
SETTINGS = dict(arch="64-16-10", batch_size=20, epochs=2, beta=0.5, backend="fused",
                eval_t1=50.0, eval_batch=100, chunk=1)


def tiny_dataset(n_batches: int = 3):
    from eqdyn.data import load_dataset

    data = load_dataset("digits", val_size=60)
    n = 20 * n_batches
    return dataclasses.replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n],
                               x_test=data.x_test[:60], y_test=data.y_test[:60])


def max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(p) - np.asarray(q)))) for p, q in zip(a, b))


def step_by_step(n_devices: int) -> list[float]:
    """Parameters after each of 3 batches: one device vs the batch split over `n_devices`."""
    import jax
    import jax.numpy as jnp

    from eqdyn._distributed import DataParallel, resolve_devices
    from eqdyn.learning import EP, EPConfig, make_optimizer, resolve_config
    from eqdyn.training import build_model, relax_configs, train_chunk

    cfg = resolve_config(**SETTINGS)
    data = tiny_dataset()
    model = build_model(cfg, jax.random.PRNGKey(0))
    free, nudged, _ = relax_configs(cfg)
    ep_cfg = EPConfig(beta=cfg.beta, variant=cfg.variant, free=free, nudged=nudged)
    opt = make_optimizer(cfg, model.lr_groups)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train, jnp.int32)
    perm = np.random.default_rng(0).permutation(x.shape[0]).reshape(3, 1, 20)
    dp = DataParallel(resolve_devices(n_devices, divides=cfg.batch_size))
    one = (model, opt.init(model.params), model.init_state(x.shape[0]), jax.random.PRNGKey(1))
    many = dp.replicate(one)
    xr, yr = dp.replicate((x, y))
    diffs = []
    for b in range(3):
        *one, _ = train_chunk(*one, x, y, jnp.asarray(perm[b]), EP.from_config(ep_cfg), opt, True)
        *many, _ = train_chunk(*many, xr, yr, dp.replicate(perm[b]), EP.from_config(ep_cfg), opt, True,
                                shard=dp.constraint)
        diffs.append(max_diff(one[0].params, many[0].params))
    return diffs


def main(argv) -> None:
    import jax

    mode = argv[0]
    if mode == "process":
        from eqdyn._distributed import initialize

        pid, n_proc, port, out = int(argv[1]), int(argv[2]), argv[3], argv[4]
        initialize(f"127.0.0.1:{port}", n_proc, pid)
    else:
        out = argv[1]
    from eqdyn._errors import ConfigError
    from eqdyn.learning import resolve_config, train

    data = tiny_dataset()
    result = dict(device_count=jax.device_count(), process_count=jax.process_count(),
                  local_device_count=jax.local_device_count())
    if mode == "single":  # the reference of the two-process test, in float32 as they are
        single = train(resolve_config(**SETTINGS), progress=None, dataset=data)
        result["single_params"] = [np.asarray(p).tolist() for p in single["model"].params]
    if mode in ("devices", "process"):
        dist = train(resolve_config(devices="all", **SETTINGS), progress=None, dataset=data)
        result["sharded_params"] = [np.asarray(p).tolist() for p in dist["model"].params]
        result["sharded_test_accuracy"] = dist["test_accuracy"]
    if mode == "devices":
        single = train(resolve_config(**SETTINGS), progress=None, dataset=data)
        result["train_diff"] = max_diff(single["model"].params, dist["model"].params)
        result["accuracy"] = [single["test_accuracy"], dist["test_accuracy"]]
        result["step_diffs"] = step_by_step(4)
        try:
            train(resolve_config(devices=3, **SETTINGS), progress=None, dataset=data)
        except ConfigError as exc:
            result["indivisible_error"] = str(exc)
    if mode == "sweep-devices":
        from eqdyn.training import sweep

        kw = {k: v for k, v in SETTINGS.items() if k not in ("beta", "epochs")}
        a = sweep(3, betas=[0.5, 1.0], epochs=1, progress=None, dataset=data, **kw)
        b = sweep(3, betas=[0.5, 1.0], epochs=1, progress=None, dataset=data, devices=4, **kw)
        result["sweep_diff"] = max(max_diff(m.params, n.params)
                                   for m, n in zip(a["models"], b["models"]))
        result["sweep_accuracy"] = [[r["test_accuracy"] for r in a["runs"]],
                                    [r["test_accuracy"] for r in b["runs"]]]
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1:])
