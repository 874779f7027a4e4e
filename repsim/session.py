"""What a chapter works with: its profile, data, store and device, chosen once.

A chapter opens one ``Session`` and asks it for analyses: ``session.get(heatmap, run)``
calls ``heatmap(run, profile, data, store=..., device=...)`` and returns its result, or
None when the result is pending: neither in the store nor among the committed results,
and this session may not compute it (a paper-scale model on a CPU, or
``compute_missing=False``). A figure of many runs asks for each in a comprehension,
``[session.get(heatmap, run) for run in row]``; ``coverage`` then says how much of the
figure exists, so that nothing is silently missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .data import ImageDataset, load_dataset
from .profiles import Profile, chapter_device, get_profile
from .store import PendingResult, Store


@dataclass
class Session:
    profile: Profile
    data: ImageDataset
    store: Store
    device: str
    pending: list[str] = field(default_factory=list)  # what was asked for and is not there

    @classmethod
    def open(cls, profile: str, device: str | None = None, compute_missing: bool | None = None,
             data: ImageDataset | None = None) -> "Session":
        """The session of a chapter run with ``profile``. ``device`` None takes the
        profile's (on Colab: its GPU when there is one). ``compute_missing`` None lets
        the profile decide whether missing results are computed on this device (the
        paper profile computes only on a GPU); False reads stored and committed results
        only."""
        resolved = get_profile(profile)
        device = chapter_device(device, resolved)
        compute = resolved.may_compute(device) if compute_missing is None else bool(compute_missing)
        return cls(resolved, data if data is not None else load_dataset(resolved.dataset), Store(compute=compute), device)

    @property
    def computes(self) -> bool:
        return self.store.compute

    def get(self, analysis: Callable, *runs, **settings: Any):
        """``analysis(*runs, profile, data, store=, device=, **settings)``, or None (and a
        note in ``pending``) when its result is pending."""
        try:
            return analysis(*runs, self.profile, self.data, store=self.store, device=self.device, **settings)
        except PendingResult:
            self.pending.append(" vs ".join(getattr(run, "name", str(run)) for run in runs))
            return None

    def require(self, analysis: Callable, *runs, **settings: Any):
        """``get`` for a result the chapter cannot do without: a pending one raises
        ``PendingResult``, which says what to harvest."""
        return analysis(*runs, self.profile, self.data, store=self.store, device=self.device, **settings)


def coverage(figure: str, results: Sequence, what: str = "models") -> str:
    """"Fig. 2: 9 of 16 models harvested, 7 pending." (or "Fig. 2: all 16 models")."""
    present = sum(result is not None for result in results)
    if present == len(results):
        return f"{figure}: all {len(results)} {what}."
    return f"{figure}: {present} of {len(results)} {what} harvested, {len(results) - present} pending."
