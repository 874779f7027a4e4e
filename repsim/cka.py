"""Linear centred kernel alignment (CKA) and its minibatch estimator.

For representations X (n, p1) and Y (n, p2) with linear Grams K = X X^T, L = Y Y^T:

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

Biased HSIC (Gretton et al. 2005): <H K H, H L H> / (n - 1)^2 with H = I - 11^T / n.
Unbiased HSIC (Song et al. 2012, "HSIC_1"): <K~, L~> / (n (n - 3)), with K~ the
U-centred Gram (``u_centre``). The minibatch estimator (Nguyen et al. 2021) sums over
minibatches before taking the ratio. Like the paper's released code
(``efficient_CKA.py``), it sums the unnormalised products <K~_b, L~_b>, so each batch's
HSIC_1 counts with weight n_b (n_b - 3): on batches of one size that is the plain average
of the batches' estimates, and a smaller remainder batch weighs less.

Both estimators are invariant to adding the same vector to every example, so each batch
is mean-centred over examples before its Gram. Features with a large mean then lose no
precision in the float32 Gram (without centring the mean term swamps it). U-centring,
the HSIC products and the sums over batches are in float64. float16 and bfloat16
features are multiplied in float32. A Gram that overflows its dtype (activations of
~1e19 in float32) is recomputed from features scaled by a power of two, and the scale
is undone exactly in float64, so the result is the same number, not an error.

A representation that is constant over the examples has zero HSIC with everything,
itself included, so CKA is 0/0. This module defines it as **0**: a constant layer
carries no information about the inputs, so it is similar to nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray
# On a CPU a Gram of at least this many examples and features is computed in halves
# (``_self_product``); smaller products lose more in efficiency than the halves save.
SPLIT_GRAM_EXAMPLES, SPLIT_GRAM_FEATURES = 64, 2048


def as_matrix(x: ArrayLike, name: str = "x", flatten: bool = False, check_finite: bool = True) -> torch.Tensor:
    """Validate a (n, p) representation and return it as a float tensor (n, p).

    With ``flatten=True`` an (n, ...) input is flattened per example first. With
    ``check_finite=False`` the caller checks for NaN and Inf itself (``MinibatchCKA``
    checks the far smaller Gram, which any non-finite entry makes non-finite).
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} has dtype {x.dtype}; CKA needs real floating-point features (use .float())")
    if flatten and x.dim() > 2:
        x = x.flatten(1)
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (examples, features), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if check_finite and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return x


def _product_dtype(x: torch.Tensor) -> torch.dtype:
    # Half-precision Grams overflow at 65504 and keep 3 digits: multiply in float32.
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _centred_product(x: torch.Tensor, scale: float = 1.0, workspace: "Workspace | None" = None) -> torch.Tensor:
    """(..., n, n) Gram of the example-centred (..., n, p) features times ``scale``, in
    float32 (or float64 for float64 input). No host sync. The centred copy goes into
    ``workspace`` when given: a fresh tensor the size of a layer's activations would be
    paged in anew for every layer, which on a CPU costs a large part of the product."""
    x = x.to(_product_dtype(x))
    mean = x.mean(dim=-2, keepdim=True)
    if workspace is None:
        centred = x - mean
    else:
        centred = torch.sub(x, mean, out=workspace.take(x.shape, x.dtype, x.device))
    if scale != 1.0:
        centred.mul_(scale)
    return _self_product(centred)


def _self_product(x: torch.Tensor) -> torch.Tensor:
    """x @ x^T for (..., n, p) x. On a CPU, each (n, p) matrix from the two halves of its
    rows as three products (the fourth block is the transpose of one): 3/4 of the FLOPs,
    exactly symmetric, and one matrix at a time (a batched product of row slices is
    slower there than the loop). A GPU is short of launches, not FLOPs: one product."""
    n = x.shape[-2]
    if x.device.type != "cpu" or n < SPLIT_GRAM_EXAMPLES or x.shape[-1] < SPLIT_GRAM_FEATURES:
        return x @ x.transpose(-1, -2)
    h = n // 2
    out = x.new_empty(*x.shape[:-1], n)
    for matrix, k in zip(x.reshape(-1, n, x.shape[-1]), out.view(-1, n, n)):
        top, bottom = matrix[:h], matrix[h:]
        torch.mm(top, top.T, out=k[:h, :h])
        torch.mm(top, bottom.T, out=k[:h, h:])
        torch.mm(bottom, bottom.T, out=k[h:, h:])
        k[h:, :h] = k[:h, h:].T
    return out


def _constant(grand: torch.Tensor, trace: torch.Tensor, n: int) -> torch.Tensor:
    """Which (..., n, n) centred Grams, given their float64 grand sums and traces, belong
    to representations that are constant over the examples. Their centred rows are then one vector (the round-off of the mean),
    so the grand sum of the Gram is n times its trace; for anything else centring leaves
    a grand sum near 0. Such a Gram is set to exactly zero (so CKA is 0), rather than
    amplifying rounding noise. Features that vary by only an ulp or two count as constant;
    a spread of a few ulps already does not."""
    return grand >= 0.5 * n * trace


def _rescaled_product(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``_centred_product`` of x scaled by a power of two so that its Gram cannot
    overflow, and the exact factor 1 / scale^2 that undoes the scaling in float64."""
    spread = (x.double() - x.double().mean(dim=0, keepdim=True)).abs().max().item()
    exponent = int(np.ceil(np.log2(spread))) if spread > 0 else 0
    k = _centred_product(x, scale=2.0**-exponent)  # centred entries now in [-1, 1]
    return k, 4.0**exponent if exponent < 512 else float("inf")  # inf: caught as a float64 overflow


def batch_gram(x: torch.Tensor, workspace: "Workspace | None" = None) -> torch.Tensor:
    """What ``MinibatchCKA.update_grams`` takes for one layer of one batch: the (n, n) Gram
    of the example-centred (n, p) features x, in float32 (float64 for float64 input); for
    (g, n, p) features of g minibatches at once, their (g, n, n) Grams. A caller that
    computes many Grams passes one ``Workspace`` for the centred copies.

    It never waits for a GPU: the Gram holds NaN or Inf where x does or where the product
    overflowed, which ``MinibatchCKA`` detects once per batch."""
    return _centred_product(x, workspace=workspace)


class Workspace:
    """One buffer, grown to the largest request and handed out again as views of it, for
    temporaries that would otherwise be allocated anew for every layer and batch. A view
    is valid until the next ``take``."""

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None

    def take(self, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        size = int(np.prod(shape))
        held = self._buffer
        if held is None or held.dtype != dtype or held.device != device or held.numel() < size:
            held = self._buffer = torch.empty(size, dtype=dtype, device=device)
        return held[:size].view(shape)


class GramMaker:
    """``batch_gram`` for a stream of minibatches of named layers, faster on a CPU.

    Centring the features costs a read and a write of every activation, a fifth of the
    Gram's own time on a CPU. Where a layer's mean is small beside its spread, the
    uncentred float32 Gram loses little: its rounding errors grow with |mean|^2 /
    spread, at most ``UNCENTRED_AT_MOST`` times the centred Gram's (which are ~1e-9 of
    CKA). So on a CPU each layer's Gram is first computed uncentred, centred exactly in
    float64 (K - K1 1'/n - 1 1'K/n + 1'K1/n^2) and kept if that ratio, read from the
    same sums, is small enough; otherwise (large means, constant layers, NaN) the layer
    is computed by ``batch_gram`` from centred features, then and from then on. Small
    Grams (fewer than ``SPLIT_GRAM_EXAMPLES`` examples or ``SPLIT_GRAM_FEATURES``
    features), whose centring costs little and whose HSIC cancels more, are always
    centred first, and so is everything on a GPU, which is short of launches and syncs
    rather than memory traffic.
    """

    UNCENTRED_AT_MOST = 16.0

    def __init__(self) -> None:
        self.workspace = Workspace()
        self.centred = set()  # layers whose mean is too large to skip centring

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        small = x.shape[-2] < SPLIT_GRAM_EXAMPLES or x.shape[-1] < SPLIT_GRAM_FEATURES  # little to save, more to lose
        if x.device.type != "cpu" or x.dtype == torch.float64 or small or name in self.centred:
            return batch_gram(x, self.workspace)
        k = _self_product(x.to(_product_dtype(x))).double()
        n = k.shape[-1]
        rows = k.sum(dim=-1)  # (..., n)
        total = rows.sum(dim=-1)  # (...,): n^2 |mean|^2
        squared_mean = total / n**2
        spread = k.diagonal(dim1=-2, dim2=-1).sum(dim=-1) / n - squared_mean  # mean squared distance to the mean
        if not bool((spread > 0).all() and (squared_mean <= self.UNCENTRED_AT_MOST * spread).all()):
            self.centred.add(name)
            return batch_gram(x, self.workspace)
        k.sub_(rows[..., :, None] / n).sub_(rows[..., None, :] / n).add_((total / n**2)[..., None, None])
        return k


class NonFiniteGramError(ValueError):
    """A Gram given to ``MinibatchCKA.update_grams`` holds NaN or Inf (``layers`` names them)."""

    def __init__(self, layers: list[str]) -> None:
        super().__init__(f"the Grams of layer(s) {layers[:5]} hold NaN or Inf: NaN or Inf activations, "
                         "or a float32 overflow (pass the activations to update() to rescale)")
        self.layers = layers


def gram(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """(n, n) linear Gram of the example-centred (n, p) features, in float64.

    float32 inputs are multiplied in float32 (the fast path) after centring. A Gram that
    overflows is recomputed from rescaled features (CKA only needs it up to a float64
    factor, which is undone exactly); NaN or Inf in x raises a ValueError naming ``name``.
    """
    k = _centred_product(x)
    inverse_scale = 1.0
    if not torch.isfinite(k).all():
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or Inf values")
        k, inverse_scale = _rescaled_product(x)
    constant = _constant(k.sum(dim=(-2, -1), dtype=torch.float64),
                         k.diagonal(dim1=-2, dim2=-1).sum(dim=-1, dtype=torch.float64), k.shape[-1])
    k = k.double() * inverse_scale
    if not torch.isfinite(k).all():
        raise OverflowError(f"the Gram of {name} overflows even float64: its activations exceed ~1e75")
    return k.masked_fill(constant, 0.0)


def u_centre(k: torch.Tensor) -> torch.Tensor:
    """U-centre an (n, n) Gram (Song et al. 2012; Szekely & Rizzo 2014), n >= 4.

    Zero the diagonal, subtract row and column sums / (n - 2), add back the grand sum
    / ((n - 1)(n - 2)), and zero the diagonal again.
    """
    n = k.shape[-1]
    k = k.clone()
    k.diagonal(dim1=-2, dim2=-1).zero_()
    row = k.sum(dim=-1, keepdim=True)  # (..., n, 1)
    total = row.sum(dim=-2, keepdim=True)  # (..., 1, 1)
    k = k - row / (n - 2) - row.transpose(-1, -2) / (n - 2) + total / ((n - 1) * (n - 2))
    k.diagonal(dim1=-2, dim2=-1).zero_()
    return k


def double_centre(k: torch.Tensor) -> torch.Tensor:
    """H K H for the (n, n) Gram K, H = I - 11^T / n."""
    k = k - k.mean(dim=-1, keepdim=True)
    return k - k.mean(dim=-2, keepdim=True)


def centre_gram(k: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Centre an (n, n) Gram and scale it so that the inner product of two centred
    Grams is the HSIC estimate itself: U-centring / sqrt(n (n - 3)) when unbiased,
    H K H / (n - 1) when biased."""
    n = k.shape[-1]
    if unbiased:
        if n < 4:
            raise ValueError(f"the unbiased HSIC estimator needs at least 4 examples, got {n}")
        return u_centre(k) / np.sqrt(n * (n - 3))
    if n < 2:
        raise ValueError(f"CKA needs at least 2 examples, got {n}")
    return double_centre(k) / (n - 1)


def cka_of_grams(k: torch.Tensor, l: torch.Tensor, unbiased: bool) -> float:
    """Linear CKA from two (n, n) Grams of the same examples."""
    kc, lc = centre_gram(k, unbiased), centre_gram(l.to(k.device), unbiased)
    return float(cka_from_hsic((kc * lc).sum(), (kc * kc).sum(), (lc * lc).sum()))


def cka_from_hsic(hsic_xy: torch.Tensor, hsic_xx: torch.Tensor, hsic_yy: torch.Tensor) -> torch.Tensor:
    """CKA = HSIC(x, y) / sqrt(HSIC(x, x) HSIC(y, y)), 0 where either self-HSIC is 0."""
    denom = torch.sqrt(torch.clamp(hsic_xx, min=0) * torch.clamp(hsic_yy, min=0))
    safe = denom > 0
    return torch.where(safe, hsic_xy / torch.where(safe, denom, torch.ones_like(denom)), torch.zeros_like(denom))


def linear_cka(x: ArrayLike, y: ArrayLike, unbiased: bool = False) -> float:
    """Linear CKA between representations x (n, p1) and y (n, p2) of the same n examples.

    Uses (n, n) Grams, so memory is O(n^2). Returns a float in [-1, 1] (the unbiased
    estimator can be slightly negative), and 0 if either representation is constant.
    """
    x, y = as_matrix(x, "x"), as_matrix(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same examples: x has {x.shape[0]} rows, y has {y.shape[0]}")
    _check_examples(x.shape[0], unbiased, "x and y")
    return cka_of_grams(gram(x, "x"), gram(y.to(x.device), "y"), unbiased)


def _check_examples(n: int, unbiased: bool, what: str) -> None:
    if unbiased and n < 4:
        raise ValueError(f"the unbiased HSIC estimator needs at least 4 examples, {what} have {n}")
    if n < 2:
        raise ValueError(f"CKA needs at least 2 examples, {what} have {n}")


class MinibatchCKA:
    """All-pairs minibatch CKA between the layers of one model or of two models.

    Each ``update`` computes one float32 Gram per layer (the only O(n^2 p) work), copies
    them into the rows of one float64 (layers, n^2) matrix G and adds all pairwise HSICs
    to a float64 sum: G G^T (one GEMM) plus two rank-n corrections from the Grams' row
    sums, which is what U-centring every Gram would give, without its passes over them.
    It waits for a GPU once per batch, to check that every Gram is finite.
    ``update_grams`` does the same from Grams computed elsewhere (``batch_gram``), so a
    caller can compute each layer's Gram as the layer runs and keep no activations.
    ``compute`` returns CKA_ij = S_ij / sqrt(S_ii S_jj).

    Within one model pass ``layers``; across two models pass ``layers`` and
    ``other_layers`` and give both models' activations to ``update``. The result is
    then the (len(layers), len(other_layers)) cross block.
    """

    def __init__(self, layers: Sequence[str], other_layers: Sequence[str] | None = None, unbiased: bool = True) -> None:
        self.layers = list(layers)
        self.other_layers = None if other_layers is None else list(other_layers)
        self.unbiased = unbiased
        for names, what in ((self.layers, "layers"), (self.other_layers or [], "other_layers")):
            if len(set(names)) != len(names):
                raise ValueError(f"{what} contains duplicate names")
        if not self.layers or (self.other_layers is not None and not self.other_layers):
            raise ValueError("give at least one layer name")
        self.hsic_ = None  # (L1 + L2, L1 + L2) float64 sums, or (L, L) within one model
        # float64 Grams of the last batch (per model) and the centred copies of update(), reused
        self._workspaces: dict[str, Workspace] = {}
        self.batches_ = 0
        self.examples_ = 0

    def _check_names(self, mapping: Mapping[str, object], names: list[str], which: str) -> None:
        missing = [name for name in names if name not in mapping]
        if missing:
            raise KeyError(f"{which} lack layer(s) {missing[:5]}; got {list(mapping)[:5]}...")
        extra = [name for name in mapping if name not in names]
        if extra:
            raise KeyError(f"unknown layer name(s) {extra[:5]} in {which}; expected {names[:5]}...")

    def _rows(self, names: list[str], grams: list[torch.Tensor], which: str,
              matrices: list[torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each layer's Gram(s) as float64 rows, for the HSIC sums of ``_add``: (layers,
        batches n^2) Grams (the diagonal zeroed when unbiased), (layers, batches n) their row
        sums and (layers, batches) their grand sums. ``matrices``, when given, are the
        features the Grams came from: a Gram that overflowed is then recomputed from them,
        rescaled."""
        for name, k in zip(names, grams):
            if not isinstance(k, torch.Tensor) or not k.is_floating_point():
                raise TypeError(f"layer {name!r}: give its batch_gram(x), a floating-point (n, n) tensor")
            if k.dim() not in (2, 3) or k.shape[-1] != k.shape[-2]:
                raise ValueError(f"layer {name!r}: a Gram must be square, (n, n) or (batches, n, n), "
                                 f"got shape {tuple(k.shape)}")
            if k.shape != grams[0].shape:
                raise ValueError(f"layer {name!r} has {k.shape[-1]} examples, layer {names[0]!r} has "
                                 f"{grams[0].shape[-1]} (Grams of shape {tuple(k.shape)} and {tuple(grams[0].shape)})")
            if k.device != grams[0].device:
                raise ValueError(f"layer {name!r} is on {k.device}, layer {names[0]!r} on {grams[0].device}")
        n = grams[0].shape[-1]
        _check_examples(n, self.unbiased, f"the layers of this batch ({which})")
        # Every layer's Grams copied into one float64 workspace kept between batches: a
        # fresh one would be paged in anew each time, which costs more than the copy.
        k = self._workspace(which).take((len(names), grams[0].numel() // n**2, n, n), torch.float64, grams[0].device)
        for row, gram_ in zip(k, grams):
            row.copy_(gram_.view(-1, n, n))
        # The row sums are both what the HSIC needs and the check: NaN or Inf anywhere in
        # a Gram makes its sums non-finite. One look from the host per batch (one GPU
        # sync) answers both questions: is every Gram finite, is any layer constant?
        sums, diagonal, constant = self._sums(k)
        flags = torch.cat([torch.isfinite(sums).flatten(1).all(dim=1), constant.any(dim=-1)]).cpu()
        if not flags[: len(names)].all():
            bad = torch.nonzero(~flags[: len(names)]).flatten().tolist()
            if matrices is None:
                raise NonFiniteGramError([names[i] for i in bad])
            for i in bad:  # NaN or Inf is looked for layer by layer only now
                if not torch.isfinite(matrices[i]).all():
                    raise ValueError(f"layer {names[i]!r} contains NaN or Inf values")
                rescaled, inverse_scale = _rescaled_product(matrices[i])
                k[i] = rescaled.double().view(-1, n, n) * inverse_scale  # the scale undone exactly
            sums, diagonal, constant = self._sums(k)
            overflowed = ~torch.isfinite(sums).flatten(1).all(dim=1)
            if overflowed.any():
                raise OverflowError(f"the Gram of layer {names[int(torch.nonzero(overflowed)[0])]!r} overflows even "
                                    "float64: its activations exceed ~1e75")
            flags[len(names):] = constant.any(dim=-1).cpu()
        if flags[len(names):].any():
            k.masked_fill_(constant[..., None, None], 0.0)
            sums.masked_fill_(constant[..., None], 0.0)
            diagonal.masked_fill_(constant[..., None], 0.0)
        if self.unbiased:  # HSIC_1 is built from the Gram with a zero diagonal
            k.diagonal(dim1=-2, dim2=-1).zero_()
            sums.sub_(diagonal)
        # Several minibatches side by side in one row: the product of two rows is then
        # the sum of their minibatches' products, which is what the accumulator sums.
        return k.flatten(1), sums.flatten(1), sums.sum(dim=-1)

    def _workspace(self, which: str) -> Workspace:
        return self._workspaces.setdefault(which, Workspace())

    @staticmethod
    def _sums(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """float64 row sums and diagonals of (layers, batches, n, n) Grams, and which
        ones are constant (as ``_constant`` decides, from the same sums)."""
        sums = k.sum(dim=-1, dtype=torch.float64)
        diagonal = k.diagonal(dim1=-2, dim2=-1).to(torch.float64, copy=True)  # not a view: k is edited later
        constant = _constant(sums.sum(dim=-1), diagonal.sum(dim=-1), k.shape[-1])
        return sums, diagonal, constant

    def _matrices(self, acts: Mapping[str, ArrayLike], names: list[str], which: str) -> list[torch.Tensor]:
        self._check_names(acts, names, f"{which} activations")
        return [as_matrix(acts[name], f"layer {name!r}", flatten=True, check_finite=False) for name in names]

    @torch.no_grad()
    def update(self, acts: Mapping[str, ArrayLike], other_acts: Mapping[str, ArrayLike] | None = None) -> "MinibatchCKA":
        """Add one minibatch: ``acts`` maps layer name to (n, ...) activations."""
        if (other_acts is None) != (self.other_layers is None):
            raise ValueError("give other_acts exactly when the accumulator was built with other_layers")
        matrices = self._matrices(acts, self.layers, "acts")
        g = self._rows(self.layers, [batch_gram(x, self._workspace("centred")) for x in matrices], "acts", matrices)
        g_other = None
        if other_acts is not None:
            others = self._matrices(other_acts, self.other_layers, "other_acts")
            g_other = self._rows(self.other_layers, [batch_gram(x, self._workspace("centred")) for x in others],
                                 "other_acts", others)
        return self._add(g, g_other, n=matrices[0].shape[0])

    @torch.no_grad()
    def update_grams(self, grams: Mapping[str, torch.Tensor], other_grams: Mapping[str, torch.Tensor] | None = None) -> "MinibatchCKA":
        """Add one minibatch given ``batch_gram(x)`` of each layer instead of its
        activations (a caller that computes Grams as the layers run need not keep them).
        (g, n, n) Grams add g minibatches of n examples at once.

        Raises ``NonFiniteGramError`` (and adds nothing) if a Gram holds NaN or Inf: the
        caller then passes that batch's activations to ``update``, which names a layer
        with NaN or Inf and recomputes an overflowed Gram from rescaled features."""
        if (other_grams is None) != (self.other_layers is None):
            raise ValueError("give other_grams exactly when the accumulator was built with other_layers")
        self._check_names(grams, self.layers, "grams")
        g = self._rows(self.layers, [grams[name] for name in self.layers], "grams", None)
        g_other = None
        if other_grams is not None:
            self._check_names(other_grams, self.other_layers, "other_grams")
            g_other = self._rows(self.other_layers, [other_grams[name] for name in self.other_layers], "other_grams", None)
        shape = grams[self.layers[0]].shape
        return self._add(g, g_other, n=shape[-1], batches=shape[0] if len(shape) == 3 else 1)

    def _add(self, rows: tuple[torch.Tensor, ...], other_rows: tuple[torch.Tensor, ...] | None, n: int,
             batches: int = 1) -> "MinibatchCKA":
        g, r, t = rows
        if other_rows is not None:
            if other_rows[0].shape[1] != g.shape[1]:
                raise ValueError("the two models' activations hold different numbers of examples")
            g, r, t = (torch.cat([mine, theirs.to(mine.device)]) for mine, theirs in zip(rows, other_rows))
        # (L, L) unnormalised HSICs of this batch for all pairs of layers, in float64, from
        # the Grams K, their row sums K1 and grand sums 1'K1 (Song et al. 2012, eq. 5):
        # unbiased, tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1 with zero
        # diagonals; biased, tr(HKH HLH) = tr(KL) + 1'K1 1'L1 / n^2 - 2/n 1'KL1. The same
        # as the inner product of the U- or double-centred Grams, without centring them.
        # Summed unnormalised, as the released code does: each batch's HSIC estimate
        # weighs n (n - 3) (unbiased) or (n - 1)^2 (biased).
        total, cross = (1.0 / ((n - 1) * (n - 2)), 2.0 / (n - 2)) if self.unbiased else (1.0 / n**2, 2.0 / n)
        batch_hsic = torch.addmm(g @ g.T, t, t.T, alpha=total).sub_(r @ r.T, alpha=cross)
        self.hsic_ = batch_hsic if self.hsic_ is None else self.hsic_ + batch_hsic
        self.batches_ += batches
        self.examples_ += n * batches
        return self

    def compute(self) -> torch.Tensor:
        """CKA matrix (float64, on CPU): (L, L) within a model, (L1, L2) across two."""
        if self.hsic_ is None:
            raise RuntimeError("compute() called before any update()")
        self._workspaces.clear()
        s = self.hsic_.cpu()
        diag = s.diagonal()
        cka = cka_from_hsic(s, diag[:, None], diag[None, :])
        if self.other_layers is None:
            return cka
        n1 = len(self.layers)
        return cka[:n1, n1:]


def subsample_cka(x: ArrayLike, y: ArrayLike, sizes, repeats: int, unbiased: bool, seed: int = 0) -> np.ndarray:
    """CKA of x and y on random subsets of the rows: (len(sizes), repeats) array.

    Shows how an estimator behaves as the number of examples n shrinks. The Grams are
    computed once: the Gram of a subset of rows is the same subset of the full Gram.
    """
    x, y = as_matrix(x, "x"), as_matrix(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same examples: x has {x.shape[0]} rows, y has {y.shape[0]}")
    kx, ky = gram(x), gram(y.to(x.device))
    generator = torch.Generator().manual_seed(seed)
    out = np.empty((len(sizes), repeats))
    for i, size in enumerate(sizes):
        if size > x.shape[0]:
            raise ValueError(f"sample size {size} exceeds the {x.shape[0]} examples available")
        for r in range(repeats):
            rows = torch.randperm(x.shape[0], generator=generator)[:size]
            out[i, r] = cka_of_grams(kx[rows][:, rows], ky[rows][:, rows], unbiased)
    return out
