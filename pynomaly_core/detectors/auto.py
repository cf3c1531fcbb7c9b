"""``auto``: pick a detector for the data without labels.

:class:`AutoDetector` fits a portfolio of cheap, diverse registry detectors on part of
the training rows, measures label-free evidence for each
(:mod:`pynomaly_core.evaluation.labelfree`: detection of synthetic anomalies and
agreement with the other candidates), picks the best (or averages the ``combine``
best) and refits that choice on all the rows.

Steps of :meth:`AutoDetector.fit`:

1. split the rows (at most ``max_rows`` of them, drawn at random) into a fit part and
   a holdout (``holdout_fraction``);
2. draw synthetic anomalies relative to the fit part
   (:func:`~pynomaly_core.evaluation.synthetic.inject_anomalies`): ``synthetic_share``
   of the fit part's size go *into* the candidates' training data (real data is
   contaminated too, and detectors that mask clustered anomalies must pay for it
   here), ``n_synthetic`` more are kept for evaluation;
3. fit every candidate on the contaminated fit part and score the holdout and the
   evaluation anomalies; a candidate that fails or returns non-finite scores is
   dropped (``failures_`` says why);
4. :func:`~pynomaly_core.evaluation.labelfree.label_free_evidence` and
   :func:`~pynomaly_core.evaluation.labelfree.select` choose;
5. refit the choice on all of ``X`` (without synthetic rows): the candidates were
   fitted on a subset plus synthetic rows, and the choice should learn from every
   real row. If the refit fails, the next-ranked candidate is used.

Example
-------
>>> import numpy as np
>>> from pynomaly_core.detectors import create
>>> rng = np.random.default_rng(0)
>>> X = np.vstack([rng.normal(size=(300, 4)), [[7.0, -7.0, 7.0, -7.0]]])
>>> det = create("auto", candidates=["IForest", "HBOS", "KNN"], random_state=0).fit(X)
>>> det.choice_ in {"IForest", "HBOS", "KNN"}, int(np.argmax(det.decision_scores_))
(True, 300)
"""

from __future__ import annotations

import copy
import math
import numbers
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from pynomaly_core.detectors.base import BaseDetector, DetectorError
from pynomaly_core.detectors.targets import import_target

#: Detectors the default portfolio is drawn from, in order of preference: the shallow
#: ADBench detectors, interleaved by family (ensemble, probabilistic, proximity, linear).
#: The default portfolio takes the first ones that are installed and cheap enough for
#: the data's size. The first ten are the portfolio measured in benchmarks/selection.py.
PORTFOLIO_PREFERENCE: tuple[str, ...] = (
    "IForest", "HBOS", "KNN", "PCA",  # one per family: ensemble, probabilistic, proximity, linear
    "INNE", "ECOD", "CBLOF", "MCD",
    "COPOD", "GMM",
    "LOF", "OCSVM", "LODA", "KDE", "AvgKNN",
)  # fmt: skip
#: Default number of candidates (the portfolio measured in benchmarks/selection.py).
DEFAULT_MAX_CANDIDATES = 10
#: Estimated operations (from the registry's cost_class) above which a detector is left
#: out of the default portfolio: roughly a few seconds of fitting and scoring.
COST_BUDGET = 2e9
#: Below this many rows in the holdout or the fit part, the rows are not split and
#: the evidence is measured in-sample.
MIN_SPLIT_ROWS = 10

_SHELL = "auto.joblib"
#: marks the selection evidence stored as plain lists in the skops shell
_EVIDENCE_KIND = "pynomaly-evidence-frame"


def _frame_to_lists(frame: Any) -> dict[str, Any]:
    """A DataFrame as plain Python lists and dtype names (exact floats), for skops."""
    return {
        "kind": _EVIDENCE_KIND,
        "index": frame.index.tolist(),
        "index_name": frame.index.name,
        "columns": {str(c): frame[c].tolist() for c in frame.columns},
        "dtypes": {str(c): str(t) for c, t in frame.dtypes.items()},
    }


def _lists_to_frame(doc: dict[str, Any]) -> Any:
    """The DataFrame :func:`_frame_to_lists` wrote."""
    import pandas as pd

    index = pd.Index(doc["index"], name=doc["index_name"])
    return pd.DataFrame(doc["columns"], index=index).astype(doc["dtypes"])


_BEST = "best"


# --------------------------------------------------------------------------- portfolio
def _degree(term: str, var: str) -> float:
    """Degree of ``var`` in one product term: ``n²·d`` -> 2, ``n·n`` -> 2, ``n log n`` -> 1.1."""
    logs = len(re.findall(rf"log\s*{var}(?![A-Za-z_])", term))
    term = re.sub(rf"log\s*{var}(?![A-Za-z_])", " ", term)
    powers = {"": 1.0, "²": 2.0, "³": 3.0}
    found = re.findall(rf"(?<![A-Za-z_]){var}([²³]?)(?![A-Za-z_])", term)
    return sum(powers[p] for p in found) + 0.1 * logs


def _phase_cost(cost_class: str, phase: str, n: int, d: int) -> float:
    """Estimated operations of ``phase`` ("fit" or "score") for ``n`` rows, ``d`` features.

    Each additive term of the big-O expression counts as ``n**a * d**b`` (constants
    such as trees, neighbours or epochs are ignored; ``m`` scored rows count as ``n``);
    for a range ``O(x)–O(y)`` the first bound is used. Unknown -> 0.
    """
    match = re.search(rf"{phase}\s+O\((.*?)\)(?:–|,|$|\s)", cost_class)
    if not match:
        return 0.0
    expr = match.group(1).replace("m·", "n·").replace("(m/", "(n/")
    if expr.startswith("m"):
        expr = "n" + expr[1:]
    total = 0.0
    for term in expr.split("+"):
        total += n ** _degree(term, "n") * d ** _degree(term, "d")
    return total


def estimated_cost(name: str, n_rows: int, n_features: int) -> float:
    """Estimated operations to fit ``name`` on ``n_rows`` x ``n_features`` and score as many rows."""
    from pynomaly_core.detectors.registry import get_spec

    cost = get_spec(name).cost_class
    return _phase_cost(cost, "fit", n_rows, n_features) + _phase_cost(
        cost, "score", n_rows, n_features
    )


def default_portfolio(
    n_rows: int, n_features: int, max_candidates: int = DEFAULT_MAX_CANDIDATES
) -> list[str]:
    """A diverse, cheap portfolio of registry detectors for data of this size, cheapest first.

    From :data:`PORTFOLIO_PREFERENCE`, keeps the entries that are registered,
    installed, unsupervised and multivariate-capable (when ``n_features > 1``), and
    whose estimated cost (:func:`estimated_cost`, from the registry's ``cost_class``)
    stays within :data:`COST_BUDGET`; takes the first ``max_candidates`` of them
    (the preference list interleaves the families, so any prefix is diverse) and
    makes sure every registry ``family`` left among the eligible ones has at least one
    seat; returns the names sorted by estimated cost, cheapest first.
    """
    from pynomaly_core.detectors.registry import available

    if not isinstance(max_candidates, numbers.Integral) or max_candidates < 1:
        raise DetectorError(f"max_candidates must be a positive integer, got {max_candidates!r}.")
    n_rows, n_features = max(int(n_rows), 1), max(int(n_features), 1)
    specs = {s.name: s for s in available(installed_only=True)}
    eligible = []
    for name in PORTFOLIO_PREFERENCE:
        spec = specs.get(name)
        if spec is None or spec.supervision != "unsupervised":
            continue
        if n_features > 1 and getattr(import_target(spec.target), "univariate", False):
            continue
        cost = estimated_cost(name, n_rows, n_features)
        if cost > COST_BUDGET:
            continue
        eligible.append((name, spec.family, cost))
    chosen = eligible[:max_candidates]
    # every family among the eligible detectors gets a seat: a missing family's first
    # entry replaces the last pick of the family holding the most seats
    for name, family, cost in eligible[max_candidates:]:
        families = [f for _, f, _ in chosen]
        if family in families:
            continue
        crowded = max(set(families), key=families.count)
        if families.count(crowded) < 2:
            break
        drop = max(i for i, f in enumerate(families) if f == crowded)
        chosen[drop] = (name, family, cost)
    order = {name: i for i, name in enumerate(PORTFOLIO_PREFERENCE)}
    chosen.sort(key=lambda item: (item[2], order[item[0]]))
    return [name for name, _, _ in chosen]


# --------------------------------------------------------------------------- detector
class AutoDetector(BaseDetector):
    """Label-free model selection over registry detectors.

    Parameters
    ----------
    candidates : list of str or None
        Registry names to choose from; ``None`` = :func:`default_portfolio` for the
        training data's size.
    holdout_fraction : float in (0, 1)
        Share of the rows held out to measure the evidence.
    n_synthetic : int
        Synthetic anomalies used to evaluate the candidates.
    synthetic_share : float in [0, 0.5)
        Synthetic anomalies added to the candidates' training data, as a share of the
        fit part (0 = fit on clean data; measured worse, see labelfree's docstring).
    combine : int
        1 = use the best candidate; ``k > 1`` = rank-average the ``k`` best
        (an :class:`~pynomaly_core.detectors.ensemble.EnsembleDetector`).
    max_rows : int or None
        The selection (split, candidates, evidence) works on a random subsample of at
        most this many rows, which bounds its cost on large tables; the choice is
        refitted on all rows. ``None`` = no limit.
    contamination : float in (0, 0.5]
        Expected share of anomalies; sets ``threshold_`` (and each candidate's).
    random_state : int or None
        Seeds the split, the synthetic anomalies and every candidate.

    Attributes
    ----------
    choice_ : str
        The chosen registry name (``"A+B"`` when several are combined).
    evidence_ : pandas.DataFrame
        The evidence per candidate (:func:`~pynomaly_core.evaluation.labelfree.label_free_evidence`)
        plus ``fit_seconds``; failed candidates are absent (see ``failures_``).
    best_model_ : BaseDetector
        The choice, fitted on all rows; scores come from it.
    candidates_ : list of str
        The candidates actually tried.
    failures_ : dict
        ``{name: error message}`` of the candidates that failed.
    selection_rows_ : int
        Rows the selection worked on (at most ``max_rows``).
    split_ : str
        ``"holdout"``, or ``"in-sample"`` when there were too few rows to hold any out.
    """

    detector_name = "auto"

    def __init__(
        self,
        candidates: Sequence[str] | None = None,
        holdout_fraction: float = 0.3,
        n_synthetic: int = 400,
        synthetic_share: float = 0.05,
        combine: int = 1,
        max_rows: int | None = 20_000,
        contamination: float = 0.1,
        random_state: int | None = None,
    ) -> None:
        super().__init__(contamination=contamination)
        self.candidates = candidates
        self.holdout_fraction = holdout_fraction
        self.n_synthetic = n_synthetic
        self.synthetic_share = synthetic_share
        self.combine = combine
        self.max_rows = max_rows
        self.random_state = random_state

    # ------------------------------------------------------------ validation
    def _check_params(self, n_rows: int, n_features: int) -> list[str]:
        from pynomaly_core.detectors.registry import get_spec

        def bad(what: str) -> DetectorError:
            return DetectorError(f"auto: {what}")

        hf = self.holdout_fraction
        if not isinstance(hf, numbers.Real) or not 0.0 < float(hf) < 1.0:
            raise bad(f"holdout_fraction must be in (0, 1), got {hf!r}.")
        ns = self.n_synthetic
        if not isinstance(ns, numbers.Integral) or isinstance(ns, bool) or ns < 1:
            raise bad(f"n_synthetic must be a positive integer, got {ns!r}.")
        share = self.synthetic_share
        if not isinstance(share, numbers.Real) or not 0.0 <= float(share) < 0.5:
            raise bad(f"synthetic_share must be in [0, 0.5), got {share!r}.")
        k = self.combine
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise bad(f"combine must be a positive integer, got {k!r}.")
        mr = self.max_rows
        if mr is not None and (
            not isinstance(mr, numbers.Integral) or isinstance(mr, bool) or mr < 2 * MIN_SPLIT_ROWS
        ):
            raise bad(f"max_rows must be None or an integer >= {2 * MIN_SPLIT_ROWS}, got {mr!r}.")
        rs = self.random_state
        if rs is not None and (not isinstance(rs, numbers.Integral) or isinstance(rs, bool)):
            raise bad(f"random_state must be an int or None, got {rs!r}.")
        if self.candidates is None:
            names = default_portfolio(n_rows, n_features)
        else:
            if isinstance(self.candidates, str) or not isinstance(self.candidates, Sequence):
                raise bad(f"candidates must be a list of registry names, got {self.candidates!r}.")
            names = list(self.candidates)
            if not names:
                raise bad("candidates must name at least one detector, got [].")
        seen = set()
        for name in names:
            if not isinstance(name, str):
                raise bad(f"candidates must be registry names (str), got {name!r}.")
            if name in seen:
                raise bad(f"candidate {name!r} is listed twice.")
            seen.add(name)
            spec = get_spec(name)  # unknown names raise with close matches
            if spec.target.endswith(":AutoDetector"):
                raise bad("a candidate cannot be 'auto' itself.")
            if spec.supervision != "unsupervised":
                raise bad(f"candidate {name!r} is {spec.supervision}; auto selects without labels.")
        return names

    # ----------------------------------------------------------------- hooks
    def _make(self, name: str, seed_offset: int = 0) -> BaseDetector:
        from pynomaly_core.detectors.registry import create

        det = create(name, contamination=self.contamination)
        if self.random_state is not None and "random_state" in det.get_params():
            det.set_params(random_state=self.random_state + seed_offset)
        return det

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        import pandas as pd

        from pynomaly_core.evaluation.labelfree import label_free_evidence, select_top
        from pynomaly_core.evaluation.synthetic import inject_anomalies

        n, d = X.shape
        names = self._check_params(n, d)
        rng = np.random.default_rng(self.random_state)
        X_fit, X_hold = self._selection_split(X, rng)
        n_inject = math.ceil(float(self.synthetic_share) * X_fit.shape[0])
        X_syn, kinds = inject_anomalies(
            X_fit, n_inject + int(self.n_synthetic), random_state=int(rng.integers(2**31 - 1))
        )
        X_train = np.vstack([X_fit, X_syn[:n_inject]]) if n_inject else X_fit
        X_eval, kinds_eval = X_syn[n_inject:], kinds[n_inject:]

        hold_scores, syn_scores, seconds, failures = self._score_candidates(
            names, X_train, X_hold, X_eval
        )
        evidence = label_free_evidence(hold_scores, syn_scores, synthetic_kinds=kinds_eval)
        evidence["fit_seconds"] = pd.Series(seconds)
        best, chosen = self._refit_best(select_top(evidence, len(evidence)), X, failures)
        self.candidates_ = names
        self.failures_ = failures
        self.evidence_ = evidence
        self.choice_ = "+".join(chosen)
        self.best_model_ = best

    def _selection_split(
        self, X: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(rows to fit the candidates on, holdout rows)``: at most ``max_rows``, held out if enough.

        Sets ``selection_rows_`` and ``split_`` (``"holdout"``, or ``"in-sample"`` when either side
        would have fewer than ``MIN_SPLIT_ROWS``: then the same rows are both).
        """
        n = X.shape[0]
        rows = X
        if self.max_rows is not None and n > self.max_rows:  # bound the selection's cost
            rows = X[np.sort(rng.choice(n, int(self.max_rows), replace=False))]
        m = self.selection_rows_ = rows.shape[0]
        n_hold = round(float(self.holdout_fraction) * m)
        if n_hold < MIN_SPLIT_ROWS or m - n_hold < MIN_SPLIT_ROWS:
            self.split_ = "in-sample"  # too few rows to split: in-sample evidence
            return rows, rows
        perm = rng.permutation(m)
        self.split_ = "holdout"
        return rows[perm[n_hold:]], rows[perm[:n_hold]]

    def _score_candidates(
        self, names: list[str], X_train: np.ndarray, X_hold: np.ndarray, X_eval: np.ndarray
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, str]]:
        """Fit every candidate and score the holdout and synthetic rows.

        Returns ``(holdout scores, synthetic scores, fit seconds, failures)`` by name; a candidate
        that fails or scores non-finite values is listed in failures only. None left is an error.
        """
        hold_scores: dict[str, np.ndarray] = {}
        syn_scores: dict[str, np.ndarray] = {}
        seconds: dict[str, float] = {}
        failures: dict[str, str] = {}
        for name in names:
            t0 = time.perf_counter()
            try:
                det = self._make(name).fit(X_train)
                h, s = det.decision_function(X_hold), det.decision_function(X_eval)
            except Exception as exc:  # noqa: BLE001 - a failing candidate is dropped, not fatal
                failures[name] = f"{type(exc).__name__}: {exc}"[:500]
                continue
            if not (np.all(np.isfinite(h)) and np.all(np.isfinite(s))):
                failures[name] = "non-finite scores"
                continue
            hold_scores[name], syn_scores[name] = h, s
            seconds[name] = time.perf_counter() - t0
        if not hold_scores:
            raise DetectorError(f"auto: every candidate failed: {failures}.")
        return hold_scores, syn_scores, seconds, failures

    def _refit_best(
        self, ranked: list[str], X: np.ndarray, failures: dict[str, str]
    ) -> tuple[BaseDetector, list[str]]:
        """The best-ranked candidate (``combine`` of them as a rank ensemble) refitted on all rows.

        With ``combine=1`` the next-ranked one is tried when a refit fails (added to ``failures``).
        """
        best, chosen = None, []
        if self.combine == 1:
            for name in ranked:  # the next-ranked one if the refit fails
                try:
                    best = self._make(name).fit(X)
                    chosen = [name]
                    break
                except Exception as exc:  # noqa: BLE001
                    failures[name] = f"refit on all rows: {type(exc).__name__}: {exc}"[:500]
        else:
            from pynomaly_core.detectors.ensemble import EnsembleDetector

            chosen = ranked[: self.combine]
            best = EnsembleDetector(
                detectors=chosen,
                normalization="rank",
                combination="average",
                contamination=self.contamination,
                random_state=self.random_state,
            ).fit(X)
        if best is None:
            raise DetectorError(f"auto: no candidate could be refitted on all rows: {failures}.")
        return best, chosen

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        return self.best_model_.decision_scores_

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.best_model_.decision_function(X)

    # ------------------------------------------------------------ persistence
    def _save_payload(self, dirpath: Path, key: bytes) -> None:
        """The selector without its model (skops) and the chosen model as its own saved model.

        The model goes through :func:`~pynomaly_core.detectors.persistence.save_object` with
        the selector's ``key``, so a deep choice keeps its framework-native files; the
        manifest of this directory checksums every file below it.
        """
        from pynomaly_core.detectors.persistence import save_object
        from pynomaly_core.detectors.safe_io import dump_estimator

        shell = copy.copy(self)
        shell.__dict__.pop("best_model_", None)
        if hasattr(shell, "evidence_"):  # a DataFrame, which skops cannot store: plain lists
            shell.evidence_ = _frame_to_lists(shell.evidence_)
        dump_estimator(shell, dirpath, "auto")
        if hasattr(self, "best_model_"):
            save_object(
                self.best_model_,
                dirpath / _BEST,
                kind="detector",
                info={"name": type(self.best_model_).__name__},
                key=key,
            )

    @classmethod
    def _load_payload(cls, dirpath: Path, key: bytes) -> AutoDetector:
        """Rebuild a selector written by :meth:`_save_payload`."""
        from pynomaly_core.detectors.persistence import load_object
        from pynomaly_core.detectors.safe_io import load_payload_file

        dirpath = Path(dirpath)
        safe = dirpath / "auto.skops"
        # models of format 1 and shells skops cannot represent: a pickle, verified by the caller
        shell = load_payload_file(safe if safe.exists() else dirpath / _SHELL)
        evidence = getattr(shell, "evidence_", None)
        if isinstance(evidence, dict) and evidence.get("kind") == _EVIDENCE_KIND:
            shell.evidence_ = _lists_to_frame(evidence)
        if (dirpath / _BEST).is_dir():
            shell.best_model_ = load_object(dirpath / _BEST, key=key)
        return cast("AutoDetector", shell)
