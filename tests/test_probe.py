"""The reliability probe (issue 16, item 6), bounded for CI.

hypothesis draws case descriptions over the whole parameter space (shapes,
dtypes, layouts C/F/strided/CSR/CSC, every solver, activation, loss and
schedule, dropout, batch norm, class and sample weights, early stopping,
clipping, both backends, targets of every kind and scale); child processes
run them in batches (``probe_cases.py``), so a crash or a hang is caught and
pinned to its case: a batch whose child dies or times out is run again one
case per process. Every case must end ``ok`` or ``refused`` (see
``probe_cases.py``).

CI runs FASTBP_PROBE_EXAMPLES=300 cases by default (derandomized: the same
cases every run); before a release run more, for example
``FASTBP_PROBE_EXAMPLES=14000 pytest tests/test_probe.py -s`` (prints the
figures). FASTBP_PROBE_SEED picks another derandomized draw.
"""

import json
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

CHILD = Path(__file__).with_name("probe_cases.py")
EXAMPLES = int(os.environ.get("FASTBP_PROBE_EXAMPLES", "300"))
SEED = int(os.environ.get("FASTBP_PROBE_SEED", "0"))
BATCH = 60  # cases per child process
WORKERS = 2
BATCH_TIMEOUT = 240  # seconds; a case alone gets CASE_TIMEOUT
CASE_TIMEOUT = 60

# Findings reported and not fixed here (the engine's), by a line of their
# traceback: counted and printed, not failed on. Remove an entry once fixed.
KNOWN_OPEN = {
    "ZeroDivisionError: Weights sum to zero": (
        "a minibatch whose sample weights are all 0: the NumPy twin's "
        "np.average raises (the compiled epoch reports a NaN loss as "
        "divergence; scikit-learn raises ZeroDivisionError too)"),
}

SOLVERS = ["sgd", "adam", "lbfgs", "newton", "adagrad", "rmsprop", "adadelta",
           "adamw", "adamax", "nadam"]
ACTIVATIONS = ["identity", "logistic", "tanh", "relu", "leaky_relu", "elu",
               "gelu", "softplus", "silu", "softsign"]
SCHEDULES = ["constant", "invscaling", "adaptive", "step", "exponential",
             "cosine"]


@st.composite
def cases(draw):
    target = draw(st.sampled_from(["classes", "multilabel", "real", "counts"]))
    n_hidden = draw(st.integers(0, 2))
    hidden = draw(st.lists(st.integers(1, 8), min_size=n_hidden,
                           max_size=n_hidden))
    per_layer = n_hidden > 0 and draw(st.booleans())
    activation = (draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=n_hidden,
                                max_size=n_hidden))
                  if per_layer else draw(st.sampled_from(ACTIVATIONS)))
    params = {
        "hidden_layer_sizes": hidden,
        "activation": activation,
        "solver": draw(st.sampled_from(SOLVERS)),
        "batch_size": draw(st.sampled_from(["auto", 1, 3, 64])),
        "max_iter": draw(st.integers(1, 4)),
        "learning_rate_init": draw(st.sampled_from([1e-3, 0.1, 10.0, 1e4])),
        "learning_rate": draw(st.sampled_from(SCHEDULES)),
        "warmup_epochs": draw(st.sampled_from([0, 0, 2])),
        "alpha": draw(st.sampled_from([0.0, 1e-4, 10.0])),
        "l1": draw(st.sampled_from([0.0, 0.0, 1e-3])),
        "clip_norm": draw(st.sampled_from([None, None, 1.0])),
        "clip_value": draw(st.sampled_from([None, None, 0.5])),
        "dropout": draw(st.sampled_from([0.0, 0.0, 0.3])),
        "batch_norm": draw(st.booleans()),
        "early_stopping": draw(st.booleans()),
        "shuffle": draw(st.booleans()),
        "backend": draw(st.sampled_from(["cython", "numpy"])),
        "random_state": draw(st.integers(0, 3)),
    }
    if target == "classes":
        params["class_weight"] = draw(st.sampled_from([None, "balanced"]))
    if target == "counts":
        params["loss"] = "poisson"
    return {
        "target": target,
        "n_samples": draw(st.integers(1, 40)),
        "n_features": draw(st.integers(1, 6)),
        "seed": draw(st.integers(0, 2**16)),
        "scale": 10.0 ** draw(st.sampled_from([-3, 0, 0, 3, 150])),
        "dtype": draw(st.sampled_from(["float64", "float32", "float16", "int64",
                                       "int8", "bool"])),
        "layout": draw(st.sampled_from(["C", "F", "strided", "csr", "csc"])),
        "n_classes": draw(st.integers(1, 3)),
        "labels": draw(st.sampled_from(["int", "str"])),
        "n_targets": draw(st.integers(1, 2)),
        "y_scale": 10.0 ** draw(st.sampled_from([0, 0, 5, 100])),
        "weights": draw(st.sampled_from(["none", "none", "random", "some zero"])),
        "params": params,
    }


def draw_cases(n, seed):
    """n derandomized descriptions (fewer if hypothesis runs out)."""
    drawn = []

    @hypothesis.settings(max_examples=n, derandomize=True, database=None,
                         deadline=None, phases=[hypothesis.Phase.generate],
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.seed(seed)
    @hypothesis.given(cases())
    def collect(case):
        drawn.append(case)

    collect()
    return drawn


def _run_children(cases, timeout):
    """{index: (kind, detail)} of the cases one child finished, and
    whether it ended normally."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run([sys.executable, str(CHILD)], input=json.dumps(cases),
                              capture_output=True, text=True, timeout=timeout,
                              env=env)
        stdout, clean = proc.stdout, proc.returncode == 0
    except subprocess.TimeoutExpired as e:
        stdout, clean = e.stdout or "", False
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
    done = {}
    for line in stdout.splitlines():
        record = json.loads(line)
        if "done" in record:
            done[record["done"]] = (record["kind"], record["detail"])
    return done, clean


def run_batch(cases):
    """The outcome of every case; a dying or hanging child's unfinished
    cases run again one per process, to name the culprit."""
    done, clean = _run_children(cases, BATCH_TIMEOUT)
    outcomes = [done.get(i) for i in range(len(cases))]
    for i, outcome in enumerate(outcomes):
        if outcome is None:
            single, clean = _run_children([cases[i]], CASE_TIMEOUT)
            outcomes[i] = single.get(0) or (
                "wrong", "the process crashed or hung (timeout) on this case")
    return outcomes


def test_probe_every_case_ends_ok_or_refused():
    cases = draw_cases(EXAMPLES, SEED)
    batches = [cases[i:i + BATCH] for i in range(0, len(cases), BATCH)]
    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = [o for batch in pool.map(run_batch, batches) for o in batch]
    kinds = Counter(kind for kind, _ in outcomes)
    refusals = Counter(detail[:70] for kind, detail in outcomes
                       if kind == "refused")
    print(f"\nprobe: {len(cases)} cases, {dict(kinds)}")
    for reason, count in refusals.most_common(12):
        print(f"  refused {count:5d}  {reason}")
    for known, what in KNOWN_OPEN.items():
        count = sum(kind == "wrong" and known in detail for kind, detail in outcomes)
        print(f"  known open {count:5d}  {what}")
    wrong = [(case, detail) for case, (kind, detail) in zip(cases, outcomes)
             if kind == "wrong" and not any(k in detail for k in KNOWN_OPEN)]
    assert not wrong, "\n\n".join(
        f"{json.dumps(case)}\n{detail}" for case, detail in wrong[:5])
    # The space is covered: most cases train, every solver trains somewhere.
    assert kinds["ok"] >= len(cases) // 3
    trained = {c["params"]["solver"] for c, (k, _) in zip(cases, outcomes)
               if k == "ok"}
    if len(cases) >= 300:
        assert trained == set(SOLVERS)
