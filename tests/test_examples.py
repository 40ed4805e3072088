"""The scripts in examples/ run and do what they claim (CI keeps them true)."""

import importlib.util
import pathlib
import warnings

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short fits: ConvergenceWarning
        yield


def test_examples_folder_is_covered():
    scripts = {p.stem for p in EXAMPLES.glob("*.py")}
    tested = {n[len("test_example_"):] for n in globals() if n.startswith("test_example_")}
    assert scripts == tested


def test_example_explain_shap():
    """SHAP and jacobian-based expected gradients rank the features alike."""
    pytest.importorskip("shap")
    shap_top, eg_top, rho, shap_gap, eg_gap = _load("explain_shap").main(n_explain=8)
    assert shap_top.shape == eg_top.shape == (8, 13)
    assert shap_gap < 1e-10 and eg_gap < 1e-2  # each adds up to f(x) - E f(b)
    assert rho.min() > 0.8


def test_example_onnx_export():
    pytest.importorskip("onnxruntime")
    agree, gap = _load("onnx_export").main()
    assert agree == 1.0 and gap < 1e-5


def test_example_save_load_skops():
    pytest.importorskip("skops")
    untrusted, same = _load("save_load_skops").main()
    assert untrusted == ["fastbp._mlp.MLPClassifier"] and same


def test_example_search_dask():
    """GridSearchCV(n_jobs=2) in processes, then on a 2-process LocalCluster."""
    pytest.importorskip("distributed")
    by_processes, on_dask = _load("search_dask").main()
    assert on_dask.cv_results_["mean_test_score"] == pytest.approx(
        by_processes.cv_results_["mean_test_score"], abs=1e-12)


def test_example_search_optuna():
    pytest.importorskip("optuna_integration")
    search = _load("search_optuna").main(n_trials=4)
    assert len(search.trials_) == 4 and search.best_score_ > 0.8


def test_example_second_order():
    clf, grad, H, hv_gap, J, check = _load("second_order").main()
    assert clf.n_iter_ < 50 and np.linalg.norm(grad) < clf.tol
    assert H.shape == (43, 43) and np.abs(hv_gap).max() < 1e-12
    assert J.shape == (5, 3, 4) and check.max_error < 1e-4
