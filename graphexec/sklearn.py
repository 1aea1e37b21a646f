"""A graphexec network as a scikit-learn classifier: ``GridSearchCV``, ``Pipeline``, joblib.

``graphexec.sklearn`` is the contract name; the scikit-learn it wraps is imported absolutely
(``import sklearn`` here is the real one). Needs scikit-learn (``pip install scikit-learn``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from graphexec import nn
from graphexec.api import dumps, loads
from graphexec.checkpoint import History
from graphexec.graph import Graph
from graphexec.optim import Optimizer, make_optimizer
from graphexec.train import fit, predict

__all__ = ["EXPECTED_FAILED_CHECKS", "GraphClassifier"]

#: scikit-learn estimator checks expected to fail, with the reason: none (scikit-learn 1.9 runs
#: 55 checks; all pass but two that skip themselves: check_array_api_input without
#: SCIPY_ARRAY_API set, check_classifier_data_not_an_array without pandas).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


class GraphClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A classifier trained by :func:`graphexec.fit`: an MLP sized from the data, or your graph.

    Args:
        hidden: Hidden layer widths of the default MLP ``[n_features, *hidden, n_classes]``.
        activation: Its activation (see :data:`graphexec.nn.ACTIVATIONS`).
        reg: Its L2 strength (inside the graph's loss).
        optimizer: ``"adam"``, ``"sgd"`` or ``"rmsprop"`` (or a graphexec optimiser, whose
            hyperparameters are kept except ``lr``).
        lr: Learning rate.
        batch_size: Examples per step.
        epochs: Passes over the data.
        seed: Seed of the weights of the default MLP and of the shuffling.
        graph: None (the default MLP), a :class:`graphexec.Graph` with inputs ``x``, ``y`` and
            outputs ``loss``, ``scores`` (a copy is trained; ``graph`` is left alone), or a
            builder such as ``functools.partial(gx.nn.mlp, activation="tanh")``, called with
            the sizes ``[n_features, *hidden, n_classes]``.

    Attributes:
        graph_: The trained graph.  history_: What fit measured.  classes_: The labels, in
        the order of the graph's scores.  n_features_in_: Width of ``X``.

    ``predict_proba`` is the softmax of the scores. It passes every check of scikit-learn's
    ``check_estimator`` (:data:`EXPECTED_FAILED_CHECKS` is empty); the checks that do not apply
    skip themselves: ``check_sample_weight_*`` (fit takes no ``sample_weight``: gx.fit weighs
    every example the same), ``check_array_api_input`` (needs ``SCIPY_ARRAY_API=1``; graphs
    run on numpy only) and ``check_classifier_data_not_an_array`` (needs pandas).
    """

    def __init__(self, hidden: Sequence[int] = (100,), activation: str = "relu",
                 reg: float = 1e-4, optimizer: str | Optimizer = "adam", lr: float = 1e-3,
                 batch_size: int = 32, epochs: int = 50, seed: int = 0,
                 graph: Graph | Callable[..., Graph] | None = None) -> None:
        self.hidden = hidden
        self.activation = activation
        self.reg = reg
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.seed = seed
        self.graph = graph

    def _dtype(self) -> Any:
        if isinstance(self.graph, Graph):
            return next((d.dtype for d in self.graph.input_decls if d.name == "x"), np.float64)
        return np.float64

    def _build(self, n_features: int, n_classes: int) -> Graph:
        sizes = [n_features, *self.hidden, n_classes]
        if self.graph is None:
            return nn.mlp(sizes, activation=self.activation, reg=self.reg, seed=self.seed)
        g = loads(dumps(self.graph)) if isinstance(self.graph, Graph) else self.graph(sizes)
        if not isinstance(g, Graph):
            raise TypeError(f"graph: expected a gx.Graph or a builder returning one, found "
                             f"{type(g).__name__}")
        return g

    def _make_optimizer(self) -> Optimizer:
        if isinstance(self.optimizer, Optimizer):
            return make_optimizer(self.optimizer.name,
                                  **{**self.optimizer.hyperparams(), "lr": self.lr})
        return make_optimizer(self.optimizer, lr=self.lr)

    def fit(self, X: Any, y: Any) -> GraphClassifier:
        """Train a fresh graph on ``X`` (N, D) and labels ``y`` (N,) of any kind."""
        X, y = validate_data(self, X, y, dtype=self._dtype())
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        g = self._build(X.shape[1], len(self.classes_))
        n_scores = predict(g, X[:1]).shape[-1]
        if n_scores != len(self.classes_):
            raise ValueError(f"graph has {n_scores} scores but y has {len(self.classes_)} "
                             "classes; give a graph with one score per class")
        self.history_: History = fit(g, X, codes.astype(np.int64), epochs=self.epochs,
                                     batch_size=self.batch_size, seed=self.seed,
                                     optimizer=self._make_optimizer())
        self.graph_ = g
        return self

    def _scores(self, X: Any) -> np.ndarray:
        """The graph's scores (N, C) (chunked, as gx.predict).

        Not ``decision_function``: scikit-learn wants one column for two classes there."""
        check_is_fitted(self, "graph_")
        X = validate_data(self, X, reset=False, dtype=self._dtype())
        return predict(self.graph_, X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """softmax(scores): p_ic = exp(s_ic - max_c s_ic) / Σ_c' exp(s_ic' - max_c s_ic)."""
        s = self._scores(X)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The class with the highest score per row (labels as given to fit)."""
        best = self._scores(X).argmax(axis=1)
        return self.classes_[best]
