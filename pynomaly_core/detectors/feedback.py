"""A detector that learns from reviewers' verdicts: gradient boosting on features + unsupervised scores.

Reviewers confirm or reject a few flagged rows; most rows get no verdict. ``fit(X, y)`` takes
``y`` per row: ``1`` = confirmed anomaly, ``0`` = rejected (normal), ``-1`` = no verdict.

How it scores, and why:

1. An unsupervised :class:`~pynomaly_core.detectors.ensemble.EnsembleDetector` (default IForest,
   HBOS, ECOD, KNN; rank-normalised, averaged) is fitted on all rows. Its per-member scores, and
   :class:`NeighbourScores` (the k-th neighbour distance and the local outlier factor at
   ``neighbours`` = 1, 5, 10, 20, 50 neighbours, from one neighbour search), are extra features for
   the classifier: they carry what "unusual" means for this data at several scales, which a few
   labels alone cannot teach, and the classifier learns which of them the verdicts agree with
   (the idea of XGBOD's outlier-score features, from one search instead of dozens of detectors).
2. A scikit-learn ``HistGradientBoostingClassifier`` learns confirmed (1) against normal rows on
   ``[X, member scores, neighbour features]``; the classes are balanced. Rejected rows are
   normal. Unlabelled rows, by default (``unlabelled="weighted"``), are all normal with weight
   ``unlabelled_weight`` relative to a rejected row: when verdicts are a random sample of the
   rows, a classifier of labelled anomalies against everything else ranks rows as the true
   posterior does (Elkan & Noto 2008), the few unreviewed anomalies among the normal class
   only shift it. With ``unlabelled="reliable"`` only "reliable negatives" enter as normal:
   rows outside the top ``contamination`` share of the unsupervised score *and* of a first,
   cross-fitted classifier's probabilities (two-step positive-unlabelled learning).
3. The score is a blend ``alpha * rank(classifier) + (1 - alpha) * rank(unsupervised)`` (ranks
   against the training rows, in [0, 1]). With at least ``min_labels`` confirmed rows, ``alpha``
   is chosen from ``ALPHAS`` by cross-fitting: the rows are split into ``n_folds`` folds, each
   fold is scored by a classifier that never saw it, and the ``alpha`` with the best ROC-AUC of
   confirmed rows against the rest wins (on positive-unlabelled data that AUC is an increasing
   affine function of the true one; with enough rejected rows it is averaged with the AUC among
   the reviewed rows). With 1 to ``min_labels - 1`` confirmed rows there is too little to
   cross-fit: the classifier gets the prior weight ``alpha = c / (c + min_labels - 1)``
   (``mode_ == "few"``). With none there is nothing to learn from: ``alpha = 0``, the
   unsupervised ensemble alone (``mode_ == "unsupervised"``).
4. The training scores (``decision_scores_``, from which the pipeline takes its threshold and
   conformal calibration set) are the cross-fitted, out-of-fold scores: a confirmed row is not
   scored by a classifier that memorised its verdict, so p-values and severities computed against
   them keep their meaning for new rows (in ``"few"`` mode the one or two confirmed rows are the
   exception; they rank at the top either way).

Example
-------
>>> import numpy as np
>>> from pynomaly_core.detectors import create
>>> rng = np.random.default_rng(0)
>>> far = rng.normal(size=(12, 3))
>>> far = 6.0 * far / np.linalg.norm(far, axis=1, keepdims=True)
>>> X = np.vstack([rng.normal(size=(300, 3)), far])
>>> y = np.full(len(X), -1)  # no verdict
>>> y[[300, 301, 302, 303]] = 1  # confirmed
>>> y[:20] = 0  # rejected
>>> det = create("FeedbackBoost", contamination=0.05, random_state=0).fit(X, y)
>>> det.n_confirmed_, det.n_rejected_, det.alpha_ in (0.0, 0.25, 0.5, 0.75, 1.0)
(4, 20, True)
>>> bool(np.all(det.decision_scores_[304:] > det.threshold_))  # the unreviewed anomalies too
True
"""

from __future__ import annotations

import contextlib
import copy
import numbers
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from pynomaly_core.detectors.base import BaseDetector, DetectorError
from pynomaly_core.detectors.ensemble import DEFAULT_DETECTORS, EnsembleDetector

#: blend weights of the classifier tried by cross-fitting (0 = unsupervised ensemble only)
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: verdict codes of ``y``
CONFIRMED, REJECTED, UNLABELLED = 1, 0, -1

#: neighbourhood sizes of the k-NN distance and LOF features given to the classifier
NEIGHBOURS = (1, 5, 10, 20, 50)
#: how unlabelled rows train the classifier (see the module docstring, step 2)
UNLABELLED_MODES = ("weighted", "reliable")

#: the shell of models saved before the skops format (loaded only for those, after the signature)
_LEGACY_SHELL = "feedback.joblib"
_SHELL_STEM = "feedback"
#: below this many rows the classifier runs on one OpenMP thread
_SMALL = 50_000


@contextlib.contextmanager
def _threads_for(n_rows: int) -> Iterator[None]:
    """One OpenMP thread for small matrices: gradient boosting on a few thousand rows gains
    nothing from threads, and on a busy machine spinning OpenMP threads make it 10-30x slower."""
    if n_rows >= _SMALL:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _rank_knots(scores: np.ndarray) -> np.ndarray:
    """``(2, k)`` knots of the rank map of ``scores``: distinct values and their mid-ranks in [0, 1]."""
    ref = np.sort(np.asarray(scores, dtype=float))
    values = np.unique(ref)
    lo = np.searchsorted(ref, values, side="left")
    hi = np.searchsorted(ref, values, side="right")
    return np.vstack([values, (lo + hi) / (2.0 * ref.size)])


def _rank(knots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Rank of ``values`` among the reference scores, in [0, 1]: linear between the knots, plus a
    ``1e-9 * value`` term so the map is strictly increasing (no new ties between distinct
    scores, and rows beyond the reference range keep their order)."""
    return cast(
        "np.ndarray", np.interp(values, knots[0], knots[1]) + 1e-9 * np.asarray(values, dtype=float)
    )


def _roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC-AUC of scores ``s`` for 0/1 ``y`` (Mann-Whitney, ties count half)."""
    from scipy.stats import rankdata

    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _neighbour_features(
    dist: np.ndarray, idx: np.ndarray, ref_kdist: np.ndarray, ref_lrd: np.ndarray, ks: np.ndarray
) -> np.ndarray:
    """``(n, 2 * len(ks))`` features of rows with neighbours ``idx`` at distances ``dist``
    (ascending, among the reference rows): the k-th neighbour distance and the local outlier
    factor for each ``k`` in ``ks``. ``ref_kdist[:, j]`` is each reference row's ``ks[j]``-th
    neighbour distance, ``ref_lrd[:, j]`` its local reachability density at ``ks[j]``."""
    kdist = dist[:, ks - 1]
    lof = np.empty_like(kdist)
    for j, k in enumerate(ks):
        reach = np.maximum(dist[:, :k], ref_kdist[idx[:, :k], j])
        lrd = 1.0 / (reach.mean(axis=1) + 1e-12)
        lof[:, j] = ref_lrd[idx[:, :k], j].mean(axis=1) / lrd
    return np.column_stack([kdist, lof])


class NeighbourScores:
    """k-NN distances and local outlier factors at several neighbourhood sizes, as features.

    The reference set is the standardised training rows (a random sample of at most
    ``max_rows``); a training row is not its own neighbour. Only arrays are kept, so the state
    saves as plain arrays; the search index is rebuilt when first needed.
    """

    def __init__(self, ks: Sequence[int], max_rows: int, random_state: int | None) -> None:
        self.ks = ks
        self.max_rows = max_rows
        self.random_state = random_state

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        """Fit on the training rows ``X`` and return their features (self excluded)."""
        n = X.shape[0]
        self.center_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        R = (X - self.center_) / self.scale_
        rng = np.random.default_rng(self.random_state)
        ref = np.sort(rng.choice(n, self.max_rows, replace=False)) if n > self.max_rows else None
        self.reference_ = R if ref is None else R[ref]
        m = self.reference_.shape[0]
        self.ks_ = np.array(sorted({int(k) for k in self.ks if 0 < int(k) < m}), dtype=int)
        if self.ks_.size == 0:
            return np.zeros((n, 0))
        kmax = int(self.ks_[-1])
        # the reference rows' own neighbourhoods (self excluded) give their k-distances and lrd
        own = self._neighbours(self.reference_, kmax, exclude=np.arange(m))
        self.reference_kdist_ = own[0][:, self.ks_ - 1]
        self.reference_lrd_ = np.column_stack(
            [
                1.0
                / (
                    np.maximum(own[0][:, :k], self.reference_kdist_[own[1][:, :k], j]).mean(axis=1)
                    + 1e-12
                )
                for j, k in enumerate(self.ks_)
            ]
        )
        if ref is None:
            dist, idx = own
        else:
            position = np.full(n, -1)
            position[ref] = np.arange(m)
            dist, idx = self._neighbours(R, kmax, exclude=position)
        return _neighbour_features(dist, idx, self.reference_kdist_, self.reference_lrd_, self.ks_)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Features of new rows ``X`` against the reference rows."""
        if self.ks_.size == 0:
            return np.zeros((X.shape[0], 0))
        dist, idx = self._neighbours((X - self.center_) / self.scale_, int(self.ks_[-1]))
        return _neighbour_features(dist, idx, self.reference_kdist_, self.reference_lrd_, self.ks_)

    def _neighbours(
        self, R: np.ndarray, k: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Distances and reference indices of the ``k`` nearest reference rows of each row of
        ``R``; ``exclude[i]`` (a reference index, or -1) is left out of row ``i``'s neighbours."""
        index = self.__dict__.get("_index")
        if index is None:
            from sklearn.neighbors import NearestNeighbors

            index = NearestNeighbors().fit(self.reference_)
            self.__dict__["_index"] = index
        extra = 0 if exclude is None else 1
        dist, idx = index.kneighbors(R, n_neighbors=k + extra)
        if exclude is None:
            return dist, idx
        keep = idx != exclude[:, None]
        keep[keep.all(axis=1), -1] = False  # not among them: drop the farthest instead
        n = R.shape[0]
        return dist[keep].reshape(n, k), idx[keep].reshape(n, k)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_index", None)  # rebuilt from reference_ when needed
        return state


class FeedbackDetector(BaseDetector):
    """Semi-supervised detector for rows with reviewer verdicts (see the module docstring).

    Parameters
    ----------
    detectors : sequence
        Members of the unsupervised ensemble (registry names or ``(name, params)`` pairs).
    n_folds : int
        Folds of the cross-fitting that chooses ``alpha`` and gives the training scores.
    min_labels : int
        Confirmed rows needed to cross-fit the blend weight; below it a prior weight is used.
    neighbours : sequence of int
        Neighbourhood sizes of the k-NN distance and LOF features (empty: none).
    unlabelled : {"auto", "weighted", "reliable"}
        Unlabelled rows train as normal: all of them, down-weighted, or only reliable negatives;
        ``"auto"`` cross-fits both and keeps the better (``"reliable"`` in ``"few"`` mode).
    unlabelled_weight : float in (0, 1]
        Weight of an unlabelled row trained as normal, relative to a rejected row.
    max_unlabelled : int
        At most this many unlabelled rows (a random sample) train each classifier: bounds the cost
        on large windows.
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf :
        Of the ``HistGradientBoostingClassifier`` (small trees, few rows per leaf: few verdicts).
    contamination : float in (0, 0.5]
        Expected share of anomalies; sets ``threshold_`` and the share of unlabelled rows with the
        highest unsupervised scores that are not used as normal.
    random_state : int or None
        Seeds the members, the folds, the sample of unlabelled rows and the classifier.

    Attributes
    ----------
    ensemble_ : EnsembleDetector
    classifiers_ : list of HistGradientBoostingClassifier
        The cross-fitting's fold classifiers (one in ``"few"`` mode, none without confirmed
        rows); a new row's probability is their mean, so it is scored like a training row.
    neighbour_scores_ : NeighbourScores
        The neighbour features' reference rows (absent without confirmed rows).
    alpha_ : float
        Weight of the classifier in the blend.
    mode_ : {"unsupervised", "few", "blend"}
    unlabelled_mode_ : {"weighted", "reliable"}
        The treatment of unlabelled rows in use (absent without confirmed rows).
    training_negatives_ : ndarray of bool
        Training rows the classifier learnt as normal (rejected and, per ``unlabelled``, all or
        the reliable unlabelled rows).
    cv_auc_ : dict
        Cross-fitted ROC-AUC of each tried ``alpha`` (empty in unsupervised mode).
    n_confirmed_, n_rejected_, n_unlabelled_ : int
        Verdict counts seen at ``fit``.
    """

    detector_name = "FeedbackBoost"
    requires_labels = True

    def __init__(
        self,
        detectors: Sequence[Any] = DEFAULT_DETECTORS,
        n_folds: int = 3,
        min_labels: int = 3,
        neighbours: Sequence[int] = NEIGHBOURS,
        unlabelled: str = "auto",
        unlabelled_weight: float = 0.5,
        max_unlabelled: int = 20_000,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 5,
        contamination: float = 0.1,
        random_state: int | None = None,
    ) -> None:
        super().__init__(contamination=contamination)
        self.detectors = detectors
        self.n_folds = n_folds
        self.min_labels = min_labels
        self.neighbours = neighbours
        self.unlabelled = unlabelled
        self.unlabelled_weight = unlabelled_weight
        self.max_unlabelled = max_unlabelled
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    # ------------------------------------------------------------ validation
    def _check_params(self) -> None:
        name = type(self).__name__
        for param in ("n_folds", "min_labels", "max_unlabelled"):
            value = getattr(self, param)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 2:
                raise DetectorError(f"{name}: {param} must be an integer >= 2, got {value!r}.")
        if self.unlabelled not in ("auto", *UNLABELLED_MODES):
            raise DetectorError(
                f"{name}: unlabelled must be one of {('auto', *UNLABELLED_MODES)}, got "
                f"{self.unlabelled!r}."
            )
        ks = self.neighbours
        if isinstance(ks, (str, bytes)) or not all(
            isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 1 for k in ks
        ):
            raise DetectorError(
                f"{name}: neighbours must be a sequence of integers >= 1, got {ks!r}."
            )
        w = self.unlabelled_weight
        if not isinstance(w, numbers.Real) or not 0.0 < float(w) <= 1.0:
            raise DetectorError(f"{name}: unlabelled_weight must be in (0, 1], got {w!r}.")

    @staticmethod
    def _check_verdicts(y: np.ndarray) -> np.ndarray:
        values = set(np.unique(y).tolist())
        bad = values - {CONFIRMED, REJECTED, UNLABELLED}
        if bad:
            raise DetectorError(
                f"FeedbackDetector: y must hold verdicts 1 (confirmed), 0 (rejected) or -1 (no "
                f"verdict), found {sorted(bad)}."
            )
        return y.astype(int)

    # ----------------------------------------------------------------- hooks
    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self._check_params()
        y = self._check_verdicts(np.asarray(y))
        self.n_confirmed_ = int((y == CONFIRMED).sum())
        self.n_rejected_ = int((y == REJECTED).sum())
        self.n_unlabelled_ = int((y == UNLABELLED).sum())
        self.ensemble_ = EnsembleDetector(
            detectors=self.detectors,
            normalization="rank",
            combination="average",
            contamination=self.contamination,
            random_state=self.random_state,
        ).fit(X)
        members = self._member_scores_train()
        u = self.ensemble_.decision_scores_
        self.unsupervised_knots_ = _rank_knots(u)
        self.cv_auc_: dict[str, float] = {}
        self.classifiers_: list[Any] = []
        self.alpha_ = 0.0
        self.mode_ = "unsupervised"
        r_u = _rank(self.unsupervised_knots_, u)
        if self.n_confirmed_ == 0:
            self.train_scores_ = r_u
            return
        self.neighbour_scores_ = NeighbourScores(
            self.neighbours, self.max_unlabelled, self.random_state
        )
        Z = np.column_stack([X, members, self.neighbour_scores_.fit_transform(X)])
        if self.n_confirmed_ < self.min_labels:
            # too few verdicts to check a choice: keep the prior that the top unsupervised share
            # may hold the unreviewed anomalies ("auto" reads as "reliable" here)
            self.unlabelled_mode_ = "weighted" if self.unlabelled == "weighted" else "reliable"
            self._fit_few(Z, y, self._training_negatives(y, u, self.unlabelled_mode_), r_u)
            return
        modes = UNLABELLED_MODES if self.unlabelled == "auto" else (self.unlabelled,)
        best: tuple[float, str] | None = None
        for mode in modes:
            negative = self._training_negatives(y, u, mode)
            if self.n_unlabelled_ and mode == "reliable":
                # two-step PU: unlabelled rows a first classifier already finds anomalous are no
                # reliable negatives either (anomalies the unsupervised score misses but the
                # verdicts describe)
                negative &= ~self._top_unlabelled(y, self._cross_fit(Z, y, negative)[0])
            oof, classifiers = self._cross_fit(Z, y, negative)
            knots = _rank_knots(oof)
            r_sup = _rank(knots, oof)
            cv_auc = {f"{a:g}": self._blend_auc(y, a * r_sup + (1 - a) * r_u) for a in ALPHAS}
            # ties go to the more supervised blend: the verdicts are the better-informed evidence
            alpha = max(ALPHAS, key=lambda a: (cv_auc[f"{a:g}"], a))
            # between modes, the better cross-fitted evidence; ties keep the first (weighted)
            if best is None or cv_auc[f"{alpha:g}"] > best[0]:
                best = (cv_auc[f"{alpha:g}"], mode)
                self.unlabelled_mode_, self.training_negatives_ = mode, negative
                self.classifiers_, self.supervised_knots_ = classifiers, knots
                self.cv_auc_, self.alpha_ = cv_auc, alpha
                self.train_scores_ = alpha * r_sup + (1 - alpha) * r_u
        self.mode_ = "blend" if self.alpha_ > 0 else "unsupervised"

    def _fit_few(self, Z: np.ndarray, y: np.ndarray, negative: np.ndarray, r_u: np.ndarray) -> None:
        """One or two confirmed rows: too few to cross-fit a blend weight, enough to say which
        kind of unusual the reviewers mean. The classifier gets a prior weight
        ``alpha = c / (c + min_labels - 1)`` for ``c`` confirmed rows (1/3, then 1/2 with the
        default), rising to the cross-fitted choice from ``min_labels`` on. Its training
        probabilities are in-sample (no fold would hold a confirmed row to learn from); only the
        confirmed rows, at the top either way, are scored by a classifier that saw them."""
        self.training_negatives_ = negative
        self.classifiers_ = [self._fit_classifier(Z, y, negative, seed_offset=0)]
        p = self._proba(Z)
        self.supervised_knots_ = _rank_knots(p)
        c = self.n_confirmed_
        self.alpha_ = c / (c + self.min_labels - 1)
        self.mode_ = "few"
        self.train_scores_ = self.alpha_ * self._supervised_rank(p) + (1 - self.alpha_) * r_u

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        return self.train_scores_

    def _score(self, X: np.ndarray) -> np.ndarray:
        members = self._member_scores(X)
        r_u = _rank(self.unsupervised_knots_, self.ensemble_._combine(members))
        if not self.classifiers_ or self.alpha_ == 0.0:
            return r_u
        p = self._proba(self._classifier_features(X, members))
        return self.alpha_ * self._supervised_rank(p) + (1 - self.alpha_) * r_u

    # --------------------------------------------------------------- helpers
    def _member_scores(self, X: np.ndarray) -> np.ndarray:
        return cast(
            "np.ndarray",
            self.ensemble_._normalize(
                np.column_stack([m.decision_function(X) for m in self.ensemble_.members_])
            ),
        )

    def _classifier_features(self, X: np.ndarray, members: np.ndarray) -> np.ndarray:
        """``[X, member scores, neighbour features]`` of new rows, as the classifier learnt them."""
        return np.column_stack([X, members, self.neighbour_scores_.transform(X)])

    def _member_scores_train(self) -> np.ndarray:
        train = np.column_stack([m.decision_scores_ for m in self.ensemble_.members_])
        return cast("np.ndarray", self.ensemble_._normalize(train))

    def _blend_auc(self, y: np.ndarray, s: np.ndarray) -> float:
        """Cross-fitted evidence for one blend: ROC-AUC of confirmed rows against all others, and,
        with at least ``min_labels`` rejected rows, averaged with the AUC among reviewed rows only.

        Reviewers see the rows the model ranked highest, so the first AUC flatters the unsupervised
        score that chose them, and the second (range-restricted to those rows) undersells it;
        their mean is less biased than either when verdicts come from the top of the ranking, and
        both are unbiased when they come from a random sample.
        """
        confirmed = (y == CONFIRMED).astype(int)
        auc = _roc_auc(confirmed, s)
        if self.n_rejected_ >= self.min_labels:
            reviewed = y != UNLABELLED
            auc = 0.5 * (auc + _roc_auc(confirmed[reviewed], s[reviewed]))
        return auc

    def _supervised_rank(self, p: np.ndarray) -> np.ndarray:
        """Rank among the out-of-fold training probabilities."""
        return _rank(self.supervised_knots_, p)

    def _training_negatives(self, y: np.ndarray, u: np.ndarray, mode: str) -> np.ndarray:
        """Rows that train as normal: rejected ones, and the unlabelled ones (all of them in
        ``"weighted"`` mode; in ``"reliable"`` mode only those outside the top ``contamination``
        share of the unsupervised score, the likely unreviewed anomalies)."""
        unlabelled = y == UNLABELLED
        negative = (y == REJECTED) | unlabelled
        if mode == "reliable" and unlabelled.any():
            negative &= ~self._top_unlabelled(y, u)
        return cast("np.ndarray", negative)

    def _top_unlabelled(self, y: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Unlabelled rows in the top ``contamination`` share of ``s`` among the unlabelled rows."""
        unlabelled = y == UNLABELLED
        cut = np.quantile(s[unlabelled], 1.0 - float(self.contamination))
        return cast("np.ndarray", unlabelled & (s > cut))

    def _weights(self, y: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Balanced class weights; an unlabelled normal row weighs ``unlabelled_weight``."""
        yr = y[rows]
        w = np.where(yr == UNLABELLED, float(self.unlabelled_weight), 1.0)
        pos = yr == CONFIRMED
        neg_total, pos_total = w[~pos].sum(), w[pos].sum()
        if pos_total > 0 and neg_total > 0:
            w[pos] *= neg_total / pos_total
        return cast("np.ndarray", w / w.mean())

    def _sample_rows(self, rows: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``rows`` with at most ``max_unlabelled`` unlabelled ones (a random sample)."""
        unl = rows[y[rows] == UNLABELLED]
        if unl.size <= self.max_unlabelled:
            return rows
        keep = rng.choice(unl, self.max_unlabelled, replace=False)
        return np.sort(np.concatenate([rows[y[rows] != UNLABELLED], keep]))

    def _fit_classifier(
        self, Z: np.ndarray, y: np.ndarray, negative: np.ndarray, *, seed_offset: int
    ) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier

        seed = None if self.random_state is None else int(self.random_state) + seed_offset
        rng = np.random.default_rng(seed)
        rows = self._sample_rows(np.flatnonzero((y == CONFIRMED) | negative), y, rng)
        clf = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=seed,
        )
        with _threads_for(rows.size):
            clf.fit(
                Z[rows], (y[rows] == CONFIRMED).astype(int), sample_weight=self._weights(y, rows)
            )
        return clf

    def _proba(self, Z: np.ndarray, classifiers: Sequence[Any] | None = None) -> np.ndarray:
        """Mean probability of ``classifiers`` (default ``classifiers_``) for the rows of ``Z``.

        New rows go through the fold classifiers, each trained on the same share of the rows as
        the one that scored a training row out of fold: a classifier refitted on all rows would
        be more confident, push new normal rows below every training score and leave their
        conformal p-values near 1."""
        models = self.classifiers_ if classifiers is None else classifiers
        with _threads_for(Z.shape[0]):
            return cast("np.ndarray", np.mean([m.predict_proba(Z)[:, 1] for m in models], axis=0))

    def _cross_fit(
        self, Z: np.ndarray, y: np.ndarray, negative: np.ndarray
    ) -> tuple[np.ndarray, list[Any]]:
        """Out-of-fold classifier probabilities of every row (folds stratified by verdict), and
        the fold classifiers."""
        from sklearn.model_selection import StratifiedKFold

        k = int(min(self.n_folds, self.n_confirmed_))
        folds = StratifiedKFold(
            n_splits=k,
            shuffle=True,
            random_state=None if self.random_state is None else int(self.random_state),
        )
        # stratify on the verdict so every fold's training part holds confirmed rows
        strata = np.where(y == CONFIRMED, 2, np.where(y == REJECTED, 1, 0))
        if np.bincount(strata, minlength=3)[strata].min() < k:
            strata = (y == CONFIRMED).astype(int)
        oof = np.zeros(len(y))
        models = []
        for i, (fit_rows, held) in enumerate(folds.split(Z, strata)):
            mask = np.zeros(len(y), dtype=bool)
            mask[fit_rows] = True
            clf = self._fit_classifier(Z[mask], y[mask], negative[mask], seed_offset=i + 1)
            oof[held] = self._proba(Z[held], [clf])
            models.append(clf)
        return oof, models

    # ------------------------------------------------------------ exploration
    def uncertainty(self, X: Any) -> np.ndarray:
        """How unsure the model is about each row of ``X``, in [0, 1] (1 = most unsure).

        With a classifier: ``1 - |2 p - 1|`` of its probability ``p``. Without one (too few
        verdicts): the unsupervised members' disagreement (spread of their rank-normalised
        scores). A review queue shows some of the unsure rows next to the top-ranked ones, so
        verdicts do not only come from the top of the ranking.
        """
        self._check_fitted()
        X = self._validate(X, fitting=False)
        members = self._member_scores(X)
        if not self.classifiers_:
            return cast("np.ndarray", np.clip(2.0 * members.std(axis=1), 0.0, 1.0))
        p = self._proba(self._classifier_features(X, members))
        return 1.0 - np.abs(2.0 * p - 1.0)

    # ------------------------------------------------------------ persistence
    def _save_payload(self, dirpath: Path, key: bytes) -> None:
        """The ensemble as its own signed model (deep members keep their native files); the rest
        (classifier, neighbour reference arrays, rank maps) as a skops file, which loads without
        unpickling (:mod:`~pynomaly_core.detectors.safe_io`), checksummed and signed by the outer
        manifest."""
        from pynomaly_core.detectors.persistence import save_object
        from pynomaly_core.detectors.safe_io import dump_estimator

        shell = copy.copy(self)
        shell.__dict__.pop("ensemble_", None)
        if "neighbour_scores_" in shell.__dict__:
            shell.neighbour_scores_ = copy.copy(self.neighbour_scores_)  # without its index
        dump_estimator(shell, dirpath, _SHELL_STEM)
        if hasattr(self, "ensemble_"):
            save_object(
                self.ensemble_,
                dirpath / "ensemble",
                kind="detector",
                info={"name": "EnsembleDetector"},
                key=key,
            )

    @classmethod
    def _load_payload(cls, dirpath: Path, key: bytes) -> FeedbackDetector:
        from pynomaly_core.detectors.persistence import load_object
        from pynomaly_core.detectors.safe_io import load_payload_file

        dirpath = Path(dirpath)
        safe = dirpath / f"{_SHELL_STEM}.skops"
        # models saved before the skops format: a pickle, verified by the caller's signature check
        shell = load_payload_file(safe if safe.exists() else dirpath / _LEGACY_SHELL)
        if (dirpath / "ensemble").exists():
            shell.ensemble_ = load_object(dirpath / "ensemble", key=key)
        if not hasattr(shell, "classifiers_"):  # saved before the fold classifiers and the
            # neighbour features: one classifier on [X, member scores]
            legacy = shell.__dict__.pop("classifier_", None)
            shell.classifiers_ = [] if legacy is None else [legacy]
            shell.neighbours = ()
            shell.neighbour_scores_ = NeighbourScores((), 1, None)
            shell.neighbour_scores_.ks_ = np.zeros(0, dtype=int)
        return cast("FeedbackDetector", shell)
