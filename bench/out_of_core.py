"""Seconds per pass (one partial_fit epoch over every block) of out-of-core
training, as README's "Training out of core" reports them.

    python bench/out_of_core.py [--rows 200000] [--block 20000] [--passes 3]

The data and the model are examples/incremental_dask.py's; each way runs
`passes` passes and the median pass is printed. The dask rows: Incremental
on a LocalCluster of 2 worker processes, one thread each, over a dask array
persisted in the workers' memory, and over one recomputed from its recipe
each pass (as data read from storage would be). scikit-learn's
MLPClassifier runs the in-memory and persisted-dask ways for comparison.
"""

import argparse
import importlib.util
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location(
        "incremental_dask", ROOT / "examples" / "incremental_dask.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _passes(run_pass, passes):
    times = []
    for p in range(passes):
        start = time.perf_counter()
        run_pass(p)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--block", type=int, default=20_000)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    from dask.distributed import Client, LocalCluster
    from dask_ml.wrappers import Incremental
    from sklearn.neural_network import MLPClassifier as SklearnMLP

    ex = _example()
    X, y = ex.make_data(args.rows, args.block)
    orders = ex.block_order(X.numblocks[0], args.passes)
    block = args.block

    def sklearn_model():
        return SklearnMLP((32,), learning_rate_init=0.01, random_state=0)

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        X_path, y_path, parquet = ex.write_files(X, y, Path(tmp))
        Xm, ym = np.load(X_path), np.load(y_path)
        for name, make in (("fastbp", ex.model), ("scikit-learn", sklearn_model)):
            clf = make()

            def in_memory(p, clf=clf):
                for b in orders[p]:
                    rows = slice(b * block, (b + 1) * block)
                    clf.partial_fit(Xm[rows], ym[rows], classes=[0, 1])

            results[f"{name}, NumPy array in memory"] = _passes(in_memory, args.passes)

        Xmm, ymm = np.load(X_path, mmap_mode="r"), np.load(y_path, mmap_mode="r")
        clf = ex.model()

        def memmap(p):
            for b in orders[p]:
                rows = slice(b * block, (b + 1) * block)
                clf.partial_fit(Xmm[rows], ymm[rows], classes=[0, 1])

        results["fastbp, memory-mapped .npy (in the page cache)"] = _passes(
            memmap, args.passes)

        import pyarrow.parquet as pq

        file = pq.ParquetFile(parquet)
        clf = ex.model()

        def parquet_pass(p):
            for b in orders[p]:
                table = file.read_row_group(b).to_pandas()
                clf.partial_fit(table.drop(columns="y").to_numpy(),
                                table["y"].to_numpy(), classes=[0, 1])

        results["fastbp, Parquet row groups"] = _passes(parquet_pass, args.passes)

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster):
        Xp, yp = X.persist(), y.persist()
        for name, make, data in (
                ("fastbp, dask array persisted on the cluster", ex.model, (Xp, yp)),
                ("fastbp, dask array computed each pass", ex.model, (X, y)),
                ("scikit-learn, dask array persisted on the cluster", sklearn_model,
                 (Xp, yp))):
            inc = Incremental(make(), shuffle_blocks=True)

            def dask_pass(p, inc=inc, data=data):
                inc.set_params(random_state=p)
                inc.partial_fit(*data, classes=[0, 1])

            results[f"{name}"] = _passes(dask_pass, args.passes)

    print(f"{args.rows} rows x {X.shape[1]} features in blocks of {block}, "
          f"MLP (32,), median of {args.passes} passes")
    print("| way | seconds per pass |\n| --- | --- |")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
