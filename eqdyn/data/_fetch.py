"""Download one file from the first mirror that serves it: streamed to a temporary file in
the destination folder, checked by the caller's `verify`, then renamed into place (so an
interrupted or corrupt transfer never leaves a file under the final name)."""

from __future__ import annotations

import http.client
import os
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from .._errors import DataError

__all__ = ["fetch_first"]

_TIMEOUT_S = 60.0


def fetch_first(
    fname: str, urls: Sequence[str], dest: Path, verify: Callable[[Path, str], None],
    say: Callable[[str], object],
) -> Path:
    """Fetch `fname` from each base URL of `urls` in turn into `dest / fname`; `verify(tmp,
    url)` raises `DataError` (or `ValueError`) to reject a transfer and try the next mirror.
    Raises `DataError` listing every mirror's failure when none served a good file."""
    errors = []
    for base in urls:
        url = (base if base.endswith("/") else base + "/") + fname
        say(f"downloading {url}")
        try:
            fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{fname}.", suffix=".part")
        except OSError as e:
            raise DataError(f"`dest`='{dest}' is not writable ({e}); pass a writable folder") from e
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT_S) as r:
                size, n = r.headers.get("Content-Length"), 0
                while chunk := r.read(1 << 20):
                    n += out.write(chunk)
            if size is not None and n != int(size):
                raise DataError(f"incomplete transfer: got {n} of {size} bytes")
            verify(Path(tmp), url)
            os.replace(tmp, dest / fname)
            say(f"saved {dest / fname}")
            return dest / fname
        except (OSError, ValueError, http.client.HTTPException) as e:
            errors.append(f"{url}: {e}")
            say(f"failed: {url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    tried = "\n  ".join(errors)
    raise DataError(
        f"could not download {fname} into `dest`='{dest}'; `base_urls`={list(urls)} all "
        f"failed:\n  {tried}\ncheck the network connection, pass another mirror, or copy the "
        f"file into '{dest}' by hand")
