"""Exact k-nearest-neighbour detectors on torch: TorchKNN (distance to neighbours) and TorchLOF.

Both give the same scores as PyOD's ``KNN`` and ``LOF`` (Euclidean metric): training
scores use the ``k`` nearest *other* training rows, scores of new rows use the ``k``
nearest training rows.

How the neighbours are found
----------------------------
*Brute force* (GPU, or CPU above :data:`TREE_MAX_FEATURES` features) computes
``||r||² - 2 q·r`` in float32 with one matrix product per tile of queries x reference
rows, and keeps only minima over groups of columns (two levels, 8 x 8), so the
``n_queries x n_reference`` distance matrix is never materialised and no row-wise
sort touches it. The candidates in the best groups are then re-measured exactly in
float64 (``||q - r||`` from the differences), which makes the distances as exact as a
tree's. A row whose float32 shortlist could have missed a true neighbour, judged by a
rounding-error bound, is redone with exact float64 distances to every reference row,
so the result never depends on float32 rounding.

*Tree* (CPU, few features): scikit-learn's ``KDTree``/``BallTree`` queried from
several threads, because at low dimension pruning beats any brute force.

torch is imported inside the methods, never at module import.

Example
-------
>>> import numpy as np
>>> from pynomaly_core.detectors.proximity import TorchKNN
>>> rng = np.random.default_rng(0)
>>> X = np.vstack([rng.normal(size=(500, 3)), [[7.0, 7.0, 7.0]]])
>>> det = TorchKNN(n_neighbors=5, device="cpu").fit(X)
>>> int(np.argmax(det.decision_scores_))
500
"""

from __future__ import annotations

import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np

from pynomaly_core.detectors.base import BaseDetector, DetectorError
from pynomaly_core.detectors.deep.device import (
    check_device,
    check_n_jobs,
    cpu_threads,
    import_torch,
    map_on_cpu_threads,
    resolve_device,
)
from pynomaly_core.detectors.deep.training import check_int

#: On CPU, ``algorithm="auto"`` uses a KD-tree up to this many features and brute
#: force above (measured crossover on 1e5 x d Gaussian rows, see docs/benchmarks.md).
TREE_MAX_FEATURES = 6
METHODS = ("largest", "mean", "median")
ALGORITHMS = ("auto", "brute", "kd_tree", "ball_tree")
CONFIG_FILE = "config.json"

_GROUP = 8  # columns per first-level group; second level groups _GROUP first-level minima
_MARGIN = 4  # extra shortlisted groups beyond k, so float32 near-ties rarely need the fallback
# A tile is reference rows x query rows of float32 values (2 MB on CPU, near the L2
# cache); the budgets bound the per-block minima and float64 work arrays.
_CPU_TILE_COLUMNS, _CPU_QUERY_ROWS, _CPU_BUDGET = 2048, 256, 64 << 20
_GPU_TILE_COLUMNS, _GPU_QUERY_ROWS, _GPU_BUDGET = 16384, 4096, 1 << 30
_UNIT_ROUNDOFF = {"highest": 2.0**-24, "high": 2.0**-11, "medium": 2.0**-8}


# ------------------------------------------------------------------------ search
def _exclude_self(distances: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop each training row from its own ``k + 1`` neighbours, exactly as scikit-learn does.

    The row's own index is removed where present; where duplicates pushed it out of
    the list, the first neighbour (a duplicate at distance 0) is removed instead.
    """
    n, k_plus_one = indices.shape
    keep = indices != np.arange(n)[:, None]
    missing_self = keep.all(axis=1)
    keep[missing_self, 0] = False
    return (distances[keep].reshape(n, k_plus_one - 1), indices[keep].reshape(n, k_plus_one - 1))


def _tree_kneighbors(
    tree: Any, queries: np.ndarray, k: int, n_threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """``tree.query`` split over threads (the query loop releases the GIL)."""
    if n_threads == 1 or len(queries) < 2 * n_threads:
        return cast("tuple[np.ndarray, np.ndarray]", tree.query(queries, k=k))
    parts = np.array_split(queries, n_threads)
    with ThreadPoolExecutor(n_threads) as pool:
        results = list(pool.map(lambda part: tree.query(part, k=k), parts))
    return np.vstack([r[0] for r in results]), np.vstack([r[1] for r in results])


class _BruteSearch:
    """Exact Euclidean k-NN against a fixed reference set, by tiled matrix products.

    Each tile is ``[R | ||r||²] @ [-2 Qᵀ ; 1]``, shape ``(tile_columns, query_rows)``:
    reference rows along the first axis, so the minima over groups of 8 consecutive
    reference rows are vectorised element-wise minima written straight into a
    contiguous ``(n_reference / 8, query_rows)`` array.

    Parameters
    ----------
    torch : module
        The imported torch module.
    reference : ndarray of shape (n_reference, n_features)
        Rows to search, float64.
    device : torch.device
        Where the products run.
    """

    def __init__(self, torch: Any, reference: np.ndarray, device: Any) -> None:
        self.torch = torch
        self.device = device
        self.offset = reference.mean(axis=0)  # centring keeps float32 products accurate
        centred = reference - self.offset
        n, d = centred.shape
        self.n_reference, self.n_features = n, d
        block = _GROUP * _GROUP
        self.n_padded = -(-n // block) * block
        self.reference64 = torch.from_numpy(centred).to(device)
        # Padding rows: zero coordinates and infinite norm, so they are never nearest.
        augmented = torch.zeros(self.n_padded, d + 1, dtype=torch.float32, device=device)
        augmented[:n, :d] = self.reference64.to(torch.float32)
        augmented[:n, d] = augmented[:n, :d].square().sum(dim=1)
        augmented[n:, d] = float("inf")
        self.augmented = augmented
        on_cpu = device.type == "cpu"
        self.tile_columns = min(self.n_padded, _CPU_TILE_COLUMNS if on_cpu else _GPU_TILE_COLUMNS)
        budget = _CPU_BUDGET if on_cpu else _GPU_BUDGET
        # A query block holds one float32 tile and the first-level minima of all rows.
        self.query_rows = int(
            max(
                16,
                min(
                    _CPU_QUERY_ROWS if on_cpu else _GPU_QUERY_ROWS,
                    budget // (4 * (self.n_padded // _GROUP)),
                ),
            )
        )
        self.budget = budget
        precision = torch.get_float32_matmul_precision()
        self.unit_roundoff = _UNIT_ROUNDOFF.get(precision, 2.0**-8)
        self.max_norm = float(torch.linalg.vector_norm(self.reference64, dim=1).max())

    def kneighbors(
        self, queries: np.ndarray, k: int, n_threads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest reference rows of each query row, sorted by distance.

        Parameters
        ----------
        queries : ndarray of shape (n_queries, n_features)
        k : int
        n_threads : int
            CPU threads; query blocks are spread over them with
            :func:`~pynomaly_core.detectors.deep.device.map_on_cpu_threads`.

        Returns
        -------
        distances : ndarray of shape (n_queries, k), float64
        indices : ndarray of shape (n_queries, k), int64
        """
        torch = self.torch

        def search(start: int) -> tuple[Any, Any]:
            block = torch.from_numpy(queries[start : start + self.query_rows] - self.offset)
            return self._block(block.to(self.device), k)

        starts = range(0, len(queries), self.query_rows)
        if self.device.type == "cpu":
            results = map_on_cpu_threads(torch, search, starts, n_threads)
        else:
            with torch.inference_mode():
                results = [search(start) for start in starts]
        return (
            torch.cat([r[0] for r in results]).cpu().numpy(),
            torch.cat([r[1] for r in results]).cpu().numpy(),
        )

    def _block(self, queries64: Any, k: int) -> tuple[Any, Any]:
        torch = self.torch
        rows = queries64.shape[0]
        multiplier = torch.ones(self.n_features + 1, rows, dtype=torch.float32, device=self.device)
        multiplier[:-1] = queries64.t().to(torch.float32) * -2.0
        minima = torch.empty(self.n_padded // _GROUP, rows, device=self.device)
        for start in range(0, self.n_padded, self.tile_columns):
            stop = min(start + self.tile_columns, self.n_padded)
            tile = torch.mm(self.augmented[start:stop], multiplier)
            torch.amin(
                tile.view(-1, _GROUP, rows), dim=1, out=minima[start // _GROUP : stop // _GROUP]
            )
        wanted = k + _MARGIN
        # Level 2: the best groups of 64 reference rows.
        coarse = minima.view(-1, _GROUP, rows).amin(dim=1).t()
        n_coarse = min(wanted, coarse.shape[1])
        coarse_values, coarse_ids = torch.topk(coarse, n_coarse, dim=1, largest=False)
        bound = (
            coarse_values[:, -1]
            if n_coarse < coarse.shape[1]
            else torch.full((rows,), float("inf"), device=self.device)
        )
        # Level 1: the best groups of 8 inside them.
        offsets = torch.arange(_GROUP, device=self.device)
        fine_ids = (coarse_ids[:, :, None] * _GROUP + offsets).reshape(rows, -1)
        fine = torch.gather(minima.t(), 1, fine_ids)
        n_fine = min(wanted, fine.shape[1])
        fine_values, chosen = torch.topk(fine, n_fine, dim=1, largest=False)
        if n_fine < fine.shape[1]:
            bound = torch.minimum(bound, fine_values[:, -1])
        columns = (torch.gather(fine_ids, 1, chosen)[:, :, None] * _GROUP + offsets).reshape(
            rows, -1
        )
        distances, indices = self._exact(queries64, columns, k)
        # Every reference row left out has a float32 value >= bound; accept the shortlist
        # only if the worst-case rounding error cannot bring one below the k-th distance.
        query_norms = queries64.square().sum(dim=1)
        error = (
            (self.n_features + 8)
            * self.unit_roundoff
            * (self.max_norm**2 + 2.0 * query_norms.sqrt() * self.max_norm)
        )
        unsafe = (bound.double() + query_norms - error) <= distances[:, -1].square()
        if bool(unsafe.any()):
            redo = torch.nonzero(unsafe).squeeze(1)
            distances[redo], indices[redo] = self._exhaustive(queries64[redo], k)
        return distances, indices

    def _exact(self, queries64: Any, columns: Any, k: int) -> tuple[Any, Any]:
        """Exact float64 distances to candidate ``columns``; the ``k`` smallest, sorted."""
        torch = self.torch
        rows, n_candidates = columns.shape
        valid = columns < self.n_reference
        safe = columns.clamp_max(self.n_reference - 1)
        step = max(1, self.budget // (8 * n_candidates * self.n_features))
        distances = torch.cat(
            [
                torch.linalg.vector_norm(
                    self.reference64.index_select(0, safe[i : i + step].reshape(-1)).view(
                        -1, n_candidates, self.n_features
                    )
                    - queries64[i : i + step, None, :],
                    dim=2,
                )
                for i in range(0, rows, step)
            ]
        ).masked_fill_(~valid, float("inf"))
        values, order = torch.topk(distances, k, dim=1, largest=False)
        return values, torch.gather(safe, 1, order)

    def _exhaustive(self, queries64: Any, k: int) -> tuple[Any, Any]:
        """Exact float64 distances to every reference row (no matrix-product shortcut)."""
        torch = self.torch
        step = max(1, self.budget // (8 * self.n_reference))
        parts = [
            torch.topk(
                torch.cdist(
                    queries64[i : i + step],
                    self.reference64,
                    compute_mode="donot_use_mm_for_euclid_dist",
                ),
                k,
                dim=1,
                largest=False,
            )
            for i in range(0, queries64.shape[0], step)
        ]
        return torch.cat([p.values for p in parts]), torch.cat([p.indices for p in parts])


class _NeighbourDetector(BaseDetector):
    """Shared fit-time checks, search selection and persistence of TorchKNN / TorchLOF."""

    def _check_params(self) -> None:
        owner = type(self).__name__
        check_int(owner, "n_neighbors", self.n_neighbors, 1)
        check_int(owner, "leaf_size", self.leaf_size, 1)
        if self.algorithm not in ALGORITHMS:
            raise DetectorError(
                f"{owner}: algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}."
            )
        check_device(self.device, owner)
        check_n_jobs(self.n_jobs, owner)

    def _choose_algorithm(self, device: Any, n_features: int) -> str:
        if self.algorithm != "auto":
            return cast("str", self.algorithm)
        if device.type == "cpu" and n_features <= TREE_MAX_FEATURES:
            return "kd_tree"
        return "brute"

    def _kneighbors(self, queries: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` nearest training rows of ``queries``; ``None`` = the training rows, self excluded."""
        extra = 1 if queries is None else 0
        targets = self.fit_X_ if queries is None else queries
        torch = import_torch()
        device = self._search_device(torch)
        threads = cpu_threads(self.n_jobs)
        if self.algorithm_ == "brute":
            with torch.inference_mode():
                search = _BruteSearch(torch, self.fit_X_, device)
            distances, indices = search.kneighbors(targets, k + extra, threads)
        else:
            if getattr(self, "_tree", None) is None:
                from sklearn.neighbors import BallTree, KDTree

                tree_class = KDTree if self.algorithm_ == "kd_tree" else BallTree
                self._tree = tree_class(self.fit_X_, leaf_size=self.leaf_size)
            distances, indices = _tree_kneighbors(self._tree, targets, k + extra, threads)
        if queries is None:
            distances, indices = _exclude_self(distances, indices)
        return distances, indices

    def _search_device(self, torch: Any) -> Any:
        """The device for brute force; the exact float64 steps rule out Apple MPS."""
        device = resolve_device(torch, self.device, type(self).__name__)
        if device.type != "mps":
            return device
        if self.device == "auto":
            return torch.device("cpu")
        raise DetectorError(
            f"{type(self).__name__}: device='mps' is not supported (the exact "
            "distance steps need float64, which MPS lacks); use 'auto' or 'cpu'."
        )

    def _fit_search(self, X: np.ndarray) -> None:
        torch = import_torch()
        device = self._search_device(torch)
        self.fit_X_ = X
        self.algorithm_ = self._choose_algorithm(device, X.shape[1])
        self.device_ = str(device) if self.algorithm_ == "brute" else "cpu"
        self._tree = None

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        # Computed in _fit with each row excluded from its own neighbours.
        return cast("np.ndarray", self._fit_scores)

    # ------------------------------------------------------------------ persistence
    def _arrays(self) -> dict[str, np.ndarray]:
        return {"fit_X": self.fit_X_, "decision_scores": self.decision_scores_}

    def _save_payload(self, dirpath: Path, key: bytes) -> None:
        """Write one ``.npy`` per learned array plus ``config.json``; nothing is pickled."""
        dirpath = Path(dirpath)
        arrays = self._arrays()
        for name, array in arrays.items():
            np.save(dirpath / f"{name}.npy", array, allow_pickle=False)
        config = {
            "class": type(self).__name__,
            "params": self.get_params(),
            "arrays": sorted(arrays),
            "n_features_in_": int(self.n_features_in_),
            "threshold_": float(self.threshold_),
            "algorithm_": self.algorithm_,
            "device_": self.device_,
        }
        (dirpath / CONFIG_FILE).write_text(json.dumps(config, indent=2))

    @classmethod
    def _load_payload(cls, dirpath: Path, key: bytes) -> _NeighbourDetector:
        dirpath = Path(dirpath)
        config = json.loads((dirpath / CONFIG_FILE).read_text())
        if config["class"] != cls.__name__:
            raise DetectorError(f"{dirpath} holds a {config['class']}, not a {cls.__name__}.")
        detector = cls(**config["params"])
        for name in config["arrays"]:
            setattr(detector, f"{name}_", np.load(dirpath / f"{name}.npy", allow_pickle=False))
        detector.n_features_in_ = config["n_features_in_"]
        detector.algorithm_ = config["algorithm_"]
        detector.device_ = config["device_"]
        detector._tree = None
        detector.threshold_ = config["threshold_"]
        detector.labels_ = (detector.decision_scores_ > detector.threshold_).astype(int)
        return detector


_SHARED_PARAMS_DOC = """
    algorithm : {"auto", "brute", "kd_tree", "ball_tree"}, default="auto"
        ``"auto"``: brute force on a GPU, and on CPU above ``TREE_MAX_FEATURES``
        features; a KD-tree on CPU at lower dimension. Trees always run on CPU.
    leaf_size : int, default=30
        Leaf size of the KD-/ball tree.
    device : {"auto", "cpu", "cuda", "cuda:N"}, default="auto"
        Where brute force runs; ``"auto"`` picks CUDA, else CPU (Apple MPS lacks the
        float64 the exact distance steps need).
    n_jobs : int or None, default=None
        CPU threads (torch threads for brute force, query threads for trees); ``None``
        and ``-1`` use all available cores. torch's thread setting is restored after.
    random_state : None
        Ignored (the search is exact and deterministic); accepted so that every
        registry detector takes the same arguments.

    Attributes
    ----------
    fit_X_ : ndarray of shape (n_samples, n_features)
        Training rows (the reference set for scoring).
    algorithm_ : str
        Search actually used: ``"brute"``, ``"kd_tree"`` or ``"ball_tree"``.
    device_ : str
        Device of the brute-force search (``"cpu"`` for trees).
    decision_scores_, threshold_, labels_
        See :class:`~pynomaly_core.detectors.base.BaseDetector`.
"""


def _document_shared_params(cls: type) -> type:
    """Append the parameters and attributes TorchKNN and TorchLOF share to the class docstring."""
    cls.__doc__ = (
        (cls.__doc__ or "").rstrip()
        + "\n"
        + _SHARED_PARAMS_DOC
        + getattr(cls, "_extra_attributes_doc", "")
    )
    return cls


@_document_shared_params
class TorchKNN(_NeighbourDetector):
    """Distance-to-neighbours outlier score, identical to PyOD's ``KNN`` (Euclidean).

    Parameters
    ----------
    contamination : float in (0, 0.5], default=0.1
        Expected share of anomalies; sets ``threshold_``.
    n_neighbors : int, default=5
        Neighbours per row; must be smaller than the number of training rows.
    method : {"largest", "mean", "median"}, default="largest"
        Score = distance to the k-th neighbour, or the mean / median of the k distances.
    """

    def __init__(
        self,
        contamination: float = 0.1,
        n_neighbors: int = 5,
        method: str = "largest",
        algorithm: str = "auto",
        leaf_size: int = 30,
        device: str = "auto",
        n_jobs: int | None = None,
        random_state: int | None = None,
    ) -> None:
        super().__init__(contamination=contamination)
        self.n_neighbors = n_neighbors
        self.method = method
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        if self.method not in METHODS:
            raise DetectorError(f"TorchKNN: method must be one of {METHODS}, got {self.method!r}.")

    def _reduce(self, distances: np.ndarray) -> np.ndarray:
        if self.method == "largest":
            return distances[:, -1]
        if self.method == "mean":
            return cast("np.ndarray", distances.mean(axis=1))
        return cast("np.ndarray", np.median(distances, axis=1))

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self._check_params()
        if self.n_neighbors >= X.shape[0]:
            raise DetectorError(
                f"TorchKNN: n_neighbors={self.n_neighbors} must be smaller than the number of "
                f"training rows ({X.shape[0]})."
            )
        self._fit_search(X)
        self._fit_scores = self._reduce(self._kneighbors(None, self.n_neighbors)[0])

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self._reduce(self._kneighbors(X, self.n_neighbors)[0])


@_document_shared_params
class TorchLOF(_NeighbourDetector):
    """Local outlier factor, identical to PyOD's ``LOF`` (scikit-learn's, Euclidean).

    Training scores are the LOF of each training row against the others; new rows are
    scored against the training rows (scikit-learn's novelty mode). Where several rows
    lie at exactly the k-th neighbour distance, which of them count as neighbours is
    arbitrary (as in scikit-learn), and brute force may pick differently from
    scikit-learn's tree; LOF values of rows near such ties can then differ.

    Parameters
    ----------
    contamination : float in (0, 0.5], default=0.1
        Expected share of anomalies; sets ``threshold_``.
    n_neighbors : int, default=20
        Neighbourhood size; capped at ``n_samples - 1`` like scikit-learn.
    """

    _extra_attributes_doc = """    n_neighbors_ : int
        Neighbourhood size actually used.
    lrd_ : ndarray of shape (n_samples,)
        Local reachability density of the training rows.
    k_distance_ : ndarray of shape (n_samples,)
        Distance of each training row to its ``n_neighbors_``-th neighbour.
"""

    def __init__(
        self,
        contamination: float = 0.1,
        n_neighbors: int = 20,
        algorithm: str = "auto",
        leaf_size: int = 30,
        device: str = "auto",
        n_jobs: int | None = None,
        random_state: int | None = None,
    ) -> None:
        super().__init__(contamination=contamination)
        self.n_neighbors = n_neighbors
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _local_density(self, distances: np.ndarray, indices: np.ndarray) -> np.ndarray:
        reach = np.maximum(distances, self.k_distance_[indices])
        return cast("np.ndarray", 1.0 / (reach.mean(axis=1) + 1e-10))

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self._check_params()
        if X.shape[0] < 2:
            raise DetectorError("TorchLOF: fit needs at least 2 rows.")
        self.n_neighbors_ = min(self.n_neighbors, X.shape[0] - 1)
        if self.n_neighbors_ < self.n_neighbors:
            warnings.warn(
                f"TorchLOF: n_neighbors={self.n_neighbors} is not smaller than the "
                f"{X.shape[0]} training rows; using {self.n_neighbors_}.",
                UserWarning,
                stacklevel=3,
            )
        self._fit_search(X)
        distances, indices = self._kneighbors(None, self.n_neighbors_)
        self.k_distance_ = distances[:, -1]
        self.lrd_ = self._local_density(distances, indices)
        self._fit_scores = (self.lrd_[indices] / self.lrd_[:, None]).mean(axis=1)

    def _score(self, X: np.ndarray) -> np.ndarray:
        distances, indices = self._kneighbors(X, self.n_neighbors_)
        return cast(
            "np.ndarray",
            (self.lrd_[indices] / self._local_density(distances, indices)[:, None]).mean(axis=1),
        )

    def _arrays(self) -> dict[str, np.ndarray]:
        return {**super()._arrays(), "k_distance": self.k_distance_, "lrd": self.lrd_}

    @classmethod
    def _load_payload(cls, dirpath: Path, key: bytes) -> TorchLOF:
        detector = super()._load_payload(dirpath, key)
        detector.n_neighbors_ = min(detector.n_neighbors, detector.fit_X_.shape[0] - 1)
        return detector
