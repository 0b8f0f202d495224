"""A progress bar on the terminal for long runs (tqdm): bytes and files read, then patients done,
with the rate and the time left. Silent when stderr is not a terminal, so logs and CI stay clean."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class Progress:
    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None

    def phase(self, description: str, total: float | None, unit: str, scale: bool = False) -> None:
        self.close()
        if self.enabled:
            self._bar = tqdm(total=total, desc=description, unit=unit, unit_scale=scale, file=sys.stderr,
                             dynamic_ncols=True, smoothing=0.1)

    def update(self, n: float, **postfix: Any) -> None:
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
