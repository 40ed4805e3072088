"""The array-API path (issue 28) on PyTorch tensors, against fastbp's
compiled engine and against a plain PyTorch training loop.

Each contender fits the same data for EPOCHS epochs of adam with the same
minibatch size, float32; the times are the median of --repeats fits, the
contenders interleaved within each repeat:

- ``compiled``: fastbp on NumPy input (the compiled engine);
- ``array_api cpu``: fastbp on CPU torch tensors under
  ``sklearn.set_config(array_api_dispatch=True)``;
- ``torch loop cpu``: ``nn.Sequential`` of Linear/ReLU, ``torch.optim.Adam``
  and a shuffled minibatch loop, the loop a PyTorch user writes;
- the last two again on CUDA when ``torch.cuda.is_available()``.

Ratios are each contender's median over the compiled engine's (above 1:
slower than compiled). --threads (default 1) is every contender's thread
count: fastbp's n_jobs and torch.set_num_threads (on a shared machine, more
threads than idle cores make PyTorch's timings erratic).

    python bench/array_api.py                          # small and wide, CPU
    python bench/array_api.py --rows 1000000 --features 256 --hidden 1024 1024
"""

import os

# scikit-learn's array-API mode needs SciPy's, set before SciPy is imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from fastbp import MLPClassifier  # noqa: E402

EPOCHS = 3
BATCH = 200
# (rows, features, hidden): the small network, and a wide one.
WORKLOADS = {"small": (5000, 20, (64,)), "wide": (4000, 256, (256, 256))}


def data(rows, features, classes=4):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, features)).astype(np.float32)
    y = (X[:, :classes] @ rng.standard_normal(classes)).argsort().argsort()
    return X, (y * classes // rows).astype(np.int64)


def fastbp_fit(X, y, hidden):
    est = MLPClassifier(hidden_layer_sizes=hidden, solver="adam", max_iter=EPOCHS,
                        batch_size=BATCH, random_state=0, tol=0.0,
                        n_jobs=torch.get_num_threads())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    return est


def array_api_fit(X, y, hidden):
    with sklearn.config_context(array_api_dispatch=True):
        est = fastbp_fit(X, y, hidden)
    _sync(X)
    return est


def torch_loop(X, y, hidden):
    """Adam on minibatches of a shuffled epoch, cross-entropy on softmax:
    the same work as a fit, written as PyTorch's tutorials write it."""
    torch.manual_seed(0)
    sizes = (X.shape[1], *hidden)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    n_classes = int(y.max()) + 1
    model = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], n_classes))
    model.to(X.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-8,
                                 weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(EPOCHS):
        order = torch.randperm(X.shape[0], device=X.device)
        for start in range(0, X.shape[0], BATCH):
            rows = order[start : start + BATCH]
            optimizer.zero_grad()
            loss_fn(model(X[rows]), y[rows]).backward()
            optimizer.step()
    _sync(X)
    return model


def _sync(a):
    if a.device.type == "cuda":
        torch.cuda.synchronize()


def contenders(X, y, hidden):
    found = {"compiled": lambda: fastbp_fit(X, y, hidden)}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        Xt, yt = torch.asarray(X, device=device), torch.asarray(y, device=device)
        found[f"array_api {device}"] = lambda Xt=Xt, yt=yt: array_api_fit(Xt, yt, hidden)
        found[f"torch loop {device}"] = lambda Xt=Xt, yt=yt: torch_loop(Xt, yt, hidden)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int)
    parser.add_argument("--features", type=int)
    parser.add_argument("--hidden", type=int, nargs="+")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workloads = WORKLOADS
    if args.rows:
        workloads = {"custom": (args.rows, args.features or 256,
                                tuple(args.hidden or (1024, 1024)))}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CUDA: {torch.cuda.is_available()}; {EPOCHS} epochs of adam, "
          f"batch {BATCH}, float32, median of {args.repeats}")
    for name, (rows, features, hidden) in workloads.items():
        X, y = data(rows, features)
        runs = contenders(X, y, hidden)
        for fit in runs.values():  # warm up: imports, CUDA context, caches
            fit()
        times = {k: [] for k in runs}
        for _ in range(args.repeats):
            for key, fit in runs.items():
                start = time.perf_counter()
                fit()
                times[key].append(time.perf_counter() - start)
        base = statistics.median(times["compiled"])
        print(f"\n{name}: {rows} rows x {features} features, hidden {hidden}")
        for key, values in times.items():
            median = statistics.median(values)
            print(f"  {key:16s} {median * 1e3:9.1f} ms   x{median / base:5.2f}")


if __name__ == "__main__":
    main()
