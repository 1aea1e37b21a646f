"""graphexec.sklearn.GraphClassifier: scikit-learn's estimator checks, model selection, joblib."""

import functools
import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import graphexec as gx  # noqa: E402
from graphexec.sklearn import EXPECTED_FAILED_CHECKS, GraphClassifier  # noqa: E402


def _blobs(n=150, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 3.0], [3.0, 0.0], [-3.0, -3.0]])
    y = rng.integers(0, 3, n)
    return centres[y] + rng.standard_normal((n, 2)), y


@parametrize_with_checks([GraphClassifier()],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_fit_predict_with_string_labels_and_probabilities():
    X, y = _blobs()
    names = np.array(["cat", "dog", "eel"])[y]
    clf = GraphClassifier(hidden=(16,), epochs=20, lr=1e-2).fit(X, names)
    assert list(clf.classes_) == ["cat", "dog", "eel"] and clf.n_features_in_ == 2
    assert clf.score(X, names) > 0.9 and set(clf.predict(X)) <= set(clf.classes_)
    p = clf.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.array_equal(clf.classes_[p.argmax(axis=1)], clf.predict(X))
    assert np.array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), p)
    assert clf.history_.epochs == 20


def test_given_graph_is_trained_as_a_copy_and_builders_are_called_with_sizes():
    X, y = _blobs()
    g = gx.nn.mlp([2, 5, 3], seed=4)
    before = gx.dumps(g)
    clf = GraphClassifier(graph=g, epochs=3).fit(X, y)
    assert gx.dumps(g) == before and gx.dumps(clf.graph_) != before
    built = GraphClassifier(hidden=(7,), epochs=1,
                            graph=functools.partial(gx.nn.mlp, activation="tanh")).fit(X, y)
    assert built.graph_.params["W1"].shape == (2, 7)
    assert built.graph_.metadata["nn.activation"] == "tanh"
    with pytest.raises(ValueError, match="graph has 4 scores but y has 3 classes"):
        GraphClassifier(graph=gx.nn.mlp([2, 5, 4]), epochs=1).fit(X, y)


def test_grid_search_and_pipeline():
    X, y = _blobs()
    pipe = make_pipeline(StandardScaler(), GraphClassifier(hidden=(8,), epochs=5))
    search = GridSearchCV(pipe, {"graphclassifier__lr": [1e-3, 3e-2],
                                 "graphclassifier__hidden": [(4,), (8,)]}, cv=2)
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["graphclassifier__lr"] == 3e-2  # 5 epochs: the big rate wins
    assert search.score(X, y) > 0.9


def test_joblib_dask_backend():
    distributed = pytest.importorskip("distributed")
    import joblib

    X, y = _blobs()
    grid = {"lr": [1e-3, 3e-2]}
    serial = GridSearchCV(GraphClassifier(hidden=(8,), epochs=3), grid, cv=2).fit(X, y)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client, joblib.parallel_backend("dask"), \
            distributed.get_task_stream(client) as tasks:
        search = GridSearchCV(GraphClassifier(hidden=(8,), epochs=3), grid, cv=2,
                                  n_jobs=2).fit(X, y)
    assert len(tasks.data) >= 4  # the 2 x 2 fits ran as Dask tasks
    np.testing.assert_array_equal(search.cv_results_["mean_test_score"],
                                  serial.cv_results_["mean_test_score"])
    assert np.array_equal(search.predict(X), serial.predict(X))
