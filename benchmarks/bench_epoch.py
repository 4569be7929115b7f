"""Time one MNIST epoch of eqdyn's `sb17-1h` training against a plain-NumPy implementation.

Measured in one run (so that ratios are meaningful even on a busy machine):

- the float32 matmul peak of this machine, NumPy on one thread and JAX (`jnp.dot`, jitted);
- eqdyn: `train()` for two epochs of the `sb17-1h` preset; epoch 1 includes compilation, epoch
  2 is the steady state. `train()` also relaxes the validation set at the end of every epoch;
  that pass is timed separately and subtracted to give the training-only time;
- NumPy (`numpy_reference.NumpyEP`, OpenBLAS on one thread, in a subprocess): the first N
  batches of eqdyn's epoch 1 from the same initial weights, in the same order, with the same
  random signs of beta, extrapolated to the epoch's batch count. eqdyn runs the same N batches
  too (`train_chunk`), so step counts and final weights can be compared one to one;
- matmul FLOPs of the eqdyn epoch from the architecture and the measured step counts, the
  achieved GFLOP/s and its fraction of the JAX matmul peak (the count is documented in the JSON).

Usage (from the repository root):

    python benchmarks/bench_epoch.py                 # MNIST, writes benchmarks/results/epoch_time.json
    python benchmarks/bench_epoch.py --quick         # digits smoke run (CI size)
    python benchmarks/bench_epoch.py --arch 784-500-500-500-10 --lr 0.128,0.032,0.008,0.002 \
        --beta 2 --batch-size 256 --numpy-batches 20 \
        --out benchmarks/results/epoch_time_784x500x500x500x10_b256.json

`--arch`, `--lr`, `--beta`, `--batch-size` and `--backend` change the network and its settings;
everything else stays sb17-1h's (hard sigmoid, random-sign EP, persistent particles, SGD, the
same relaxation in both phases), which NumPy then runs too.
"""

from __future__ import annotations

import os
import sys

# The NumPy worker must see a single BLAS thread: set it before NumPy is ever imported.
if __name__ == "__main__" and "--numpy-worker" in sys.argv:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

#: a note stored with every result
FLOP_NOTE = (
    "Matmul FLOPs only (2 m k n per product; elementwise work is not counted). Layers n_0..n_L, "
    "batch B. Per relaxation: the clamped drive x W_1 once (2 B n_0 n_1, hoisted out of the "
    "loop). Per field evaluation: every W_k with k >= 2 twice (bottom-up into layer k and "
    "top-down into layer k-1): 4 B sum_{k>=2} n_{k-1} n_k. Per dF/dtheta: 2 B sum_k n_{k-1} n_k, "
    "twice per batch (free and nudged state). 'algorithmic' counts 1 field evaluation per Euler "
    "step plus 1 on the initial state of each phase (what NumpyEP executes). 'executed' counts "
    "what eqdyn/diffrax evaluate: per phase 1 event check on the initial state, 2 per step (the "
    "Euler step and the steady-state event check on the new state) and 1 final residual in "
    "relax_core, i.e. 2 steps + 2 with backend 'diffrax'; steps + 1 with 'fused' (one per step) "
    "and with 'blocks' (a sweep evaluates each of the two classes of layers once, i.e. one field "
    "evaluation, plus the full evaluation on the initial state); x W_1 once per batch (XLA "
    "merges the two phases' identical products, checked in the compiled HLO) and the EP "
    "difference's x^T rho(h) once, on rho(h^beta) - rho(h^0) (CompiledSystem.param_grads_delta), "
    "so 2 B n_0 n_1 less each. The validation pass train() makes at the end "
    "of every epoch is excluded (its time is subtracted)."
)


# ----------------------------------------------------------------------------------------
# helpers shared by both processes


def write_json_atomic(path: Path, obj) -> None:
    """Write standard JSON (NaN as null) through a temporary file, atomically."""
    from eqdyn.training import write_json

    write_json(path, obj)


def matmul_flops(sizes, batch):
    """(per x W_1, per field evaluation, per dF/dtheta) matmul FLOPs for one batch."""
    const = 2 * batch * sizes[0] * sizes[1]
    field = sum(4 * batch * sizes[k - 1] * sizes[k] for k in range(2, len(sizes)))
    grads = sum(2 * batch * sizes[k - 1] * sizes[k] for k in range(1, len(sizes)))
    return const, field, grads


def batch_flops(sizes, batch, free_steps, nudged_steps, executed: bool, backend="diffrax"):
    """Matmul FLOPs of one batch (see FLOP_NOTE): `executed` is what eqdyn runs with
    `backend`, otherwise what the algorithm needs (what NumpyEP runs)."""
    const, field, grads = matmul_flops(sizes, batch)
    if executed and backend == "diffrax":
        evals = (2 * free_steps + 2) + (2 * nudged_steps + 2)
    else:  # fused Euler and block sweeps: one field evaluation per step / sweep, + the first
        evals = (free_steps + 1) + (nudged_steps + 1)
    if not executed:
        return 2 * const + evals * field + 2 * grads
    # eqdyn: x W_1 once per batch (XLA merges the two phases' identical products), and the
    # EP difference's x^T rho(h) once, on rho(h^beta) - rho(h^0) (`param_grads_delta`)
    return const + evals * field + 2 * grads - 2 * batch * sizes[0] * sizes[1]


def numpy_matmul_peak(sizes=(1024, 2048), repeats=5) -> dict:
    out = {}
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(repeats))
        out[str(n)] = 2 * n**3 / best / 1e9
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------------------
# NumPy worker (a subprocess with one BLAS thread)


def numpy_worker(spec_path: str, out_path: str) -> None:
    from numpy_reference import NumpyEP

    spec = np.load(spec_path)
    meta = json.loads(str(spec["meta"]))
    L = len(meta["sizes"]) - 1
    blas = None
    try:
        from threadpoolctl import threadpool_info

        blas = [
            {k: i.get(k) for k in ("internal_api", "num_threads", "version", "architecture")}
            for i in threadpool_info()
        ]
    except Exception:  # threadpoolctl is optional
        pass
    peak = numpy_matmul_peak()
    floor = numpy_input_layer_floor(meta["sizes"][0], meta["sizes"][1], meta["batch_size"])
    best = None
    for _ in range(2):  # the same batches twice from the same start; keep the faster run
        net = NumpyEP(
            meta["sizes"], [spec[f"W{k}"] for k in range(L)], [spec[f"b{k}"] for k in range(L)],
            lr=meta["lr"], beta=meta["beta"], dt0=meta["dt0"], tol=meta["tol"],
            free_t1=meta["free_t1"], nudged_t1=meta["nudged_t1"], n_examples=spec["x"].shape[0],
            persistent=meta["persistent"], dtype=np.float32,
            relaxation=meta.get("relaxation", "euler"),
        )
        st = net.epoch(spec["x"], spec["y"], meta["batch_size"], order=spec["order"],
                       signs=spec["signs"], n_classes=meta["sizes"][-1])
        if best is None or st["total_seconds"] < best[0]["total_seconds"]:
            best = (st, net)
    st, net = best
    np.savez(Path(out_path).with_suffix(".npz"), *net.params)
    write_json_atomic(Path(out_path), dict(
        env={v: os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
        blas=blas,
        matmul_gflops=peak,
        input_layer_floor_s_per_batch=floor,
        n_batches=int(st["n_batches"]),
        total_seconds=float(st["total_seconds"]),
        seconds=st["seconds"].tolist(),
        free_steps=st["free_steps"].tolist(),
        nudged_steps=st["nudged_steps"].tolist(),
        loss=st["loss"].tolist(),
    ))


# ----------------------------------------------------------------------------------------
# main process (JAX)


def jax_matmul_peak(sizes=(1024, 2048), repeats=7) -> dict:
    import jax
    import jax.numpy as jnp

    dot = jax.jit(jnp.dot)
    out = {}
    for n in sizes:
        ka, kb = jax.random.split(jax.random.PRNGKey(n))
        a = jax.random.normal(ka, (n, n), jnp.float32)
        b = jax.random.normal(kb, (n, n), jnp.float32)
        dot(a, b).block_until_ready()
        best = min(_timed(lambda: dot(a, b).block_until_ready()) for _ in range(repeats))
        out[str(n)] = 2 * n**3 / best / 1e9
    return out


def input_layer_floor(n_in, n_hidden, batch, n_batches=500, repeats=3) -> float:
    """Seconds per batch of the two input-layer products alone, in JAX: `x W_1` and the rank-B
    update `W_1 -= lr x^T g(x W_1)`, in sequence over `n_batches` batches (each batch needs the
    previous update, as in SGD), best of `repeats`. Every implementation of the algorithm at
    this batch size runs these two products per batch, so the epoch cannot take less than this
    times the batch count in JAX; the rest of the batch (relaxation sweeps, the other layers,
    the optimiser) comes on top."""
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    xs = jax.random.uniform(key, (n_batches, batch, n_in), jnp.float32)
    w0 = 0.01 * jax.random.normal(key, (n_in, n_hidden), jnp.float32)

    @jax.jit
    def run(w, xs):
        def step(w, x):
            h = x @ w
            return w - 1e-3 * (x.T @ jnp.tanh(h)), None
        return jax.lax.scan(step, w, xs)[0]

    run(w0, xs).block_until_ready()
    best = min(_timed(lambda: run(w0, xs).block_until_ready()) for _ in range(repeats))
    return best / n_batches


def numpy_input_layer_floor(n_in, n_hidden, batch, n_batches=300, repeats=3) -> float:
    """`input_layer_floor` in NumPy (called in the one-thread worker)."""
    rng = np.random.default_rng(0)
    xs = rng.uniform(size=(n_batches, batch, n_in)).astype(np.float32)
    w0 = (0.01 * rng.standard_normal((n_in, n_hidden))).astype(np.float32)

    def run():
        w = w0.copy()
        for x in xs:
            w -= np.float32(1e-3) * (x.T @ np.tanh(x @ w))
        return w

    run()
    return min(_timed(run) for _ in range(repeats)) / n_batches


def start_run(**versions) -> tuple:
    """Read the load and the machine at the start of a benchmark and print them.

    `versions` (e.g. `sympy=sympy.__version__`) are added to the machine info and printed.
    Returns `(load_start, busy, info)` for `load_report`.
    """
    load_start = os.getloadavg()
    cpu_start = _cpu_stat()
    busy = _other_busy_processes()
    info = machine_info()
    info.update(versions)
    info["_cpu_stat_start"] = cpu_start  # for load_report's steal share; not written out
    extra = "".join(f", {k} {v}" for k, v in versions.items())
    print(f"machine: {info['cpu']}, {info['usable_cpus']} CPUs, jax {info['jax']} "
          f"({info['jax_backend']}){extra}, load average {load_start[0]:.2f}")
    if busy:
        print("other busy processes:\n  " + "\n  ".join(busy))
    return load_start, busy, info


def save_result(out, result: dict, script: str, argv, print_table) -> int:
    """Record the command, write the JSON atomically, print the table; the exit status."""
    result["command"] = " ".join(["python", f"benchmarks/{script}", *argv])
    write_json_atomic(out, result)
    print_table(result)
    print(f"\nwrote {out} ({result['bench_wall_s']:.0f} s)")
    return 0


def load_report(info: dict, load_start, busy) -> dict:
    """The machine and how busy it was, for the result JSON (read at the end of a run).

    `cpu_steal_fraction`: the share of the CPUs' time the hypervisor gave to other virtual
    machines between `start_run()` and now (counters it keeps in `info`), from
    /proc/stat; on a shared virtual machine it is one source of run-to-run noise. The
    contention note is set when another process was busy at the start or more than 5 % of
    the CPU time was stolen."""
    steal = steal_share(info.get("_cpu_stat_start"), _cpu_stat())
    why = []
    if busy:
        why.append("other processes were using the CPUs at the start (other_busy_processes_at_start)")
    if steal is not None and steal > 0.05:
        why.append(f"the hypervisor took {100 * steal:.0f} % of the CPU time (cpu_steal_fraction)")
    return dict(
        machine={k: v for k, v in info.items() if not k.startswith("_")},
        load_average_start=list(load_start),
        load_average_end=list(os.getloadavg()),
        cpu_steal_fraction=steal,
        other_busy_processes_at_start=busy,
        contention_note=(
            "During this run " + " and ".join(why) + "; absolute times are inflated, ratios "
            "measured in one run remain meaningful." if why else None),
    )


def machine_info() -> dict:
    import jax

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return dict(
        platform=platform.platform(), python=platform.python_version(), cpu=cpu,
        cpu_count=os.cpu_count(), usable_cpus=usable, jax=jax.__version__, numpy=np.__version__,
        jax_backend=jax.default_backend(), jax_devices=[str(d) for d in jax.devices()],
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def steal_share(start, end):
    """The hypervisor's share of the CPU time between two `_cpu_stat()` readings (None where
    /proc/stat could not tell)."""
    if start is None or end is None:
        return None
    total = sum(end) - sum(start)
    return (end[7] - start[7]) / total if total > 0 else None


def _cpu_stat():
    """The machine's CPU time counters (user, nice, system, idle, iowait, irq, softirq, steal),
    or None where /proc/stat cannot tell."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        values = [int(v) for v in fields[1:9]]
    except (OSError, IndexError, ValueError):
        return None
    return values if len(values) == 8 else None


def _process_ticks() -> dict:
    """CPU ticks (user + system) and name of every process now, by pid, from /proc."""
    ticks = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                text = (d / "stat").read_text()
                name = text[text.index("(") + 1:text.rindex(")")]
                fields = text.rsplit(")", 1)[1].split()
                ticks[d.name] = (int(fields[11]) + int(fields[12]), name)
            except (OSError, IndexError, ValueError):
                pass  # exited meanwhile
    return ticks


def _other_busy_processes() -> list[str]:
    """Other processes that used at least 20 % of a CPU over the last second (a busy machine
    slows both sides of a comparison), from two samples of /proc one second apart; a job paused
    with `kill -STOP`, or one that exited, does not count. Without /proc: `ps`'s CPU share
    (>= 20 %; a lifetime share on Linux, a decaying average on BSD and macOS), less precise."""
    me = str(os.getpid())
    if Path("/proc/self/stat").exists():
        t0, before = time.monotonic(), _process_ticks()
        time.sleep(1.0)
        dt, after = time.monotonic() - t0, _process_ticks()
        hz = os.sysconf("SC_CLK_TCK")
        busy = []
        for pid, (ticks, name) in after.items():
            # a process born during the second used all its ticks within it
            share = 100.0 * (ticks - before.get(pid, (0, name))[0]) / hz / dt
            if pid != me and share >= 20.0:
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    cmd = cmd.decode(errors="replace").strip() or f"[{name}]"
                except OSError:
                    cmd = f"[{name}]"
                busy.append((share, f"{share:.0f}% in the last second: {cmd[:100]}"))
        return [b for _, b in sorted(busy, reverse=True)][:6]
    try:
        out = subprocess.run(["ps", "-eo", "pid,stat,pcpu,args"], capture_output=True,
                             text=True, timeout=10).stdout.splitlines()[1:]
    except Exception:
        return []
    busy = []
    for line in out:
        parts = line.split(None, 3)
        try:
            share = float(parts[2])
        except (IndexError, ValueError):
            continue
        if len(parts) == 4 and parts[0] != me and share >= 20.0 \
                and not parts[1].upper().startswith("T"):
            busy.append((share, f"{parts[2]}% (ps): {parts[3][:100]}"))
    return [b for _, b in sorted(busy, reverse=True)][:6]


def _epoch_one_setup(cfg, dataset, n_batches_np: int):
    """Initial model, the first batches of epoch 1 and their signs, exactly as train() draws them."""
    import jax

    from eqdyn.training import epoch_order
    from eqdyn.models import LayeredHopfield, parse_arch

    sizes = parse_arch(cfg.arch)
    key = jax.random.PRNGKey(cfg.seed)
    k_init, k_train, k_perm = jax.random.split(key, 3)
    model = LayeredHopfield(sizes, cfg.activation, cfg.formulation, key=k_init)
    n_train = dataset.x_train.shape[0]
    n_batches = n_train // cfg.batch_size
    n_chunks = -(-n_batches // cfg.chunk)
    per_chunk = n_batches // n_chunks
    perm = epoch_order(k_perm, 0, n_train, n_chunks * per_chunk * cfg.batch_size)
    perm = np.asarray(perm).reshape(-1, cfg.batch_size)
    nb = min(n_batches_np, perm.shape[0])
    batches = perm[:nb]
    signs, k = [], k_train
    for _ in range(nb):  # train_chunk: key, sub = split(key); beta > 0 where bernoulli(sub)
        k, sub = jax.random.split(k)
        signs.append(bool(jax.random.bernoulli(sub)))
    return model, sizes, batches, np.asarray(signs), n_chunks * per_chunk


def bench_config(args):
    """The `TrainConfig` measured: sb17-1h, on digits with `--quick`, with `--arch`, `--lr`,
    `--backend`, `--batch-size` and `--beta` overriding it (a `ConfigError` names a bad one)."""
    from eqdyn.training import resolve_config

    if args.quick:
        return resolve_config(preset="sb17-1h", dataset="digits", arch=args.arch or "64-256-10",
                              epochs=2, backend=args.backend, batch_size=args.batch_size,
                              lr=args.lr, beta=args.beta)
    return resolve_config(preset="sb17-1h", data_dir=str(args.data_dir), epochs=2,
                          backend=args.backend, batch_size=args.batch_size, arch=args.arch,
                          lr=args.lr, beta=args.beta)


def run(args) -> dict:
    import jax
    import jax.numpy as jnp

    from eqdyn.data import load_dataset
    from eqdyn.learning import EP, EPConfig
    from eqdyn.training import evaluate, make_optimizer, relax_configs, train, train_chunk

    t_run = time.perf_counter()
    load_start, busy, info = start_run()

    cfg = bench_config(args)
    relaxation = "blocks" if cfg.backend == "blocks" else "euler"
    print(f"backend {cfg.backend!r} (NumPy: {relaxation}), batch {cfg.batch_size}")
    dataset = load_dataset(cfg.dataset, cfg.data_dir, val_size=cfg.val_size)

    # 1. matmul peaks (JAX here; NumPy in the worker, on one thread)
    jax_peak = jax_matmul_peak()
    print(f"JAX matmul peak: {max(jax_peak.values()):.1f} GFLOP/s")
    sizes_cfg = [int(n) for n in cfg.arch.split("-")]
    jax_floor = input_layer_floor(sizes_cfg[0], sizes_cfg[1], cfg.batch_size)
    print(f"JAX input-layer floor: {1e3 * jax_floor:.3f} ms per batch")

    # 2. NumPy on the first N batches of epoch 1 (subprocess, OPENBLAS_NUM_THREADS=1)
    model0, sizes, batches, signs, n_batches_epoch = _epoch_one_setup(
        cfg, dataset, args.numpy_batches)
    nb = batches.shape[0]
    rows = batches.reshape(-1)
    with tempfile.TemporaryDirectory(prefix="eqdyn-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.npz", Path(tmp) / "numpy.json"
        L = len(sizes) - 1
        meta = dict(sizes=list(sizes), lr=list(cfg.lr), beta=cfg.beta, dt0=cfg.dt0, tol=cfg.tol,
                    free_t1=cfg.free_t1, nudged_t1=cfg.nudged_t1, batch_size=cfg.batch_size,
                    persistent=cfg.persistent, relaxation=relaxation)
        np.savez(
            spec_path, meta=json.dumps(meta), x=dataset.x_train[rows], y=dataset.y_train[rows],
            order=np.arange(rows.size), signs=signs,
            **{f"W{k}": np.asarray(w) for k, w in enumerate(model0.weights)},
            **{f"b{k}": np.asarray(b) for k, b in enumerate(model0.biases)},
        )
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        print(f"NumPy: {nb} batches on one thread ...", flush=True)
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--numpy-worker",
                        str(spec_path), str(out_path)], env=env, check=True)
        np_res = json.loads(out_path.read_text())
        with np.load(out_path.with_suffix(".npz")) as z:
            np_params = [z[f"arr_{i}"] for i in range(2 * L)]

    # 3. eqdyn on the same N batches (same init, order, signs): steps, weights, steady time
    free_cfg, nudged_cfg, eval_cfg = relax_configs(cfg)
    ep_cfg = EPConfig(beta=cfg.beta, variant=cfg.variant, free=free_cfg, nudged=nudged_cfg)
    opt = make_optimizer(cfg, model0.n_layers)
    x_train = jnp.asarray(dataset.x_train)
    y_train = jnp.asarray(dataset.y_train, jnp.int32)
    n_train = x_train.shape[0]

    def first_n():
        particles = model0.init_state(n_train)
        out = train_chunk(model0, opt.init(model0.params), particles,
                           jax.random.split(jax.random.PRNGKey(cfg.seed), 3)[1], x_train, y_train,
                           jnp.asarray(batches), EP.from_config(ep_cfg), opt, cfg.persistent)
        jax.block_until_ready(out)
        return out

    t0 = time.perf_counter()
    m_n, _, _, _, st_n = first_n()
    first_n_compile_s = time.perf_counter() - t0
    eqdyn_first_n_s = min(_timed(first_n) for _ in range(3))  # steady state, best of 3
    eq_free = np.asarray(st_n["free_steps"])
    eq_nudged = np.asarray(st_n["nudged_steps"])
    np_free = np.asarray(np_res["free_steps"])
    np_nudged = np.asarray(np_res["nudged_steps"])
    same_steps = (eq_free == np_free) & (eq_nudged == np_nudged)
    max_param_diff = max(float(np.max(np.abs(np.asarray(a) - b)))
                         for a, b in zip(m_n.params, np_params))
    max_param_scale = max(float(np.max(np.abs(b))) for b in np_params)
    print(f"eqdyn, same {nb} batches: {eqdyn_first_n_s:.2f} s (compile+run {first_n_compile_s:.1f} s)")

    # 4. eqdyn: two full epochs through train()
    print(f"eqdyn: 2 epochs of {cfg.dataset} ({n_batches_epoch} batches each) ...", flush=True)
    t0 = time.perf_counter()
    metrics = train(cfg, progress=None, dataset=dataset)
    train_wall_s = time.perf_counter() - t0
    hist = metrics["history"]
    model = metrics["model"]
    # the validation pass inside each epoch (already compiled by train(): same shapes, config)
    val_times = []
    for _ in range(2):
        t0 = time.perf_counter()
        val = evaluate(model, dataset.x_val, dataset.y_val, eval_cfg, cfg.eval_batch)
        val_times.append(time.perf_counter() - t0)
    val_eval_s = min(val_times)

    # 5. derived numbers
    h1, h2 = hist[0], hist[1]
    eq_epoch_s = h2["seconds"]
    eq_train_s = max(eq_epoch_s - val_eval_s, 1e-9)
    compile_s = h1["seconds"] - h2["seconds"]
    B = cfg.batch_size
    fl_exec = n_batches_epoch * batch_flops(sizes, B, h2["free_steps"], h2["nudged_steps"], True,
                                            cfg.backend)
    fl_alg = n_batches_epoch * batch_flops(sizes, B, h2["free_steps"], h2["nudged_steps"], False)
    jax_peak_best = max(jax_peak.values())
    np_peak_best = max(np_res["matmul_gflops"].values())

    np_sec = np.asarray(np_res["seconds"])
    np_first_n_s = float(np_sec.sum())
    np_epoch_s = float(np_sec.mean()) * n_batches_epoch
    # time per batch = a + b * (free + nudged steps): re-weight to eqdyn's epoch-2 step counts
    steps = np_free + np_nudged
    if np.ptp(steps) > 0 and nb >= 3:
        b_fit, a_fit = np.polyfit(steps, np_sec, 1)
    else:
        a_fit, b_fit = float(np_sec.mean()), 0.0
    np_epoch_step_model_s = n_batches_epoch * (a_fit + b_fit * (h2["free_steps"] + h2["nudged_steps"]))
    np_fl_alg = sum(batch_flops(sizes, B, f, n, False) for f, n in zip(np_free, np_nudged))

    result = dict(
        **load_report(info, load_start, busy),
        config=cfg.to_json(),
        dataset=dict(name=dataset.name, n_train=int(n_train), n_val=int(dataset.x_val.shape[0])),
        n_batches_per_epoch=int(n_batches_epoch),
        matmul_peak_gflops=dict(
            numpy_1_thread=np_res["matmul_gflops"], numpy_1_thread_best=np_peak_best,
            jax=jax_peak, jax_best=jax_peak_best,
            note="float32 square matmuls n x n, best of several; NumPy with OPENBLAS_NUM_THREADS=1",
        ),
        eqdyn=dict(
            epoch1_s=h1["seconds"], epoch2_s=eq_epoch_s,
            compile_s_estimate=compile_s,
            val_eval_s=val_eval_s,
            epoch2_train_only_s=eq_train_s,
            train_wall_s=train_wall_s,
            free_steps_epoch1=h1["free_steps"], nudged_steps_epoch1=h1["nudged_steps"],
            free_steps_epoch2=h2["free_steps"], nudged_steps_epoch2=h2["nudged_steps"],
            free_converged_epoch2=h2["free_converged"],
            nudged_converged_epoch2=h2["nudged_converged"],
            val_accuracy_epoch1=h1["val_accuracy"], val_accuracy_epoch2=h2["val_accuracy"],
            val_eval_steps=val["steps"],
            epoch2_matmul_gflop_executed=fl_exec / 1e9,
            epoch2_matmul_gflop_algorithmic=fl_alg / 1e9,
            achieved_gflops_executed=fl_exec / eq_train_s / 1e9,
            achieved_gflops_algorithmic=fl_alg / eq_train_s / 1e9,
            fraction_of_jax_peak_executed=fl_exec / eq_train_s / 1e9 / jax_peak_best,
            first_n_batches_s=eqdyn_first_n_s,
            first_n_compile_and_run_s=first_n_compile_s,
            note=("epoch*_s are train()'s history seconds: the training batches plus its "
                  "validation pass (val_eval_s, timed again after training and subtracted for "
                  "epoch2_train_only_s). compile_s_estimate = epoch1_s - epoch2_s."),
        ),
        numpy=dict(
            n_batches=nb,
            first_n_batches_s=np_first_n_s,
            mean_batch_s=float(np_sec.mean()),
            epoch_s_extrapolated=np_epoch_s,
            epoch_s_step_model=float(np_epoch_step_model_s),
            step_model=dict(intercept_s=float(a_fit), per_step_s=float(b_fit),
                            note="per-batch time = a + b (free + nudged steps), fitted on the N "
                                 "batches, evaluated at eqdyn's epoch-2 mean steps"),
            free_steps_mean=float(np_free.mean()), nudged_steps_mean=float(np_nudged.mean()),
            achieved_gflops_algorithmic=np_fl_alg / np_first_n_s / 1e9,
            fraction_of_numpy_peak=np_fl_alg / np_first_n_s / 1e9 / np_peak_best,
            blas=np_res["blas"], env=np_res["env"],
        ),
        like_for_like=dict(
            n_batches=nb,
            eqdyn_free_steps_mean=float(eq_free.mean()),
            eqdyn_nudged_steps_mean=float(eq_nudged.mean()),
            numpy_free_steps_mean=float(np_free.mean()),
            numpy_nudged_steps_mean=float(np_nudged.mean()),
            batches_with_identical_steps=int(np.sum(same_steps)),
            first_batch_with_different_steps=(int(np.argmin(same_steps))
                                              if not same_steps.all() else None),
            max_abs_param_diff_after_n_batches=max_param_diff,
            max_abs_param=max_param_scale,
            note=("the first N batches of eqdyn's epoch 1 (same initial weights, order and signs "
                  "of beta) run by eqdyn's train_chunk and by NumpyEP, both float32. Step counts "
                  "agree exactly until a residual crosses tol within float32 rounding of it (XLA "
                  "and OpenBLAS sum in different orders); from then on the two trajectories "
                  "differ by float32 noise amplified by training, not by algorithm (in float64 "
                  "they agree to 1e-10, tests/test_numpy_reference.py)"),
        ),
        floor=dict(
            jax_input_layer_s_per_batch=jax_floor,
            numpy_input_layer_s_per_batch=np_res["input_layer_floor_s_per_batch"],
            jax_input_layer_s_per_epoch=jax_floor * n_batches_epoch,
            eqdyn_share_of_epoch=jax_floor * n_batches_epoch / eq_train_s,
            numpy_share_of_epoch=(np_res["input_layer_floor_s_per_batch"] * n_batches_epoch
                                  / np_epoch_s),
            max_ratio_numpy_over_jax=np_epoch_s / (jax_floor * n_batches_epoch),
            note=("the two input-layer products per batch (x W_1 and the rank-B update x^T g), "
                  "timed alone in sequence over batches (input_layer_floor), as XLA runs them "
                  "here: a measured floor under any JAX epoch of this algorithm at this batch "
                  "size, so NumPy's epoch over it bounds the NumPy / eqdyn ratio "
                  "(max_ratio_numpy_over_jax)"),
        ),
        ratios=dict(
            numpy_epoch_over_eqdyn_epoch=np_epoch_s / eq_epoch_s,
            numpy_epoch_over_eqdyn_train_only=np_epoch_s / eq_train_s,
            numpy_step_model_over_eqdyn_train_only=np_epoch_step_model_s / eq_train_s,
            same_n_batches_numpy_over_eqdyn=np_first_n_s / eqdyn_first_n_s,
            note=("numpy_epoch = mean NumPy batch time x batches per epoch (training only); "
                  "eqdyn_epoch = epoch-2 time from train() history (includes its validation "
                  "pass); train_only subtracts that pass; same_n_batches compares identical work"),
        ),
        flop_count=FLOP_NOTE,
        flops_per_batch=dict(zip(("x_W1", "field_eval", "param_grads"),
                                 matmul_flops(sizes, B))),
        bench_wall_s=None,
    )
    result["bench_wall_s"] = time.perf_counter() - t_run
    return result


def print_table(r: dict) -> None:
    e, n, q, p = r["eqdyn"], r["numpy"], r["like_for_like"], r["matmul_peak_gflops"]
    rows = [
        ("matmul peak, GFLOP/s", f"{p['jax_best']:.1f} (JAX)", f"{p['numpy_1_thread_best']:.1f} (1 thread)"),
        ("epoch, s", f"{e['epoch2_s']:.2f} (+{e['compile_s_estimate']:.1f} compile)",
         f"{n['epoch_s_extrapolated']:.1f} (from {n['n_batches']} batches)"),
        ("epoch, training only, s", f"{e['epoch2_train_only_s']:.2f}",
     f"{n['epoch_s_step_model']:.1f} (re-weighted to epoch-2 steps)"),
        (f"same {q['n_batches']} batches, s", f"{e['first_n_batches_s']:.3f}", f"{n['first_n_batches_s']:.3f}"),
        (f"free / nudged steps, {q['n_batches']} batches",
         f"{q['eqdyn_free_steps_mean']:.2f} / {q['eqdyn_nudged_steps_mean']:.2f}",
         f"{q['numpy_free_steps_mean']:.2f} / {q['numpy_nudged_steps_mean']:.2f}"),
        ("free / nudged steps, epoch 2", f"{e['free_steps_epoch2']:.2f} / {e['nudged_steps_epoch2']:.2f}", ""),
        ("achieved GFLOP/s", f"{e['achieved_gflops_executed']:.2f} executed "
         f"({100 * e['fraction_of_jax_peak_executed']:.1f}% of peak)",
         f"{n['achieved_gflops_algorithmic']:.2f} ({100 * n['fraction_of_numpy_peak']:.1f}% of peak)"),
    ]
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    print(f"\n{'':{w0}}  {'eqdyn (JAX)':{w1}}  NumPy")
    for a, b, c in rows:
        print(f"{a:{w0}}  {b:{w1}}  {c}")
    rt = r["ratios"]
    print(f"\nNumPy / eqdyn: epoch {rt['numpy_epoch_over_eqdyn_epoch']:.1f}x, training only "
          f"{rt['numpy_epoch_over_eqdyn_train_only']:.1f}x, same batches "
          f"{rt['same_n_batches_numpy_over_eqdyn']:.1f}x")
    print(f"identical step counts in {q['batches_with_identical_steps']}/{q['n_batches']} batches; "
          f"max |param diff| after them {q['max_abs_param_diff_after_n_batches']:.2e}")
    f = r["floor"]
    print(f"input-layer products alone: JAX {1e3 * f['jax_input_layer_s_per_batch']:.3f} ms, "
          f"NumPy {1e3 * f['numpy_input_layer_s_per_batch']:.3f} ms per batch "
          f"({100 * f['eqdyn_share_of_epoch']:.0f}% / {100 * f['numpy_share_of_epoch']:.0f}% of "
          f"the epochs); attainable NumPy / eqdyn ratio <= {f['max_ratio_numpy_over_jax']:.1f}x")
    if r["contention_note"]:
        print(f"note: {r['contention_note']}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--numpy-worker":
        numpy_worker(argv[1], argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=REPO / ".." / "shared" / "data" / "mnist",
                    help="folder with the MNIST IDX files (default: ../shared/data/mnist from the "
                         "repository root)")
    ap.add_argument("--numpy-batches", type=int, default=None,
                    help="batches the NumPy implementation runs (default 100; 20 with --quick)")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default benchmarks/results/epoch_time.json, or "
                         "epoch_time_quick.json with --quick; --arch, --batch-size, --beta "
                         "and --backend add to the name, e.g. epoch_time_784x500x10_b256.json)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run on scikit-learn's digits (64-256-10) instead of MNIST")
    ap.add_argument("--backend", choices=["diffrax", "fused", "blocks"], default=None,
                    help="eqdyn's relaxation (default: the sb17-1h preset's); NumPy runs the same "
                         "algorithm (block sweeps with blocks, Euler steps otherwise)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="minibatch size (default: the preset's 20)")
    ap.add_argument("--arch", default=None,
                    help="layer sizes, e.g. 784-500-500-500-10 (default: the preset's 784-500-10); "
                         "every other setting stays sb17-1h's (block sweeps in both phases)")
    ap.add_argument("--lr", default=None,
                    help="per-layer learning rates, input side first, one per weight layer "
                         "(needed with a deeper --arch, e.g. 0.128,0.032,0.008,0.002)")
    ap.add_argument("--beta", type=float, default=None,
                    help="nudging strength (default: the preset's 1; the deeper nets of "
                         "Scellier & Bengio train at 2, see the sb17-3h preset)")
    args = ap.parse_args(argv)
    if args.numpy_batches is None:
        args.numpy_batches = 20 if args.quick else 100
    if args.numpy_batches < 1:
        ap.error("--numpy-batches must be positive")
    if args.batch_size is not None and args.batch_size < 1:
        ap.error(f"--batch-size {args.batch_size} must be positive")
    if args.out is None:
        stem = "epoch_time_quick" if args.quick else "epoch_time"
        if args.arch:
            stem += "_" + args.arch.replace("-", "x")
        if args.batch_size:
            stem += f"_b{args.batch_size}"
        if args.beta is not None:
            stem += f"_beta{args.beta:g}"
        if args.backend:
            stem += f"_{args.backend}"
        args.out = HERE / "results" / f"{stem}.json"
    args.data_dir = args.data_dir.resolve()
    from eqdyn._errors import ConfigError

    try:
        bench_config(args)
    except ConfigError as e:
        ap.error(str(e))
    return save_result(args.out, run(args), "bench_epoch.py", argv, print_table)


if __name__ == "__main__":
    sys.exit(main())
