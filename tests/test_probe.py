"""The reliability probe (issue 16, item 6), bounded for CI.

hypothesis draws case descriptions over the whole parameter space (shapes,
dtypes, layouts C/F/strided/CSR/CSC, every solver, activation, loss and
schedule, dropout, batch norm, class and sample weights, early stopping,
clipping, both backends, targets of every kind and scale); child processes
run them in batches (``probe_cases.py``), so a crash or a hang is caught and
pinned to its case (the one the child had started); the rest of its batch
runs on in a new child. Every case must end ``ok`` or ``refused`` (see
``probe_cases.py``).

CI runs FASTBP_PROBE_EXAMPLES=300 cases by default (derandomized: the same
cases every run); before a release run more, for example
``FASTBP_PROBE_EXAMPLES=14000 pytest tests/test_probe.py -s`` (prints the
figures). FASTBP_PROBE_SEED picks another derandomized draw;
FASTBP_PROBE_FAILURES=path writes every failing case there as JSON.
"""

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fastbp._families import HIDDEN_ACTIVATIONS

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

CHILD = Path(__file__).with_name("probe_cases.py")
EXAMPLES = int(os.environ.get("FASTBP_PROBE_EXAMPLES", "300"))
SEED = int(os.environ.get("FASTBP_PROBE_SEED", "0"))
# Cases per child process. A child spends ~4 s importing scikit-learn and
# fastbp and well under 1 s on 150 cases, so 300 cases run in 2 children,
# one per worker, not 5 (was 60).
BATCH = 150
WORKERS = 2
BATCH_TIMEOUT = 300  # seconds per child: a hang is a case that outlasts it
# Seconds one case may run, from its "start" line (the child's start-up is
# not counted): a hang is also a case that outlasts this.
CASE_TIMEOUT = BATCH_TIMEOUT

# Findings reported and not fixed here (the engine's), by a line of their
# traceback: counted and printed, not failed on. Remove an entry once fixed.
KNOWN_OPEN = {}

SOLVERS = ["sgd", "adam", "lbfgs", "newton", "adagrad", "rmsprop", "adadelta",
           "adamw", "adamax", "nadam"]
ACTIVATIONS = list(HIDDEN_ACTIVATIONS)
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


def _run_child(cases):
    """(outcomes of the cases one child finished, the case it was running
    when it died or timed out, or None if it ended normally; its stderr)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(CHILD)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    lines, stderr = queue.Queue(), []

    def feed():
        try:
            proc.stdin.write(json.dumps(cases))
            proc.stdin.close()
        except (BrokenPipeError, OSError):  # the child died first
            pass

    def read_stdout():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    pipes = [threading.Thread(target=f, daemon=True)
             for f in (feed, read_stdout, lambda: stderr.append(proc.stderr.read()))]
    for pipe in pipes:
        pipe.start()
    done, started, timed_out = {}, None, False
    child_deadline = case_deadline = time.monotonic() + BATCH_TIMEOUT
    try:
        while True:
            try:
                line = lines.get(timeout=max(0, case_deadline - time.monotonic()))
            except queue.Empty:
                timed_out = True
                break
            if line is None:  # the child closed its output: it is exiting
                try:
                    proc.wait(timeout=max(0, child_deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    timed_out = True
                break
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
                case_deadline = min(child_deadline, time.monotonic() + CASE_TIMEOUT)
            else:
                done[record["done"]] = (record["kind"], record["detail"])
                started, case_deadline = None, child_deadline
    finally:
        proc.kill()  # a child that hung (or exited: then a no-op)
        proc.wait()
        for pipe in pipes:
            pipe.join()
    clean = not timed_out and proc.returncode == 0
    return done, None if clean else started, "".join(stderr)


def run_batch(cases):
    """The outcome of every case. A child that dies or hangs is named by the
    case it had started (the last "start" line); the rest of the batch runs
    on in a new child."""
    outcomes, first = [None] * len(cases), 0
    while first < len(cases):
        done, culprit, stderr = _run_child(cases[first:])
        for i, outcome in done.items():
            outcomes[first + i] = outcome
        if culprit is None:
            if len(done) < len(cases) - first:  # died before its first case
                raise RuntimeError(f"the probe child failed:\n{stderr}")
            break
        outcomes[first + culprit] = (
            "wrong", f"the process crashed or hung (timeout) on this case\n"
                     f"{stderr[-2000:]}")
        first += culprit + 1
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
    if os.environ.get("FASTBP_PROBE_FAILURES"):  # a file for every finding
        Path(os.environ["FASTBP_PROBE_FAILURES"]).write_text(json.dumps(
            [{"case": case, "detail": detail} for case, detail in wrong], indent=1))
    assert not wrong, "\n\n".join(
        f"{json.dumps(case)}\n{detail}" for case, detail in wrong[:5])
    # The space is covered: most cases train, every solver trains somewhere.
    assert kinds["ok"] >= len(cases) // 3
    trained = {c["params"]["solver"] for c, (k, _) in zip(cases, outcomes)
               if k == "ok"}
    if len(cases) >= 300:
        assert trained == set(SOLVERS)


def test_the_harness_pins_crashes_hangs_and_wrong_exceptions_to_their_case(
        monkeypatch):
    # The hang is caught CASE_TIMEOUT after its case starts: 5 s, for cases
    # that finish in milliseconds (was a 15 s limit on the whole child,
    # its ~4 s start-up included).
    monkeypatch.setattr(sys.modules[__name__], "CASE_TIMEOUT", 5)
    good = draw_cases(1, SEED)[0]
    batch = [good, dict(good, fault="crash"), dict(good, fault="raise"), good,
             dict(good, fault="hang")]
    kinds, details = zip(*run_batch(batch))
    assert kinds[0] in ("ok", "refused") and kinds[3] == kinds[0]
    assert kinds[1] == kinds[2] == kinds[4] == "wrong"
    assert "crashed or hung" in details[1] and "crashed or hung" in details[4]
    assert "KeyError: 'injected'" in details[2]
