"""Tests of eqdyn.learning: EP estimates against an exact implicit gradient, and the trainer.

The reference gradient is recurrent backprop at the free fixed point (implicit function
theorem): with H = d2F/ds2 at s* (beta = 0) and lambda = H^-1 dJ/ds,
dJ/dtheta = -d/dtheta [dF/ds(s*, theta)] . lambda, J the mean cost over the batch.
"""

from __future__ import annotations

import functools
import json
import shutil

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import eqdyn.training._loop as loop_mod
from eqdyn._errors import CheckpointError, ConfigError
from eqdyn.dynamics import RelaxConfig, max_norm
from eqdyn.learning import EP, AbstractRule, EPConfig, ep_gradient
from eqdyn.training import (
    build_model,
    make_optimizer,
    relax_configs,
    resolve_config,
    train,
    train_chunk,
)
from eqdyn.models import LayeredHopfield

pytestmark = pytest.mark.usefixtures("cached_derivations")

# ------------------------------------------------------------------ EP vs exact gradient

SIZES = (5, 4, 3)
BATCH = 4
#: Euler's fixed points are exactly the ODE's; a tight tolerance makes the relaxation error
#: (about tol / beta in the estimate) negligible against EP's bias down to beta = 1e-3.
TIGHT = RelaxConfig(solver="euler", dt0=0.5, tol=1e-12, t1=2000.0, max_steps=4096,
                    on_failure="raise")
#: Two betas two decades apart fix the slope; the slow test fits five.
BETAS = (1e-3, 1e-1)
BETAS_SLOW = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)

_ep = eqx.filter_jit(ep_gradient)


class EPCase:
    def __init__(self):
        # numpy draws: every distinct shape drawn with jax.random is an XLA compilation
        rng = np.random.default_rng(1234)
        weights = []
        for a, b in zip(SIZES[:-1], SIZES[1:]):
            lim = np.sqrt(6.0 / (a + b))
            weights.append(jnp.asarray(rng.uniform(-lim, lim, (a, b))))
        biases = [jnp.asarray(0.5 * rng.normal(size=(1, n))) for n in SIZES[1:]]
        self.model = LayeredHopfield(SIZES, "sigmoid", key=None, weights=weights, biases=biases,
                                     dtype=jnp.float64)
        self.x = jnp.asarray(rng.uniform(size=(BATCH, SIZES[0])))
        self.d = jnp.asarray(np.eye(SIZES[-1])[rng.integers(0, SIZES[-1], BATCH)])
        self.s0 = self.model.init_state(BATCH)
        self.reference = self._reference()

    def _reference(self):
        model, x, d = self.model, self.x, self.d
        system, params, inputs = model.system, model.params, model.inputs(x, d)
        # the free fixed point: EP's free phase with the tight config (shares its compilation)
        _, aux = self.estimate("one-sided", BETAS[0])
        self.s_star = aux.free_states
        assert float(max_norm(model.system.field(self.s_star, params, inputs, 0.0))) < TIGHT.tol
        flat, unravel = ravel_pytree(self.s_star)

        def energy(f):
            return system.energy(unravel(f), params, inputs, 0.0)

        def mean_cost(f):
            return system.cost(unravel(f), params, inputs) / BATCH

        @jax.jit
        def implicit_gradient(flat, params):
            hess = jax.hessian(energy)(flat)
            lam = jnp.linalg.solve(hess, jax.grad(mean_cost)(flat))

            def coupling(p):
                g = system.state_grads(unravel(flat), p, inputs, 0.0)
                return jnp.vdot(ravel_pytree(g)[0], lam)

            return tuple(-g for g in jax.grad(coupling)(params))

        return implicit_gradient(flat, params)

    @functools.lru_cache(maxsize=None)
    def estimate(self, variant, beta, key=None):
        cfg = EPConfig(beta=beta, variant=variant, free=TIGHT, nudged=TIGHT)
        key_arr = None if key is None else jax.random.PRNGKey(key)
        grads, aux = _ep(self.model, self.x, self.d, self.s0, cfg, key=key_arr)
        assert bool(aux.free_converged) and bool(aux.nudged_converged)
        return grads, aux

    def error(self, grads):
        a, b = _flat(grads), _flat(self.reference)
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(a).ravel() for a in jax.tree_util.tree_leaves(tree)])


@pytest.fixture(scope="module")
def ep_case():
    return EPCase()


def test_reference_gradient_is_plausible(ep_case):
    ref = ep_case.reference
    assert len(ref) == len(ep_case.model.params)
    for g, p in zip(ref, ep_case.model.params):
        assert g.shape == p.shape and np.all(np.isfinite(np.asarray(g)))
    assert np.linalg.norm(_flat(ref)) > 1e-3


def _slope(ep_case, variant, betas):
    errors = [ep_case.error(ep_case.estimate(variant, b)[0]) for b in betas]
    return np.polyfit(np.log(betas), np.log(errors), 1)[0], errors


@pytest.mark.parametrize("variant, lo, hi", [("one-sided", 0.8, 1.2), ("symmetric", 1.7, 2.3)])
def test_ep_bias_order_fit(ep_case, variant, lo, hi):
    slope, errors = _slope(ep_case, variant, BETAS_SLOW)
    assert lo <= slope <= hi, (errors, slope)
    assert all(a < b for a, b in zip(errors, errors[1:]))


@pytest.mark.parametrize("variant, lo, hi", [("one-sided", 0.8, 1.2), ("symmetric", 1.7, 2.3)])
def test_ep_bias_order(ep_case, variant, lo, hi):
    slope, errors = _slope(ep_case, variant, BETAS)
    assert lo <= slope <= hi, (errors, slope)
    assert errors[0] < 1e-2  # and at small beta it is the gradient
    _, aux = ep_case.estimate(variant, BETAS[-1])
    # aux: loss is the MEAN cost at the free fixed point (found again by this estimate)
    want = 0.5 * np.sum((np.asarray(ep_case.s_star[-1]) - np.asarray(ep_case.d)) ** 2) / BATCH
    assert float(aux.loss) == pytest.approx(want, rel=1e-9)
    for a, b in zip(aux.free_states, ep_case.s_star):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_symmetric_is_more_accurate_than_one_sided(ep_case):
    for b in BETAS:
        one = ep_case.error(ep_case.estimate("one-sided", b)[0])
        sym = ep_case.error(ep_case.estimate("symmetric", b)[0])
        assert sym < one


def _keys_by_sign():
    plus = minus = None
    for i in range(64):
        if plus is not None and minus is not None:
            break
        if bool(jax.random.bernoulli(jax.random.PRNGKey(i))):
            plus = plus if plus is not None else i
        else:
            minus = minus if minus is not None else i
    return plus, minus


def test_random_sign_is_one_sided_at_plus_or_minus_beta(ep_case):
    beta = BETAS[-1]
    plus, minus = _keys_by_sign()
    assert plus is not None and minus is not None
    one_plus, _ = ep_case.estimate("one-sided", beta)
    sym, _ = ep_case.estimate("symmetric", beta)
    # sym = (one(+beta) + one(-beta)) / 2, so one(-beta) = 2 sym - one(+beta)
    one_minus = tuple(2 * s - p for s, p in zip(sym, one_plus))
    got_plus, _ = ep_case.estimate("random-sign", beta, key=plus)
    got_minus, _ = ep_case.estimate("random-sign", beta, key=minus)
    for a, b in zip(got_plus, one_plus):
        np.testing.assert_allclose(a, b, atol=1e-12, rtol=0)
    for a, b in zip(got_minus, one_minus):
        np.testing.assert_allclose(a, b, atol=1e-8, rtol=0)
    # the two signs give different estimates (the bias flips sign)
    assert np.max(np.abs(_flat(got_plus) - _flat(got_minus))) > 1e-6


def test_random_sign_needs_a_key(ep_case):
    cfg = EPConfig(beta=0.1, variant="random-sign", free=TIGHT, nudged=TIGHT)
    # under jit the error comes at trace time, without compiling the free phase
    with pytest.raises(ConfigError, match="`key` is required"):
        _ep(ep_case.model, ep_case.x, ep_case.d, ep_case.s0, cfg)


@pytest.mark.parametrize(
    "kw, match",
    [(dict(beta=0.0), "`beta`=0.0 must be a positive"), (dict(beta=-1.0), "positive"),
     (dict(variant="two-sided"), "`variant`='two-sided' is not known")],
)
def test_bad_ep_config(kw, match):
    with pytest.raises(ConfigError, match=match):
        EPConfig(**kw)


# ------------------------------------------------------------------ trainer

ARCH = "64-32-10"


#: The defaults (random-sign beta = 1, lr 0.1/0.05, batch 20) reach only ~35-40 % on digits in
#: two epochs; one-sided beta = 0.5 with batches of 10 reaches ~90 % (and its EP step, with
#: two relaxations, compiles faster than the symmetric one's three).
FAST = dict(variant="one-sided", beta=0.5, lr="0.2,0.1", batch_size=10)


def _cfg(**kw):
    return resolve_config(**{"epochs": 2, "arch": ARCH, **FAST, **kw})


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """Two uninterrupted epochs on digits, counting how often the EP step is traced."""
    run_dir = tmp_path_factory.mktemp("train") / "A"
    traces = []
    original = loop_mod.build_rule

    class Counting(AbstractRule):  # the rule only runs while the chunk is being traced
        inner: AbstractRule

        def __call__(self, *args, **kwargs):
            traces.append(1)
            return self.inner(*args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(loop_mod, "build_rule", lambda cfg, groups: Counting(original(cfg, groups)))
    try:
        metrics = train(_cfg(), run_dir=run_dir, progress=None)
    finally:
        mp.undo()
    return run_dir, metrics, len(traces)


def test_train_writes_run_directory(run_a):
    run_dir, metrics, _ = run_a
    for name in ("config.json", "metrics.json", "checkpoint.npz", "checkpoint.json"):
        assert (run_dir / name).is_file(), name
    saved = json.loads((run_dir / "metrics.json").read_text())
    for k in ("train_accuracy", "test_accuracy", "epochs", "wall_seconds", "history",
              "mean_free_steps"):
        assert k in saved, k
    assert saved["epochs"] == 2 and len(saved["history"]) == 2
    assert [h["epoch"] for h in saved["history"]] == [1, 2]
    assert json.loads((run_dir / "config.json").read_text()) == _cfg().to_json()
    assert json.loads((run_dir / "checkpoint.json").read_text())["epoch"] == 2
    assert saved["test_accuracy"] == metrics["test_accuracy"]


def test_train_learns_digits_in_float32(run_a):
    _, metrics, _ = run_a
    assert metrics["train_accuracy"] > 0.5
    assert metrics["test_accuracy"] > 0.5
    model = metrics["model"]
    assert model.sizes == (64, 32, 10)
    assert all(p.dtype == jnp.float32 for p in model.params)  # despite x64 being enabled
    assert all(np.all(np.isfinite(np.asarray(p))) for p in model.params)


def test_train_chunk_is_traced_once(run_a):
    # 135 batches of 10 in one chunk per epoch (chunk=500), 2 epochs: one trace of the EP step
    _, _, n_traces = run_a
    assert n_traces == 1


def test_donating_chunk_matches_the_plain_chunk_and_consumes_the_particles():
    # `train` runs `_train_chunk_donating` (the particles updated in place); benchmarks and
    # tests use `_train_chunk`: the two must give the same numbers, bit for bit
    cfg = _cfg()
    model = build_model(cfg, jax.random.PRNGKey(0))
    free, nudged, _ = relax_configs(cfg)
    ep_cfg = EPConfig(variant=cfg.variant, beta=cfg.beta, free=free, nudged=nudged)
    opt = make_optimizer(cfg, model.n_layers)
    x = jax.random.uniform(jax.random.PRNGKey(1), (60, 64))
    y = jnp.arange(60, dtype=jnp.int32) % 10
    rows = jax.random.permutation(jax.random.PRNGKey(2), 60).reshape(6, 10)
    fresh = lambda: tuple(jnp.full((60, n), 0.25) for n in model.state_sizes)  # noqa: E731
    key = jax.random.PRNGKey(3)
    plain = train_chunk(model, opt.init(model.params), fresh(), key, x, y, rows,
                                     EP.from_config(ep_cfg), opt, True)
    particles = fresh()
    donated = loop_mod._train_chunk_donating(
        (model, opt.init(model.params), key, x, y, rows, EP.from_config(ep_cfg), opt, True), particles)
    for a, b in zip(jax.tree_util.tree_leaves(eqx.filter(plain, eqx.is_array)),
                    jax.tree_util.tree_leaves(eqx.filter(donated, eqx.is_array))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert all(p.is_deleted() for p in particles)  # updated in place, not copied


def test_checkpoint_writer_snapshots_orders_and_reports_errors(tmp_path, monkeypatch):
    import threading

    from eqdyn.training import CheckpointWriter, _checkpoint, load_checkpoint_leaves

    release, original = threading.Event(), _checkpoint._write_snapshot

    def held(*args):  # the first write waits until the state has been changed under it
        release.wait(10)
        original(*args)

    monkeypatch.setattr(_checkpoint, "_write_snapshot", held)
    state = dict(w=np.arange(6.0).reshape(2, 3), key=np.zeros(2, np.uint32))
    history = [dict(epoch=1)]
    with CheckpointWriter() as writer:
        writer.submit(tmp_path, state, 1, history)
        state["w"][:] = -1.0  # changed after submit: the checkpoint keeps the values at submit
        history[0]["epoch"] = 99
        history.append(dict(epoch=2))
        release.set()
        writer.wait()
        leaves, meta = load_checkpoint_leaves(tmp_path)
        assert meta["epoch"] == 1 and meta["history"] == [dict(epoch=1)]
        np.testing.assert_array_equal(leaves[1], np.arange(6.0).reshape(2, 3))
        writer.submit(tmp_path, state, 2, history)
        writer.submit(tmp_path, dict(w=np.ones(3)), 3, history[:1])  # lands after epoch 2
    leaves, meta = load_checkpoint_leaves(tmp_path)  # closing waited for the last write
    assert meta["epoch"] == 3 and meta["history"] == [dict(epoch=99)]
    np.testing.assert_array_equal(leaves[0], np.ones(3))
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    writer = CheckpointWriter()
    writer.submit(blocked / "run", state, 1, history)  # cannot make a folder inside a file
    with pytest.raises(OSError):
        writer.close()


def test_a_failed_background_write_does_not_hide_the_error_that_stopped_training(
        tmp_path, monkeypatch):
    from eqdyn.training import _checkpoint

    def full(*args):
        raise OSError(28, "No space left on device")

    calls = []

    def failing_evaluate(*args, **kwargs):  # epoch 2's validation fails
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("validation broke")
        return original_evaluate(*args, **kwargs)

    original_evaluate = loop_mod.evaluate
    monkeypatch.setattr(_checkpoint, "_write_snapshot", full)
    monkeypatch.setattr(loop_mod, "evaluate", failing_evaluate)
    with pytest.raises(RuntimeError, match="validation broke") as info:
        train(_cfg(epochs=2), run_dir=tmp_path / "run", progress=None)
    assert any("Writing the last checkpoint also failed" in n and "No space left" in n
               for n in getattr(info.value, "__notes__", []))


def test_resume_is_bit_exact(run_a, tmp_path):
    _, metrics_a, _ = run_a
    run_b = tmp_path / "B"
    first = train(_cfg(epochs=1), run_dir=run_b, progress=None)
    assert len(first["history"]) == 1
    lines = []
    resumed = train(_cfg(epochs=2), run_dir=run_b, resume=True, progress=lines.append)
    assert any("resuming" in line for line in lines)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    for a, b in zip(metrics_a["model"].params, resumed["model"].params):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert resumed["test_accuracy"] == metrics_a["test_accuracy"]


def test_eval_persistent_scores_from_tracked_particles_and_resumes_exactly(run_a, tmp_path):
    """`eval_persistent`: the same training (the weights do not depend on it), validation and
    test particles tracked across epochs and checkpointed (a resumed run ends bit for bit
    where an uninterrupted one does), the from-zero numbers beside; the top-level numbers
    equal an evaluation from the saved particles."""
    from eqdyn.data import load_dataset
    from eqdyn.training import evaluate

    _, metrics_a, _ = run_a
    whole = train(_cfg(eval_persistent=True), run_dir=tmp_path / "W", progress=None)
    for a, b in zip(metrics_a["model"].params, whole["model"].params):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert whole["from_zero"]["test_accuracy"] == metrics_a["test_accuracy"]
    assert whole["from_zero"]["train_accuracy"] == metrics_a["train_accuracy"]
    part = train(_cfg(eval_persistent=True, epochs=1), run_dir=tmp_path / "R", progress=None)
    assert "from_zero" in part
    resumed = train(_cfg(eval_persistent=True), run_dir=tmp_path / "R", resume=True,
                    progress=None)
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        assert resumed[key] == whole[key], key
    # evaluate: zero starting states are the from-zero evaluation; a fixed point stays put
    cfg = _cfg()
    data = load_dataset("digits")
    model = whole["model"]
    ev = relax_configs(cfg)[2]
    x, y = data.x_test[:50], data.y_test[:50]
    plain = evaluate(model, x, y, ev, batch=32)
    zero = evaluate(model, x, y, ev, batch=32, s0=model.init_state(50))
    assert plain["accuracy"] == zero["accuracy"]
    assert [a.shape for a in zero["states"]] == [(50, n) for n in model.state_sizes]
    again = evaluate(model, x, y, ev, batch=25, s0=zero["states"])  # no padded rows
    assert again["steps"] <= 1 and again["accuracy"] == zero["accuracy"]
    for a, b in zip(again["states"], zero["states"]):
        np.testing.assert_allclose(a, b, atol=1e-2)


def test_eval_persistent_needs_persistent_relaxing_runs():
    from eqdyn.training import evaluate, sweep

    with pytest.raises(ConfigError, match="eval_persistent"):
        _cfg(eval_persistent=True, persistent=False)
    with pytest.raises(ConfigError, match="feed-forward"):
        _cfg(eval_persistent=True, algo="backprop")
    with pytest.raises(ConfigError, match="not supported by `sweep`"):
        sweep(dataset="digits", seeds=2, eval_persistent=True)
    model = LayeredHopfield("4-3-2", "hard_sigmoid", key=jax.random.PRNGKey(0))
    x, y = np.zeros((5, 4), np.float32), np.zeros(5, np.int32)
    with pytest.raises(ConfigError, match="one per example"):
        evaluate(model, x, y, RelaxConfig(), s0=model.init_state(4))


def test_resume_errors(run_a, tmp_path):
    run_dir, _, _ = run_a
    with pytest.raises(CheckpointError, match="different configuration.*beta"):
        train(_cfg(beta=0.25), run_dir=run_dir, resume=True, progress=None)
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        train(_cfg(), run_dir=run_dir, progress=None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        train(_cfg(), run_dir=empty, resume=True, progress=None)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(run_dir, corrupt)
    (corrupt / "checkpoint.npz").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        train(_cfg(), run_dir=corrupt, resume=True, progress=None)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(lr="a,b"), "`lr`='a,b' must be one number or comma-separated"),
        (dict(lr="0.1,0.2,0.3"), "gives 3 rates.*2 weight layers"),
        (dict(lr=(0.1, -0.2)), "positive finite"),
        (dict(preset="sb17-9h"), "`preset`='sb17-9h' is not known.*sb17-1h"),
        (dict(variant="two-sided"), "`variant`='two-sided' is not known"),
        (dict(batch_size=0), "`batch_size`=0 must be a positive integer"),
        (dict(epochs=0), "`epochs`=0 must be a positive integer"),
        (dict(solver="rk99"), "`solver`='rk99' is not known"),
        (dict(optimizer="lbfgs"), "`optimizer`='lbfgs' is not known"),
        (dict(beta=0.0), "`beta`=0.0 must be a positive finite number"),
        (dict(learning_rate=0.1), r"unknown option\(s\) \['learning_rate'\]"),
        (dict(arch="64-x-10"), "malformed"),
        (dict(activation="relu"), "'relu' is not known"),
    ],
)
def test_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(**kw)


def test_resolve_config_presets_and_overrides():
    cfg = resolve_config("sb17-2h", epochs=3, lr="0.2,0.1,0.05", seed=None)
    assert cfg.arch == "784-500-500-10" and cfg.epochs == 3 and cfg.lr == (0.2, 0.1, 0.05)
    assert cfg.preset == "sb17-2h" and cfg.variant == "random-sign" and cfg.seed == 0
    assert resolve_config(lr=0.3).lr == (0.3,)
    assert resolve_config().arch == "64-256-10"


def test_arch_must_fit_the_dataset(tmp_path):
    with pytest.raises(ConfigError, match="does not fit the data set 'digits'.*64 inputs"):
        train(resolve_config(arch="784-32-10", epochs=1), progress=None)
    with pytest.raises(ConfigError, match="does not fit"):
        train(resolve_config(arch="64-32-9", epochs=1), progress=None)


# ------------------------------------------------------------------ the sb17 presets' nudging


def test_paper_code_nudging_is_beta_two_and_weak_nudging_has_a_dead_window():
    """Scellier & Bengio's code nudges with beta_p ||y - d||^2 (no 1/2) on states clipped to
    [0, 1] after every Euler step; eqdyn's cost is 1/2 ||y - d||^2, so the paper's beta_p = 1
    is eqdyn's beta = 2 (same nudged fixed point), which the deeper sb17 presets use. And why
    it matters: an output whose free drive g is below -beta stays at 0 in the nudged state
    ((g + beta d) / (1 + beta) at rest), so EP sees no error there; at g = -1.5 the target is
    invisible at beta = 1 and felt at beta = 2."""
    from eqdyn.dynamics import relax_core

    sizes = (6, 5, 4, 3)
    rng = np.random.default_rng(3)
    weights = [rng.normal(0, 0.6, (a, b)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(0, 0.3, (1, b)).astype(np.float32) for b in sizes[1:]]
    x = rng.uniform(0, 1, (4, sizes[0])).astype(np.float32)
    d = np.eye(sizes[-1], dtype=np.float32)[[0, 1, 2, 0]]
    model = LayeredHopfield(sizes, key=jax.random.PRNGKey(0), weights=weights, biases=biases)
    cfg = RelaxConfig(solver="euler", dt0=0.5, tol=1e-6, t1=2000.0, max_steps=4096,
                      on_failure="raise")
    for beta_p in (1.0, -0.25):
        # the paper's iteration: s <- clip(s - eps dF/ds), F = E + beta_p ||y - d||^2
        s = [np.zeros((4, n), np.float32) for n in sizes[1:]]
        for _ in range(3000):
            r = [x] + s
            drive = [r[k] @ weights[k] + biases[k] + (r[k + 2] @ weights[k + 1].T
                                                       if k + 2 < len(r) else 0.0)
                     for k in range(len(s))]
            drive[-1] = drive[-1] + 2 * beta_p * (d - s[-1])
            s = [np.clip(a + 0.5 * (g - a), 0.0, 1.0) for a, g in zip(s, drive)]
        res = relax_core(model, jnp.asarray(x), model.init_state(4), 2 * beta_p, jnp.asarray(d),
                         cfg)
        for a, u in zip(s, model.system.observe(res.states)):
            np.testing.assert_allclose(np.asarray(u), a, atol=1e-4)
    for name, beta in (("sb17-1h", 1.0), ("sb17-2h", 2.0), ("sb17-3h", 2.0)):
        assert resolve_config(name).beta == beta

    # the dead window: one output driven only by its bias, g = -1.5
    dead = LayeredHopfield((2, 2, 1), key=jax.random.PRNGKey(0),
                           weights=[np.zeros((2, 2), np.float32), np.zeros((2, 1), np.float32)],
                           biases=[np.zeros((1, 2), np.float32), np.full((1, 1), -1.5, np.float32)])
    xd, dd = jnp.ones((1, 2), jnp.float32), jnp.ones((1, 1), jnp.float32)
    grads = {}
    for beta in (1.0, 2.0):
        g, _ = ep_gradient(dead, xd, dd, dead.init_state(1),
                           EPConfig(beta=beta, variant="one-sided", free=cfg, nudged=cfg))
        grads[beta] = float(g[-1][0, 0])  # the output bias
    assert grads[1.0] == 0.0
    np.testing.assert_allclose(grads[2.0], -(0.5 / 3) / 2.0, rtol=1e-4)  # -(y^beta - y^0)/beta


def test_train_loads_the_data_on_a_thread_without_hiding_errors(monkeypatch, tmp_path):
    import threading

    import eqdyn.data
    from eqdyn._errors import DataError

    cfg = resolve_config(dataset="mnist", data_dir=str(tmp_path), epochs=1)  # no files there

    def failing_build(cfg, key, dtype=jnp.float32):
        loaded.wait(10)  # the load has failed by now
        raise ConfigError("bad build")

    real_load = eqdyn.data.load_dataset
    loaded = threading.Event()

    def load_and_signal(*a, **k):
        try:
            return real_load(*a, **k)
        finally:
            loaded.set()

    monkeypatch.setattr(eqdyn.data, "load_dataset", load_and_signal)
    monkeypatch.setattr(loop_mod, "build_model", failing_build)
    with pytest.raises(DataError, match="no file"):  # the data's error first, as in sequence
        train(cfg, progress=None)

    # a build error while the data is still loading is raised at once, not after the load
    release, finished = threading.Event(), threading.Event()

    def slow_load(*a, **k):
        release.wait(30)
        finished.set()

    monkeypatch.setattr(eqdyn.data, "load_dataset", slow_load)
    monkeypatch.setattr(loop_mod, "build_model",
                        lambda *a, **k: (_ for _ in ()).throw(ConfigError("bad build")))
    try:
        with pytest.raises(ConfigError, match="bad build"):
            train(cfg, progress=None)
        assert not finished.is_set()  # train did not wait for the load
    finally:
        release.set()
