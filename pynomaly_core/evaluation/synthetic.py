"""Synthetic anomalies generated relative to reference data, ADBench style.

ADBench (Han et al., NeurIPS 2022, section 4.1) generates four types of anomalies
from the normal data; this module follows the same recipes:

* ``local`` — samples of a Gaussian mixture fitted on the reference data with every
  component's covariance scaled by ``alpha = 5``: close to the data, in its
  low-density fringe;
* ``global`` — uniform over the reference's bounding box widened by 10 % of its range
  on each side (ADBench's ``alpha = 1.1`` on MinMax-scaled data);
* ``dependency`` — each feature drawn independently from its own marginal (a random
  reference value plus a little kernel noise): every single value is ordinary but
  the dependence between features is broken. ADBench fits a vine copula and samples
  the independence copula with kernel-density marginals; drawing from the empirical
  marginals is the same construction without the copula fit;
* ``clustered`` — a tight group drawn from one mixture component whose mean is moved
  several robust standard deviations away along a random direction (ADBench scales
  the mean by ``alpha = 5``).

All work happens on robustly standardized features (median, IQR / 1.349), so the
recipes do not depend on the columns' units. Reference rows further than
:data:`MAX_ROBUST_Z` robust standard deviations from the median (valid but extreme values,
up to float64's 1.8e308) are anomalies themselves and are left out of what describes the
normal data: squares and ranges of them overflow, and the mixture fit would see NaN.
Columns that are constant in the reference stay constant in the synthetic rows. With a single feature there is no
dependence to break, so ``dependency`` rows are generated as ``local`` ones and
labelled so.

>>> import numpy as np
>>> X = np.random.default_rng(0).normal(size=(300, 3))
>>> X_syn, kinds = inject_anomalies(X, 8, random_state=0)
>>> X_syn.shape, sorted(set(kinds.tolist()))
((8, 3), ['clustered', 'dependency', 'global', 'local'])
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pandas as pd

KINDS: tuple[str, ...] = ("local", "global", "dependency", "clustered")

#: covariance scale of ``local`` anomalies (ADBench's alpha)
LOCAL_ALPHA = 5.0
#: the bounding box of ``global`` anomalies is widened by this share of the range per side
GLOBAL_MARGIN = 0.1
#: ``clustered`` anomalies: mean shift per feature, in robust standard deviations
CLUSTER_SHIFT = (2.0, 4.0)
#: ``clustered`` anomalies: the moved component's covariance is scaled by this factor
CLUSTER_SPREAD = 0.25
#: rows used to fit the Gaussian mixture
GMM_MAX_ROWS = 1000
#: mixture sizes tried (the lowest BIC wins)
GMM_COMPONENTS = (1, 2, 4, 8)
#: reference rows with a standardized value beyond this are left out of the recipes
MAX_ROBUST_Z = 1e6
#: above this many features (or with fewer than 10 rows per feature) the mixture is diagonal
FULL_COVARIANCE_MAX_FEATURES = 50


# --------------------------------------------------------------------------- helpers
def _rng(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or (
        isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)
    ):
        return np.random.default_rng(None if random_state is None else int(random_state))
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    raise ValueError(
        f"random_state must be an int, a numpy Generator or None, got {random_state!r}."
    )


def _check_kinds(kinds: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(kinds, str):
        kinds = (kinds,)
    kinds = tuple(kinds)
    if not kinds:
        raise ValueError(f"kinds must name at least one of {list(KINDS)}, got ().")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown anomaly kind(s) {unknown}; choose from {list(KINDS)}.")
    return tuple(dict.fromkeys(kinds))  # unique, order kept


def _check_n(n: Any) -> int:
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}.")
    return int(n)


def robust_center_scale(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column median, robust scale and a mask of constant columns, ignoring NaNs.

    The scale is IQR / 1.349 (the standard deviation for normal data); columns with a
    zero IQR fall back to the standard deviation, constant (or all-NaN) columns to 1.
    """
    X = np.asarray(X, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        center = np.nanmedian(X, axis=0)
        q75, q25 = np.nanpercentile(X, [75, 25], axis=0)
        std = np.nanstd(X, axis=0)
        lo, hi = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
        scale = (q75 - q25) / 1.349  # inf when the quartiles span more than float64's range
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, std)
    constant = ~(hi > lo)  # no subtraction: hi - lo overflows for +-1e308; NaN (all-NaN) too
    scale = np.where(np.isfinite(scale) & (scale > 0) & ~constant, scale, 1.0)
    center = np.where(np.isfinite(center), center, 0.0)
    return center, scale, constant


class _OneGaussian:
    """The mixture stand-in for fewer than 2 rows: one component at the row, unit spread."""

    covariance_type = "diag"

    def __init__(self, Z: np.ndarray) -> None:
        self.means_ = Z.mean(axis=0, keepdims=True)
        self.covariances_ = np.ones_like(self.means_)
        self.weights_ = np.ones(1)


def _fit_mixture(Z: np.ndarray, rng: np.random.Generator) -> Any:
    """A Gaussian mixture on (a subsample of) ``Z``, its size chosen by BIC."""
    from sklearn.mixture import GaussianMixture

    n, d = Z.shape
    if n < 2:
        return _OneGaussian(Z)
    if n > GMM_MAX_ROWS:
        Z = Z[rng.choice(n, GMM_MAX_ROWS, replace=False)]
        n = GMM_MAX_ROWS
    cov = "full" if d <= FULL_COVARIANCE_MAX_FEATURES and n >= 10 * d else "diag"
    best, best_bic = None, np.inf
    seed = int(rng.integers(0, 2**31 - 1))
    for k in GMM_COMPONENTS:
        if k > 1 and n < 20 * k:  # at least 20 rows per component
            break
        gmm = GaussianMixture(
            n_components=k,
            covariance_type=cov,
            reg_covar=1e-3,
            max_iter=30,
            tol=1e-2,
            random_state=seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings on awkward data
            gmm.fit(Z)
        bic = gmm.bic(Z)
        if bic < best_bic:
            best, best_bic = gmm, bic
    return best


def _component_factors(gmm: Any) -> list[np.ndarray]:
    """Per component, a matrix ``L`` (d, d) or vector (d,) with ``cov = L L^T`` (or diag ``L**2``)."""
    if gmm.covariance_type == "full":
        return [np.linalg.cholesky(c) for c in gmm.covariances_]
    return [np.sqrt(c) for c in gmm.covariances_]


def _draw(
    mean: np.ndarray, factor: np.ndarray, scale: float, size: int, rng: np.random.Generator
) -> np.ndarray:
    eps = rng.standard_normal((size, mean.size))
    if factor.ndim == 2:
        return cast("np.ndarray", mean + np.sqrt(scale) * eps @ factor.T)
    return cast("np.ndarray", mean + np.sqrt(scale) * eps * factor)


def _local(Z: np.ndarray, gmm: Any, m: int, rng: np.random.Generator) -> np.ndarray:
    factors = _component_factors(gmm)
    comp = rng.choice(len(factors), size=m, p=gmm.weights_ / gmm.weights_.sum())
    out = np.empty((m, Z.shape[1]))
    for k in np.unique(comp):
        rows = comp == k
        out[rows] = _draw(gmm.means_[k], factors[k], LOCAL_ALPHA, int(rows.sum()), rng)
    return out


def _global(Z: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = Z.min(axis=0), Z.max(axis=0)
    margin = GLOBAL_MARGIN * (hi - lo)
    return cast("np.ndarray", rng.uniform(lo - margin, hi + margin, size=(m, Z.shape[1])))


def _dependency(Z: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    n, d = Z.shape
    rows = rng.integers(0, n, size=(m, d))
    out = Z[rows, np.arange(d)]
    # a little kernel noise (Silverman-like bandwidth on the standardized scale)
    bandwidth = 0.1 * max(n, 2) ** (-0.2)
    return cast("np.ndarray", out + bandwidth * rng.standard_normal((m, d)))


def _clustered(Z: np.ndarray, gmm: Any, m: int, rng: np.random.Generator) -> np.ndarray:
    factors = _component_factors(gmm)
    d = Z.shape[1]
    out = np.empty((m, d))
    # one or two anomaly clusters, each from a component with a moved mean
    n_clusters = 1 if m < 10 else 2
    sizes = np.diff(np.linspace(0, m, n_clusters + 1).astype(int))
    start = 0
    for size in sizes:
        if size == 0:
            continue
        k = int(rng.choice(len(factors), p=gmm.weights_ / gmm.weights_.sum()))
        shift = rng.uniform(*CLUSTER_SHIFT, size=d) * rng.choice([-1.0, 1.0], size=d)
        out[start : start + size] = _draw(
            gmm.means_[k] + shift, factors[k], CLUSTER_SPREAD, int(size), rng
        )
        start += size
    return out


def _split_counts(n: int, kinds: tuple[str, ...], rng: np.random.Generator) -> dict[str, int]:
    base, extra = divmod(n, len(kinds))
    counts = dict.fromkeys(kinds, base)
    for i in rng.permutation(len(kinds))[:extra]:
        counts[kinds[int(i)]] += 1
    return counts


# --------------------------------------------------------------------------- public
def inject_anomalies(
    X_ref: np.ndarray,
    n: int,
    *,
    kinds: Sequence[str] = KINDS,
    random_state: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic anomalies relative to ``X_ref`` (rows x features).

    Parameters
    ----------
    X_ref : array of shape (n_ref, d)
        Reference ("normal") data; a 1-D array is one feature. Rows holding NaN or
        infinite values are ignored; at least one finite row is needed.
    n : int
        Number of synthetic rows, split as evenly as possible over ``kinds``.
    kinds : sequence of {"local", "global", "dependency", "clustered"}
        Which anomaly types to generate (see the module docstring).
    random_state : int, numpy Generator or None
        The same integer always gives the same rows.

    Returns
    -------
    X_syn : ndarray of shape (n, d), float64
        The synthetic rows, in random order.
    kind_labels : ndarray of shape (n,), str
        The type of each row.
    """
    kinds = _check_kinds(kinds)
    n = _check_n(n)
    X = np.asarray(X_ref, dtype=np.float64)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2 or X.shape[1] == 0:
        raise ValueError(
            f"X_ref must be 2-D (rows x features) with at least one feature, got shape {X.shape}."
        )
    X = X[np.all(np.isfinite(X), axis=1)]
    if X.shape[0] == 0:
        raise ValueError("X_ref has no row without NaN or infinite values.")
    rng = _rng(random_state)
    d = X.shape[1]
    if n == 0:
        return np.empty((0, d)), np.empty(0, dtype="<U10")

    center, scale, constant = robust_center_scale(X)
    with np.errstate(over="ignore"):
        Z = (X - center) / scale
    ordinary = np.all(np.abs(Z) <= MAX_ROBUST_Z, axis=1)
    Z = Z[ordinary] if ordinary.any() else np.clip(Z, -MAX_ROBUST_Z, MAX_ROBUST_Z)
    counts = _split_counts(n, kinds, rng)
    if d == 1 and counts.get("dependency", 0):  # no dependence to break with one feature
        counts["local"] = counts.get("local", 0) + counts.pop("dependency")

    gmm = _fit_mixture(Z, rng) if counts.get("local") or counts.get("clustered") else None
    parts, labels = [], []
    for kind in KINDS:
        m = counts.get(kind, 0)
        if not m:
            continue
        if kind == "local":
            part = _local(Z, gmm, m, rng)
        elif kind == "global":
            part = _global(Z, m, rng)
        elif kind == "dependency":
            part = _dependency(Z, m, rng)
        else:
            part = _clustered(Z, gmm, m, rng)
        parts.append(part)
        labels.extend([kind] * m)
    Z_syn = np.vstack(parts)
    X_syn = Z_syn * scale + center
    X_syn[:, constant] = center[constant]
    order = rng.permutation(n)
    return X_syn[order], np.asarray(labels)[order]


def inject_frame(
    reference: pd.DataFrame,
    numeric: list[str],
    n: int,
    *,
    random_state: Any = None,
    kinds: Sequence[str] = KINDS,
) -> pd.DataFrame:
    """``n`` synthetic anomalous rows shaped like ``reference``.

    Non-numeric columns (categories, keys, timestamps) are copied from randomly drawn
    reference rows, so every value is one the reference holds; the ``numeric``
    columns are synthetic anomalies from :func:`inject_anomalies`, generated on the
    columns standardized with the reference's median and IQR (NaNs ignored) and
    mapped back to their units. Integer columns are rounded (and keep their dtype),
    boolean columns are rounded and clipped to 0/1; a column that is entirely NaN in
    the reference stays NaN. A column ``synthetic_kind`` names each row's type.
    """
    if not isinstance(reference, pd.DataFrame):
        raise TypeError(f"reference must be a pandas DataFrame, got {type(reference).__name__}.")
    n = _check_n(n)
    kinds = _check_kinds(kinds)
    numeric = list(numeric)
    missing = [c for c in numeric if c not in reference.columns]
    if missing:
        raise ValueError(f"numeric column(s) {missing} are not in the reference frame.")
    if not numeric:
        raise ValueError("numeric must name at least one column to make anomalous.")
    not_numeric = [
        c for c in numeric
        if not (pd.api.types.is_numeric_dtype(reference[c]) or pd.api.types.is_bool_dtype(reference[c]))
    ]  # fmt: skip
    if not_numeric:
        raise ValueError(f"column(s) {not_numeric} are not numeric.")
    if len(reference) == 0:
        raise ValueError("reference frame has no rows.")
    if "synthetic_kind" in reference.columns:
        raise ValueError("reference already has a 'synthetic_kind' column.")
    rng = _rng(random_state)

    base = reference.iloc[rng.integers(0, len(reference), size=n)].reset_index(drop=True).copy()
    values = reference[numeric].astype("float64").to_numpy()
    all_nan = np.all(np.isnan(values), axis=0)
    usable = values[:, ~all_nan]
    if usable.shape[1]:
        center, scale, _ = robust_center_scale(usable)
        with np.errstate(over="ignore"):
            Z = (usable - center) / scale  # huge values become inf here: left out below
        complete = np.all(np.isfinite(Z), axis=1)
        # rows with a NaN are ignored, unless too few complete rows remain: then NaN -> median
        if complete.sum() >= max(10, 0.2 * Z.shape[0]):
            Z = Z[complete]
        else:
            Z = np.where(np.isfinite(Z), Z, 0.0)
        Z_syn, labels = inject_anomalies(Z, n, kinds=kinds, random_state=rng)
        syn = Z_syn * scale + center
    else:
        syn = np.empty((n, 0))
        labels = np.asarray([kinds[i % len(kinds)] for i in range(n)])

    j = 0
    for col, empty in zip(numeric, all_nan):
        if empty:
            base[col] = pd.Series([np.nan] * n, dtype="float64")
            continue
        col_values = syn[:, j]
        j += 1
        dtype = reference[col].dtype
        if pd.api.types.is_bool_dtype(dtype):
            base[col] = pd.Series(np.clip(np.round(col_values), 0, 1).astype(bool)).astype(dtype)
        elif pd.api.types.is_integer_dtype(dtype):
            info = np.iinfo(np.dtype(getattr(dtype, "numpy_dtype", dtype)))
            rounded = np.clip(np.round(col_values), info.min, info.max)
            base[col] = pd.Series(rounded).astype(dtype)
        else:
            base[col] = pd.Series(col_values).astype(dtype)
    base["synthetic_kind"] = labels
    return base
