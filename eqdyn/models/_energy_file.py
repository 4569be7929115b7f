"""Load a user's energy from a Python file (`eqdyn train --energy path/to/energy.py`).

The file is ordinary Python that builds an `eqdyn.symbolic.Energy`:

```python
# lateral.py
from eqdyn.symbolic import layered_hopfield_energy

def energy(sizes):                 # or a module-level ENERGY = Energy(...)
    return layered_hopfield_energy(sizes, lateral=(1,))

activation = "hard_sigmoid"        # optional: a name, an eqdyn.Activation, or {fn name: ...}
formulation = None                 # optional: "gradient" or "leaky"
def init_params(key, energy, dtype):   # optional: the default is eqdyn.models.glorot_init
    ...
```

`energy` may be an `Energy` or a function of the layer sizes (input first, taken from
`--arch` or the data set's default). Activations the file registers with
`eqdyn.register_activation` can be named anywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

from .._errors import ConfigError
from ..symbolic import Energy

__all__ = ["EnergySpec", "load_energy_file"]


@dataclasses.dataclass(frozen=True)
class EnergySpec:
    """What an energy file defines. `activation`, `formulation`, `init` are `None` if absent."""

    energy: Energy
    activation: object
    formulation: str | None
    init: Callable | None
    path: str
    sha256: str


_MODULES: dict = {}


def _module(path: Path):
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    key = (str(path), digest)
    if key not in _MODULES:
        name = f"eqdyn_energy_{digest[:12]}"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise ConfigError(
                f"`energy` file {str(path)!r} failed to run: {type(exc).__name__}: {exc}"
            ) from exc
        _MODULES[key] = mod
    return _MODULES[key], digest


def load_energy_file(path, sizes=None) -> EnergySpec:
    """Run the energy file at `path` and return what it defines.

    **Arguments:**

    - `path`: a `.py` file defining `energy` (an `Energy`, or a function of the layer sizes)
      or `ENERGY`.
    - `sizes`: layer sizes, input first, passed to an `energy(sizes)` function.

    **Raises:** `ConfigError` naming the file for a missing or unreadable file, a file that
    raises, or one that defines no energy.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"`energy`={str(path)!r} is not a file; give the path of a Python file that "
            "defines `energy` (see eqdyn.models.load_energy_file)."
        )
    if p.suffix != ".py":
        raise ConfigError(f"`energy`={str(path)!r} must be a Python file ending in .py.")
    mod, digest = _module(p.resolve())
    obj = getattr(mod, "energy", None)
    if obj is None:
        obj = getattr(mod, "ENERGY", None)
    if obj is None:
        raise ConfigError(
            f"`energy` file {str(path)!r} defines neither `energy` nor `ENERGY`; define "
            "`def energy(sizes): return Energy(...)` or `ENERGY = Energy(...)`."
        )
    if callable(obj) and not isinstance(obj, Energy):
        if sizes is None:
            raise ConfigError(
                f"`energy` in {str(path)!r} is a function of the layer sizes; pass `arch`."
            )
        try:
            obj = obj(tuple(sizes))
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"`energy({tuple(sizes)})` in {str(path)!r} raised {type(exc).__name__}: {exc}"
            ) from exc
    if not isinstance(obj, Energy):
        raise ConfigError(
            f"`energy` in {str(path)!r} gave {type(obj).__name__}, not an eqdyn.symbolic.Energy."
        )
    formulation = getattr(mod, "formulation", None)
    init = getattr(mod, "init_params", None)
    return EnergySpec(obj, getattr(mod, "activation", None), formulation, init, str(path), digest)
