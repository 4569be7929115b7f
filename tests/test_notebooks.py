"""Every notebook in notebooks/ runs from top to bottom without an error, and shows its result
(a check cell per notebook, `CHECKS`, is appended before it runs).

Each notebook is executed with nbclient in a fresh `python3` kernel whose working directory is
notebooks/. `EQDYN_QUICK=1` is put in the environment first (the kernel inherits it), and the
notebooks read it to shorten their training runs. Skipped when nbformat, nbclient or ipykernel
is not installed (`pip install -e .[dev]`).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300


def _has_python3_kernel() -> bool:
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        return False
    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return False
    return True


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, (
                f"{path.name}: code cell {i} has stored outputs; clear them before committing "
                "(e.g. `jupyter nbconvert --clear-output --inplace`)."
            )


#: a cell appended to each notebook: what its study must show, in quick mode too (a notebook
#: that runs but computes nonsense fails here)
CHECKS = {
    "01_quickstart.ipynb": (
        "assert int(result.steps) > 0 and float(F[-1]) < float(F[1]), (result.steps, F)\n"
        "assert metrics['test_accuracy'] > 0.2, metrics['test_accuracy']  # chance is 0.1"),
    "02_early_inference.ipynb":
        "assert r.refused == '' and np.all(r.cos_lead > 0.99), r.cos_lead  # the claim holds",
    "03_bias_vs_beta.ipynb": (
        "assert 0.7 < b.slopes['one-sided'] < 1.3, b.slopes\n"
        "assert np.all(b.errors['holomorphic'] < b.errors['one-sided']), b.errors"),
    "04_convergence.ipynb":
        "assert all(r['converged'] and r['energy_increase'] <= 1e-9 for r in c.rows), c.rows",
    "05_training_dynamics.ipynb": (
        "assert r.loss_ep[-1] < r.loss_ep[0], r.loss_ep\n"
        "assert np.all(r.cosine > 0.9), r.cosine  # EP's update follows the gradient"),
    "06_gdu.ipynb": "assert r.free_residual < 1e-3, r.free_residual",
    "07_noise.ipynb": (
        "holo, classic = r.labels[-1], r.labels[0]\n"
        "assert np.mean(r.errors[holo]) < np.mean(r.errors[classic]), (r.labels, r.errors)"),
    "08_boltzmann.ipynb": (
        "assert tv < 0.03 and recon[-1] < recon[0], (tv, recon)\n"
        "assert ll > ll_base and err_h < 0.2 and err_label < 0.2, (ll, ll_base, err_h, err_label)\n"
        "e = rule_err  # one epoch: measured EP 0.27, CHL 0.24, Gibbs 0.69 (chance 0.9)\n"
        "assert e['EP, softmax readout'] < 0.4 and e['CHL, mean field'] < 0.4, e\n"
        "assert e['Boltzmann rule, Gibbs'] < 0.8, e"),
    "09_spiking_stdp.ipynb": (
        "dw, dt = r.dw['bengio'], r.measured\n"
        "assert np.all(dw[dt > 0] > 0) and np.all(dw[dt < 0] < 0), dw  # the window's signs\n"
        "assert errors[1000.0] < errors[30.0], errors  # the traces average to rho(u*)"),
}


def test_every_notebook_has_a_check():
    assert sorted(CHECKS) == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    if not _has_python3_kernel():
        pytest.skip("no Jupyter kernel named 'python3' is installed")
    monkeypatch.setenv("EQDYN_QUICK", "1")  # os.environ: inherited by the kernel process
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CHECKS[path.name]))
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},  # the kernel's working directory
        allow_errors=False,
    )
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}", pytrace=False)
    elapsed = time.perf_counter() - start
    errors = [
        out for cell in nb.cells if cell.cell_type == "code"
        for out in cell.get("outputs", []) if out.get("output_type") == "error"
    ]
    assert not errors, f"{path.name}: error outputs {errors}"
    print(f"{path.name} ran in {elapsed:.1f} s (quick mode)")
