"""Exact path-dependent TreeSHAP for isolation forests, compiled with numba.

:func:`isolation_forest_shap` computes what ``shap.TreeExplainer(forest)`` computes for a
fitted scikit-learn ``IsolationForest`` (agreeing to 1e-14), about 20x faster on the default
forest, from tables per leaf built once per fitted forest (:func:`_forest_tables`, cached).
:func:`explain_tree` is the ``"tree"`` method of :func:`pynomaly_core.explain.explain`: ours
where numba is installed and the tables fit in ``MAX_TABLE_ENTRIES``, else shap's own
``TreeExplainer``, with a note saying so.

For one tree, path-dependent TreeSHAP explains v(S) = sum over leaves l of
value_l * prod_{j in P_l} (x_j known ? o_lj : z_lj), where P_l are the distinct features
split on along the root-to-leaf path, o_lj = 1 if x satisfies every split on j on that
path (else 0) and z_lj is the product of the cover fractions (child / parent training
rows) of those splits. Each leaf is a product game whose Shapley value for i in P_l is
    value_l * (o_li - z_li) * sum_{S subset of O_l - i} w(|S|, d) prod_{j in P_l - S - i} z_lj
with d = |P_l|, w(s, d) = s! (d - s - 1)! / d! and O_l the features x agrees with. It
depends on x only through the d-bit pattern O_l, so a table of d * 2**d numbers per leaf
(at most 8 * 256 for the default max_samples = 256, depth <= 8) turns every row into one
pass over the nodes (which split x passes) and d table reads per leaf: O(T L d) per row
instead of TreeSHAP's O(T L D^2).

numba is imported only when the kernels are first needed (it comes with ``pynomaly[explain]``).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from pynomaly_core.explain.shap_explainers import EXTRA_HINT, shap_tree_explainer

#: largest per-forest table (float64 entries) of :func:`isolation_forest_shap`
MAX_TABLE_ENTRIES = 50_000_000
#: fewest rows :func:`isolation_forest_shap` spreads over numba's threads
PARALLEL_MIN_ROWS = 2048

_TABLE_CACHE: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_KERNELS: dict[str, Any] = {}
_UNITS = (
    "tree SHAP (path-dependent) of the forest's mean path length, negated: contributions "
    "in tree levels (splits saved), base_value = -expected path length"
)


class _TablesTooLarge(Exception):
    pass


def explain_tree(forest: Any, X: np.ndarray) -> tuple[np.ndarray, float, str]:
    """``(values, base_value, note)`` of the tree method: ours, else ``shap.TreeExplainer``."""
    if _numba() is not None:
        try:
            raw, base = isolation_forest_shap(forest, X)
            return raw, base, _UNITS
        except _TablesTooLarge as exc:
            fallback = f"; shap.TreeExplainer used: {exc}"
    else:
        fallback = "; numba unavailable: shap.TreeExplainer used"
    raw, base = shap_tree_explainer(forest, X)
    return -raw, -base, _UNITS + fallback


def isolation_forest_shap(
    forest: Any, X: np.ndarray, *, block: int = 64
) -> tuple[np.ndarray, float]:
    """Exact path-dependent TreeSHAP of a fitted scikit-learn ``IsolationForest``, negated.

    Returns ``(values, base_value)`` with ``values`` of shape ``X.shape``: minus the SHAP
    values of the forest's mean path length (what ``shap.TreeExplainer(forest)`` explains),
    so positive = shortens the path = more anomalous, and ``values.sum(1) + base_value``
    is minus the mean path length of each row. Needs numba; rows run in parallel on
    numba's threads.
    """
    if _numba() is None:
        raise ImportError(f"isolation_forest_shap needs numba (installed with shap): {EXTRA_HINT}")
    k = _compile()
    *arrays, base = _forest_tables(forest)
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != forest.n_features_in_:
        raise ValueError(f"X must have shape (rows, {forest.n_features_in_}), got {X.shape}")
    # scikit-learn compares float32 inputs with float64 thresholds; features x rows for the kernel
    XT = np.ascontiguousarray(X.astype(np.float32).T, dtype=np.float64)
    numba = _numba()
    threads = numba.get_num_threads()
    # waking numba's thread pool costs milliseconds: small batches run on the calling thread
    numba.set_num_threads(1 if len(X) < PARALLEL_MIN_ROWS else threads)
    try:
        return k["rows"](XT, *arrays, block), base
    finally:
        numba.set_num_threads(threads)


def _numba() -> Any:
    try:
        import numba
    except ImportError:
        return None
    return numba


def _average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n) of Liu et al. exactly as scikit-learn computes it."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


# ------------------------------------------------------------------ numba kernels
def _paths(
    left: Any,
    right: Any,
    feature: Any,
    cover: Any,
    max_d: Any,
    depth: Any,
    path_d: Any,
    path_f: Any,
    path_z: Any,
    bit: Any,
) -> Any:  # pragma: no cover
    """Per node: depth, distinct path features (first-appearance order), zero fractions, split bit."""
    # nodes are numbered in preorder (children after their parent)
    for p in range(left.shape[0]):
        if left[p] < 0:
            continue
        f = feature[p]
        d = path_d[p]
        k = -1
        for j in range(d):
            if path_f[p, j] == f:
                k = j
                break
        nd = d
        if k < 0:
            k = d
            nd = d + 1
        bit[p] = k
        for side in range(2):
            c = left[p] if side == 0 else right[p]
            for j in range(max_d):
                path_f[c, j] = path_f[p, j]
                path_z[c, j] = path_z[p, j]
            path_f[c, k] = f
            path_z[c, k] *= cover[c] / cover[p]
            path_d[c] = nd
            depth[c] = depth[p] + 1


def _tables(
    leaves: Any, path_d: Any, path_z: Any, value: Any, offsets: Any, out: Any
) -> Any:  # pragma: no cover - numba
    """Fill each leaf's table (2**d patterns x d features); returns the tree's expected value."""
    base = 0.0
    for li in range(leaves.shape[0]):
        node = leaves[li]
        d = path_d[node]
        n_masks = 1 << d
        off = offsets[li]
        v = value[node]
        all_z = 1.0
        for j in range(d):
            all_z *= path_z[node, j]
        base += v * all_z
        if d == 0:
            continue
        w = np.empty(d)
        for s in range(d):
            w[s] = math.exp(math.lgamma(s + 1) + math.lgamma(d - s) - math.lgamma(d + 1))
        g = np.empty(n_masks)
        for k in range(d):
            kb = 1 << k
            for S in range(n_masks):
                if S & kb:
                    g[S] = 0.0
                    continue
                prod = 1.0
                cnt = 0
                for j in range(d):
                    if (S >> j) & 1:
                        cnt += 1
                    elif j != k:
                        prod *= path_z[node, j]
                g[S] = w[cnt] * prod
            for j in range(d):  # g[A] = sum of g over the subsets of A
                if j == k:
                    continue
                jb = 1 << j
                for S in range(n_masks):
                    if S & jb:
                        g[S] += g[S ^ jb]
            zk = path_z[node, k]
            for O in range(n_masks):
                o = 1.0 if O & kb else 0.0
                out[off + O * d + k] = v * (o - zk) * g[O & ~kb]
    return base


def _rows(
    XT: Any,
    node_off: Any,
    n_nodes: Any,
    internal: Any,
    internal_off: Any,
    leaves: Any,
    leaf_off: Any,
    feature: Any,
    threshold: Any,
    left: Any,
    right: Any,
    bit: Any,
    leaf_d: Any,
    leaf_foff: Any,
    leaf_feats: Any,
    leaf_toff: Any,
    tab: Any,
    block: Any,
) -> Any:  # pragma: no cover
    """SHAP values of every row (``XT`` is features x rows); blocks of rows run in parallel.

    Per block and tree: which side of every split each row takes (as the bit pattern of
    disagreements carried down the tree), then ``d`` table reads per leaf and row.
    """
    n_out, n = XT.shape
    out = np.zeros((n, n_out))
    n_trees = node_off.shape[0]
    max_nodes = 1
    for t in range(n_trees):
        max_nodes = max(max_nodes, n_nodes[t])
    n_blocks = (n + block - 1) // block
    for b in prange(n_blocks):
        lo = b * block
        nb = min(n, lo + block) - lo
        masks = np.empty((max_nodes, block), np.int64)
        acc = np.zeros((n_out, block))
        for t in range(n_trees):  # trees outside rows: a tree's tables stay in cache
            base = node_off[t]
            for r in range(nb):
                masks[0, r] = -1
            for ii in range(internal_off[t], internal_off[t + 1]):
                node = internal[ii]
                j = node - base
                f = feature[node]
                thr = threshold[node]
                kb = np.int64(1) << bit[node]
                lc = left[node]
                rc = right[node]
                for r in range(nb):
                    m = masks[j, r]
                    go = np.int64(XT[f, lo + r] <= thr)
                    masks[lc, r] = m & ~(kb * (1 - go))
                    masks[rc, r] = m & ~(kb * go)
            for li in range(leaf_off[t], leaf_off[t + 1]):
                node = leaves[li]
                j = node - base
                d = leaf_d[node]
                dm = (np.int64(1) << d) - 1
                toff = leaf_toff[node]
                foff = leaf_foff[node]
                for k in range(d):
                    f = leaf_feats[foff + k]
                    for r in range(nb):
                        acc[f, r] += tab[toff + (masks[j, r] & dm) * d + k]
        for f in range(n_out):
            for r in range(nb):
                out[lo + r, f] = acc[f, r]
    return out


prange = range  # numba.prange once compiled


def _compile() -> dict[str, Any]:
    """Compile the kernels with numba (cached on disk by numba after the first run)."""
    if _KERNELS:
        return _KERNELS
    numba = _numba()
    globals()["prange"] = numba.prange
    _KERNELS.update(
        paths=numba.njit(cache=True)(_paths),
        tables=numba.njit(cache=True)(_tables),
        rows=numba.njit(parallel=True, cache=True)(_rows),
    )
    return _KERNELS


# ------------------------------------------------------------------ per-forest tables
@dataclass
class _Tree:
    """One fitted tree, flattened: per-node arrays (local node ids) and its leaves' tables."""

    n_nodes: int
    internal: np.ndarray  # bool per node
    leaves: np.ndarray  # local ids of the leaves
    leaf_d: np.ndarray  # distinct features on each leaf's path
    feature: np.ndarray  # the forest's column each internal node splits on (0 at leaves)
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    bit: np.ndarray  # position of the split's feature among its path's distinct features
    depth: np.ndarray
    path_d: np.ndarray
    path_f: np.ndarray
    path_z: np.ndarray
    table_offsets: np.ndarray | None = None  # per leaf, into ``table``
    table: np.ndarray | None = None
    base: float = 0.0

    @property
    def table_sizes(self) -> np.ndarray:
        return cast("np.ndarray", self.leaf_d * (1 << self.leaf_d))

    @property
    def leaf_feats(self) -> np.ndarray:
        """Each leaf's distinct path features, leaf after leaf."""
        max_d = self.path_f.shape[1]
        return cast("np.ndarray", self.path_f[self.leaves][np.arange(max_d) < self.leaf_d[:, None]])


def _prefix(counts: Any) -> np.ndarray:
    """Start offsets of consecutive blocks of ``counts`` entries."""
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _tree_paths(tree: Any, feats: Any, kernels: dict[str, Any]) -> _Tree:
    """The nodes and root-to-leaf paths of one fitted scikit-learn tree (no tables yet)."""
    nn = tree.node_count
    lc = tree.children_left.astype(np.int64)
    rc = tree.children_right.astype(np.int64)
    internal = lc >= 0
    if np.any(lc[internal] <= np.nonzero(internal)[0]) or np.any(
        rc[internal] <= np.nonzero(internal)[0]
    ):
        raise _TablesTooLarge("tree nodes are not in preorder")
    f_global = np.where(
        internal, np.asarray(feats, dtype=np.int64)[np.maximum(tree.feature, 0)], -1
    )
    cover = tree.weighted_n_node_samples.astype(np.float64)
    max_d = max(1, int(tree.max_depth))
    depth = np.zeros(nn, dtype=np.int64)
    path_d = np.zeros(nn, dtype=np.int64)
    path_f = np.full((nn, max_d), -1, dtype=np.int64)
    path_z = np.ones((nn, max_d))
    bit = np.zeros(nn, dtype=np.int64)
    kernels["paths"](lc, rc, f_global, cover, max_d, depth, path_d, path_f, path_z, bit)
    leaves = np.nonzero(~internal)[0]
    return _Tree(
        n_nodes=nn,
        internal=internal,
        leaves=leaves,
        leaf_d=path_d[leaves],
        feature=np.maximum(f_global, 0),
        threshold=tree.threshold.astype(np.float64),
        left=np.where(internal, lc, -1),
        right=np.where(internal, rc, -1),
        bit=bit,
        depth=depth,
        path_d=path_d,
        path_f=path_f,
        path_z=path_z,
    )


def _fill_tables(t: _Tree, tree: Any, n_trees: int, kernels: dict[str, Any]) -> None:
    """Compute the tree's leaf tables and expected value (its share of the forest's base)."""
    sizes = t.table_sizes
    # leaf value: depth + c(leaf size), averaged over trees; negated so positive = anomalous
    value = -(t.depth + _average_path_length(tree.n_node_samples)) / n_trees
    t.table_offsets = _prefix(sizes)
    t.table = np.empty(int(sizes.sum()))
    t.base = kernels["tables"](
        t.leaves.astype(np.int64), t.path_d, t.path_z, value, t.table_offsets, t.table
    )


def _flatten(trees: list[_Tree]) -> tuple[Any, ...]:
    """The trees concatenated into the arrays :func:`_rows` takes, plus the forest's base value."""
    node_off = _prefix([t.n_nodes for t in trees])
    feat_off = _prefix([int(t.leaf_d.sum()) for t in trees])
    table_off = _prefix([int(t.table_sizes.sum()) for t in trees])
    internal_ids = [nodes + np.nonzero(t.internal)[0] for t, nodes in zip(trees, node_off)]
    leaf_ids = [nodes + t.leaves for t, nodes in zip(trees, node_off)]
    leaf_foff = [_at_leaves(t, feats + _prefix(t.leaf_d)) for t, feats in zip(trees, feat_off)]
    leaf_toff = [_at_leaves(t, tables + t.table_offsets) for t, tables in zip(trees, table_off)]
    base = 0.0
    for t in trees:
        base += t.base

    def counts(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)

    def joined(name: str) -> np.ndarray:
        return np.concatenate([getattr(t, name) for t in trees])

    return (
        node_off,
        np.array([t.n_nodes for t in trees], dtype=np.int64),
        np.concatenate(internal_ids).astype(np.int64),
        counts(internal_ids),
        np.concatenate(leaf_ids).astype(np.int64),
        counts(leaf_ids),
        joined("feature"),
        joined("threshold"),
        joined("left"),
        joined("right"),
        joined("bit"),
        np.concatenate([_at_leaves(t, t.leaf_d) for t in trees]),
        np.concatenate(leaf_foff),
        joined("leaf_feats").astype(np.int64),
        np.concatenate(leaf_toff),
        joined("table"),
        float(base),
    )


def _at_leaves(t: _Tree, values: np.ndarray) -> np.ndarray:
    """A per-node int64 array of tree ``t`` with ``values`` at its leaves and 0 elsewhere."""
    out = np.zeros(t.n_nodes, dtype=np.int64)
    out[t.leaves] = values
    return out


def _forest_tables(forest: Any) -> tuple[Any, ...]:
    """Flattened trees and per-leaf tables of ``forest`` (cached per fitted forest)."""
    estimators = forest.estimators_
    cached = _TABLE_CACHE.get(forest)
    if cached is not None and cached[0] is estimators:
        return cast("tuple[Any, ...]", cached[1])
    kernels = _compile()
    trees: list[_Tree] = []
    total_entries = 0
    for est, feats in zip(estimators, forest.estimators_features_):
        t = _tree_paths(est.tree_, feats, kernels)
        total_entries += int(t.table_sizes.sum())
        if total_entries > MAX_TABLE_ENTRIES:
            raise _TablesTooLarge(
                f"per-leaf tables would exceed {MAX_TABLE_ENTRIES:,} entries (trees up to depth "
                f"{int(t.leaf_d.max())} in distinct features)"
            )
        _fill_tables(t, est.tree_, len(estimators), kernels)
        trees.append(t)
    result = _flatten(trees)
    _TABLE_CACHE[forest] = (estimators, result)
    return result
