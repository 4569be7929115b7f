"""Sweeps: many small, independent training runs at once, vectorised over runs with `vmap`.

Every run of a sweep is the run `train` would make with its settings (same initial weights,
batch order, relaxation and optimiser); the runs of one *group* are stacked along a leading axis
(parameters, optimiser states, persistent particles, PRNG keys, batch orders) and the trainer's
jitted chunk of batches is `vmap`ped over that axis, so one compiled program advances all of them
together. With `devices`, the run axis is split over a device mesh (`NamedSharding`).

What can vary inside one group is what enters the computation as an array:

- `seed` (initial weights, batch order, random signs): always;
- `beta`: for EP and continual EP with one-sided, random-sign or symmetric nudging;
- `lr`: for the rules with an optimiser (ep, chl, rbp, bptt, backprop): every optax optimiser
  here (sgd with momentum, adam, adamw, their schedules) moves the weights by the learning rate
  times an update that does not depend on it, so the optimiser runs at rate 1 and each run's
  per-layer rates scale its update (`_RunRates`, kept in the optimiser state).

Settings that change shapes or program structure (arch, energy, algo, variant, optimizer,
batch size, ...) are not swept: one sweep per value. Where a value is static for a rule (`beta`
of holomorphic EP, on the circle of radius beta; `beta` of clock-free EP; `lr` of the local rules
cep and continuous), the settings are trained as separate groups, one after the other.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._distributed import DataParallel, resolve_devices, to_host
from .._errors import ConfigError
from ._config import build_model, resolve_config
from ._evaluate import _eval_batch
from ._loop import train_chunk
from ._optim import make_optimizer
from ._registry import LOCAL_RULES, build_rule, relax_configs

__all__ = ["sweep", "format_sweep_table", "SWEEPABLE"]

#: The settings a sweep varies (everything else is one value for all runs).
SWEEPABLE = ("seed", "beta", "lr")
#: Rules in which `beta` plays no part (a list of betas would train identical runs).
_NO_BETA = ("chl", "rbp", "bptt", "backprop")
#: Statistics aggregated per setting.
_METRICS = ("test_accuracy", "val_accuracy", "train_accuracy", "final_loss")


class _RunRates(eqx.Module):
    """An optax transformation: the updates of `inner` (built at learning rate 1) scaled by the
    run's per-parameter rates, which live in the optimiser state `(inner_state, rates)`."""

    inner: optax.GradientTransformation = eqx.field(static=True)

    def init(self, params, rates):
        return self.inner.init(params), tuple(rates)

    def update(self, grads, state, params=None):
        inner_state, rates = state
        updates, inner_state = self.inner.update(grads, inner_state, params)
        return tuple(u * r for u, r in zip(updates, rates)), (inner_state, rates)


def _vary_beta(cfg) -> bool:
    return cfg.algo in ("ep", "cep") and cfg.variant != "holomorphic"


def _vary_lr(cfg) -> bool:
    return cfg.algo not in LOCAL_RULES


def _group_key(cfg, n_groups: int):
    """Runs with equal keys are trained together (one vmapped program)."""
    return dataclasses.replace(
        cfg, seed=0, beta=1.0 if _vary_beta(cfg) else cfg.beta,
        lr=(1.0,) * n_groups if _vary_lr(cfg) else cfg.lr)


def _per_group(lr: tuple, n_groups: int) -> tuple:
    return tuple(lr) * n_groups if len(lr) == 1 else tuple(lr)


@eqx.filter_jit
def _sweep_chunk(runs, x, y, rule, opt, persistent):
    def one(run):
        # each run's beta is its rule's array leaf
        r = rule if run["beta"] is None else eqx.tree_at(lambda t: t.beta, rule, run["beta"])
        return train_chunk(run["model"], run["opt_state"], run["particles"], run["key"], x, y,
                           run["batches"], r, opt, persistent)

    return eqx.filter_vmap(one)(runs)


@eqx.filter_jit
def _eval_runs(models, x, y, mask, relax_cfg, feedforward):
    return eqx.filter_vmap(
        lambda m: _eval_batch(m, x, y, mask, relax_cfg, feedforward)[:4])(models)


def _evaluate_runs(models, x, y, relax_cfg, batch, feedforward, put) -> dict:
    """`evaluate` for stacked models: the same batches (the last padded and masked), each
    relaxed for all runs at once; every statistic is an array over runs."""
    n = int(x.shape[0])
    if n == 0:  # an empty split (val_size=0): no numbers, as `evaluate` returns
        k = len(jax.tree_util.tree_leaves(models)[0])
        nan = np.full(k, np.nan)
        return dict(accuracy=nan, loss=nan, steps=np.zeros(k), converged=np.ones(k))
    n_batches = -(-n // batch)
    xp = np.zeros((n_batches * batch, x.shape[1]), np.asarray(x).dtype)
    yp = np.zeros(n_batches * batch, np.int32)
    xp[:n], yp[:n] = np.asarray(x), np.asarray(y, np.int32)
    mask = np.arange(n_batches * batch) < n
    correct = cost = 0.0
    steps, conv = [], []
    for i in range(n_batches):
        sl = slice(i * batch, (i + 1) * batch)
        c, total, s, v = to_host(_eval_runs(models, put(xp[sl]), put(yp[sl]), put(mask[sl]),
                                            relax_cfg, feedforward))
        correct, cost = correct + c.astype(np.float64), cost + total.astype(np.float64)
        steps.append(s)
        conv.append(v)
    return dict(accuracy=correct / n, loss=cost / n, steps=np.mean(steps, axis=0),
                converged=np.mean(conv, axis=0))


def _stack(trees):
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def _train_group(cfgs: list, dataset, devices, say) -> tuple[list[dict], list]:
    """Train the runs `cfgs` (equal but for seed, and beta / lr where they are arrays) as one
    vmapped program; return one record and one model per run."""
    cfg0 = cfgs[0]
    t_start = time.perf_counter()
    models, keys, perm_keys = [], [], []
    for cfg in cfgs:
        k_init, k_train, k_perm = jax.random.split(jax.random.PRNGKey(cfg.seed), 3)
        models.append(build_model(cfg, k_init))
        keys.append(k_train)
        perm_keys.append(k_perm)
    model0 = models[0]
    groups = model0.lr_groups
    eval_cfg = relax_configs(cfg0)[2]
    rule = build_rule(cfg0, groups)
    feedforward = cfg0.algo == "backprop"
    x_train = jnp.asarray(dataset.x_train)
    y_train = jnp.asarray(dataset.y_train, jnp.int32)
    n_train = int(x_train.shape[0])
    n_batches = n_train // cfg0.batch_size
    if n_batches == 0:
        raise ConfigError(f"`batch_size`={cfg0.batch_size} exceeds the {n_train} training "
                          "examples.")
    n_chunks = -(-n_batches // cfg0.chunk)
    per_chunk = n_batches // n_chunks
    n_used = n_chunks * per_chunk * cfg0.batch_size
    if _vary_lr(cfg0):
        opt = _RunRates(make_optimizer(dataclasses.replace(cfg0, lr=(1.0,)), groups,
                                       n_chunks * per_chunk))
        opt_states = [opt.init(m.params, [jnp.asarray(_per_group(c.lr, max(groups) + 1)[g],
                                                      p.dtype) for g, p in zip(groups, m.params)])
                      for m, c in zip(models, cfgs)]
    else:
        opt = make_optimizer(cfg0, groups, n_chunks * per_chunk)
        opt_states = [opt.init(m.params) for m in models]
    particles = (model0.init_state(n_train) if cfg0.persistent
                 else tuple(jnp.zeros((0, n)) for n in model0.state_sizes))
    n_runs = len(cfgs)
    runs = dict(
        model=_stack(models), opt_state=_stack(opt_states),
        particles=tuple(jnp.broadcast_to(p, (n_runs, *p.shape)) for p in particles),
        key=jnp.stack(keys),
        beta=jnp.asarray([c.beta for c in cfgs], x_train.dtype) if _vary_beta(cfg0) else None,
    )
    # runs on a device mesh: pad the run axis to a multiple of the device count (copies of the
    # last run, dropped at the end), split it over the devices, replicate the data
    dp, put, n_pad = None, jnp.asarray, 0
    if devices is not None:
        dp = DataParallel(resolve_devices(devices), axis="runs")
        n_pad = dp.round_up(n_runs) - n_runs
        x_train, y_train = dp.replicate((x_train, y_train))
        put = dp.replicate
    pad = (lambda t: jax.tree_util.tree_map(
        lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], n_pad, axis=0)]), t)) if n_pad else (
        lambda t: t)
    runs = pad(runs)
    perm_keys = pad(jnp.stack(perm_keys))
    if dp is not None:
        runs = dp.split(runs)
    histories = [[] for _ in cfgs]
    finite = np.ones(n_runs, bool)
    for epoch in range(cfg0.epochs):
        t0 = time.perf_counter()
        perms = jax.vmap(lambda k, e=epoch: jax.random.permutation(
            jax.random.fold_in(k, e), n_train)[:n_used])(perm_keys)
        perms = perms.reshape(perms.shape[0], n_chunks, per_chunk, cfg0.batch_size)
        stats = []
        for c in range(n_chunks):
            batches = perms[:, c]
            runs["batches"] = dp.split(batches) if dp is not None else batches
            model, opt_state, particles, key, st = _sweep_chunk(
                runs, x_train, y_train, rule, opt, cfg0.persistent)
            runs.update(model=model, opt_state=opt_state, particles=particles, key=key)
            stats.append(to_host(st))
        del runs["batches"]
        st = {k: np.concatenate([s[k] for s in stats], axis=1)[:n_runs] for k in stats[0]}
        for p in runs["model"].params:
            finite &= np.isfinite(to_host(p)[:n_runs]).reshape(n_runs, -1).all(axis=1)
        train_seconds = time.perf_counter() - t0
        val = _evaluate_runs(runs["model"], dataset.x_val, dataset.y_val, eval_cfg,
                             cfg0.eval_batch, feedforward, put)
        n_seen = st["correct"].shape[1] * cfg0.batch_size
        for r, hist in enumerate(histories):
            hist.append(dict(
                epoch=epoch + 1, loss=float(np.mean(st["loss"][r])),
                train_accuracy=float(np.sum(st["correct"][r]) / n_seen),
                val_accuracy=float(val["accuracy"][r]), val_loss=float(val["loss"][r]),
                free_steps=float(np.mean(st["free_steps"][r])),
                nudged_steps=float(np.mean(st["nudged_steps"][r])),
                free_converged=float(np.mean(st["free_converged"][r])),
                group_seconds=time.perf_counter() - t0,
            ))
        say(f"  epoch {epoch + 1:>3}/{cfg0.epochs}  {n_runs} runs  mean loss "
            f"{np.nanmean(st['loss']):.4f}  mean val {100 * np.nanmean(val['accuracy'][:n_runs]):.2f}%"
            f"  {train_seconds:.1f}s train  {time.perf_counter() - t0:.1f}s")
    final = {split: _evaluate_runs(runs["model"], getattr(dataset, f"x_{split}"),
                                   getattr(dataset, f"y_{split}"), eval_cfg, cfg0.eval_batch,
                                   feedforward, put)
             for split in ("train", "val", "test")}
    wall = time.perf_counter() - t_start
    params = to_host(runs["model"].params)
    out_models = [model0.with_params(tuple(jnp.asarray(p[r]) for p in params))
                  for r in range(n_runs)]
    records = []
    for r, cfg in enumerate(cfgs):
        hist = histories[r]
        records.append(dict(
            seed=cfg.seed, beta=cfg.beta, lr=list(cfg.lr),
            train_accuracy=float(final["train"]["accuracy"][r]),
            val_accuracy=float(final["val"]["accuracy"][r]),
            test_accuracy=float(final["test"]["accuracy"][r]),
            final_loss=hist[-1]["loss"] if hist else float("nan"),
            diverged=not bool(finite[r]),
            mean_free_steps=float(np.mean([h["free_steps"] for h in hist])) if hist else None,
            group_seconds=wall,
            history=hist,
        ))
    return records, out_models


def _as_list(name: str, values, default) -> list:
    if values is None:
        return [default]
    values = list(values)
    if not values:
        raise ConfigError(f"`{name}` is empty; give at least one value.")
    return values


def sweep(
    seeds: int | Sequence[int] = 4,
    *,
    betas: Sequence[float] | None = None,
    lrs: Sequence | None = None,
    preset: str | None = None,
    devices=None,
    progress: Callable[[str], None] | None = print,
    dataset=None,
    download: bool = False,
    **overrides,
) -> dict:
    """Train every combination of `betas` x `lrs` with several seeds, many runs at once.

    **Arguments:**

    - `seeds`: how many seeds per setting (`cfg.seed`, `cfg.seed + 1`, ...), or the seeds.
    - `betas`: the nudging strengths to sweep (default: the one of the settings).
    - `lrs`: the learning rates to sweep, each one rate or per-layer rates (a tuple or a string
      `'0.1,0.05'`); default: the one of the settings.
    - `preset`, `overrides`: everything else, as for `resolve_config` (one value each).
    - `devices`: `None` (one device), `"all"` or `N`: split the runs over a device mesh.
    - `progress`: called with a line per group and epoch (`None` for silence).
    - `dataset`: an `eqdyn.data.Dataset` to use instead of loading the configured one, or the
      name of one (`"digits"`, `"mnist"`, ...: the `dataset` setting).
    - `download`: fetch missing MNIST / Fashion-MNIST files.

    **Returns:** a dict with `settings` (one per beta x lr: `n_runs`, and `mean`, `std` (sample
    standard deviation, ddof 1) and `values` of `test_accuracy`, `val_accuracy`,
    `train_accuracy`, `final_loss`), `runs` (one record per run, with its history), `config`
    (the shared settings), `groups` (how many vmapped programs were run), `wall_seconds`, and
    `models` (the trained models, in the order of `runs`; not JSON).
    """
    if isinstance(dataset, str):  # a name: the setting, as `eqdyn --dataset` passes it
        overrides["dataset"], dataset = dataset, None
    say = progress or (lambda s: None)
    t_start = time.perf_counter()
    for name in ("beta", "lr"):
        if overrides.get(name) is not None:
            raise ConfigError(f"`{name}`={overrides[name]!r} is swept: pass the values as "
                              f"`{name}s` (a list) to sweep.")
    for name, value in overrides.items():
        if isinstance(value, str) and "," in value and name not in ("data_dir", "energy"):
            raise ConfigError(
                f"`{name}`={value!r}: a sweep varies only {', '.join(SWEEPABLE)}; `{name}` "
                "changes the shapes or structure of the program, so each value needs its own "
                "sweep (run one sweep per value)."
            )
    base_seed = overrides.pop("seed", None)
    base = resolve_config(preset, **overrides)
    if base.eval_persistent:
        raise ConfigError(
            "`eval_persistent`=True is not supported by `sweep`, which scores every run from "
            "zero states; train those runs with `eqdyn train --eval-persistent` instead.")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"`seeds`={seeds} must be a positive number of seeds per setting.")
        first = base.seed if base_seed is None else int(base_seed)
        seed_list = list(range(first, first + seeds))
    else:
        seed_list = [int(s) for s in seeds]
        if not seed_list or len(set(seed_list)) != len(seed_list):
            raise ConfigError(f"`seeds`={seeds!r} must be distinct integers.")
    beta_list = [float(b) for b in _as_list("betas", betas, base.beta)]
    lr_list = _as_list("lrs", lrs, base.lr)
    if len(beta_list) > 1 and base.algo in _NO_BETA:
        raise ConfigError(
            f"`betas`={beta_list}: `algo`={base.algo!r} does not nudge, so beta does not change "
            "its runs; sweep seeds and lr only, or use algo ep / cep / continuous."
        )
    settings = [(b, resolve_config(preset, **{**overrides, "beta": b, "lr": lr}).lr)
                for b, lr in itertools.product(beta_list, lr_list)]
    if len(set(settings)) != len(settings):
        raise ConfigError(f"`betas`={beta_list} x `lrs`={lr_list} repeats a setting; give "
                          "distinct values.")
    if dataset is None:
        from ..data import load_dataset

        dataset = load_dataset(base.dataset, base.data_dir, val_size=base.val_size,
                               download=download, progress=progress)
    n_groups_lr = max(build_model(base, jax.random.PRNGKey(0)).lr_groups) + 1
    runs = [(i, dataclasses.replace(base, beta=b, lr=_per_group(lr, n_groups_lr), seed=s))
            for i, (b, lr) in enumerate(settings) for s in seed_list]
    groups: dict = {}
    for i, cfg in runs:
        groups.setdefault(_group_key(cfg, n_groups_lr), []).append((i, cfg))
    if devices is not None:
        resolve_devices(devices)  # fail early on a bad count
    say(f"sweep: {len(settings)} setting(s) x {len(seed_list)} seed(s) = {len(runs)} runs in "
        f"{len(groups)} vmapped group(s)")
    records: list = [None] * len(runs)
    models: list = [None] * len(runs)
    order = {id(cfg): k for k, (_, cfg) in enumerate(runs)}
    for g, members in enumerate(groups.values()):
        cfgs = [cfg for _, cfg in members]
        say(f"group {g + 1}/{len(groups)}: {len(cfgs)} runs ({base.algo}, beta "
            f"{sorted({c.beta for c in cfgs})}, lr {sorted({c.lr for c in cfgs})})")
        recs, mods = _train_group(cfgs, dataset, devices, say)
        for (i, cfg), rec, mod in zip(members, recs, mods):
            rec["setting"] = i
            records[order[id(cfg)]] = rec
            models[order[id(cfg)]] = mod
    table = []
    for i, (b, lr) in enumerate(settings):
        rows = [r for r in records if r["setting"] == i]
        entry = dict(beta=b, lr=list(lr), n_runs=len(rows),
                     diverged=sum(r["diverged"] for r in rows))
        for m in _METRICS:
            v = np.asarray([r[m] for r in rows], np.float64)
            entry[m] = dict(mean=float(np.mean(v)),
                            std=float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                            values=v.tolist())
        table.append(entry)
    return dict(
        settings=table, runs=records, config=base.to_json(), seeds=seed_list,
        groups=len(groups), devices=devices, dataset=dataset.name,
        n_train=int(dataset.x_train.shape[0]), wall_seconds=time.perf_counter() - t_start,
        backend=jax.default_backend(), models=models,
    )


def format_sweep_table(result: dict) -> str:
    """One line per setting: mean +- standard deviation over its seeds."""
    lines = [f"{'beta':>8} {'lr':<16} {'runs':>4}  {'test acc %':>15}  {'val acc %':>15}  "
             f"{'train acc %':>15}  {'final loss':>17}"]
    for s in result["settings"]:
        cells = []
        for m in _METRICS:
            scale = 1.0 if m == "final_loss" else 100.0
            mean, std = scale * s[m]["mean"], scale * s[m]["std"]
            cells.append(f"{mean:>7.4f} ± {std:<7.4f}" if m == "final_loss"
                         else f"{mean:>6.2f} ± {std:<6.2f}")
        div = f"  ({s['diverged']} diverged)" if s["diverged"] else ""
        lines.append(f"{s['beta']:>8g} {','.join(f'{v:g}' for v in s['lr']):<16} "
                     f"{s['n_runs']:>4}  " + "  ".join(cells) + div)
    return "\n".join(lines)
