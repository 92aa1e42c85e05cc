"""The main job on the default lab, with its default parameters: the answer
the project exists for. The smaller machine must start to thrash at a smaller
N than the larger one, and each knee must lie within one N step of Denning's
working-set prediction (available memory / per-process size)."""
from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO, run

pytestmark = pytest.mark.vm


def n_step_distance(n_values: list[int], measured: int, predicted: float) -> int:
    """How many sweep steps lie between the measured knee and the first N
    the prediction says no longer fits (the smallest N >= predicted_n)."""
    expected = next((n for n in n_values if n >= predicted), n_values[-1])
    return abs(n_values.index(measured) - n_values.index(expected))


def test_n_step_distance():
    assert n_step_distance([1, 3, 4, 5, 6, 8], 5, 4.1) == 0
    assert n_step_distance([1, 3, 4, 5, 6, 8], 6, 4.1) == 1
    assert n_step_distance([1, 3, 4, 5, 6, 8], 8, 4.1) == 2
    assert n_step_distance([1, 3, 4, 5, 6, 8], 4, 4.0) == 0


def test_main_job_finds_each_machines_knee_near_the_prediction(provisioned, lab_env, tmp_path):
    env = {**lab_env, "THRASHLAB_RESULTS_DIR": str(tmp_path / "results")}
    # --keep: the VMs belong to the test session, which stops them at its end.
    job = run([sys.executable, "-m", "thrashlab_job.main", "--keep"], env=env, timeout=2400)
    assert job.returncode == 0, job.stdout[-5000:] + job.stderr[-5000:]
    assert "where the time went" in job.stderr
    for step in ("image", "boot", "setup", "sweep", "collect", "analysis"):
        assert step in job.stderr.split("where the time went", 1)[1]

    latest = tmp_path / "results" / "latest"
    assert (latest / "manifest.json").is_file()
    assert (latest / "analysis" / "report.html").is_file()
    compare = run([sys.executable, "-m", "analysis", "compare", "--json", "--no-plots"], env=env)
    assert compare.returncode == 0, compare.stderr
    rows = sorted(json.loads(compare.stdout), key=lambda r: r["memory_mb"])
    assert len(rows) == len(provisioned.names) >= 2
    summary = "\n".join(json.dumps(r) for r in rows)
    for row in rows:
        assert row["thrashing_n"] is not None, f"no knee found on {row['machine']}:\n{summary}"
        params = json.loads((latest / row["machine"] / "case2" / "params.json").read_text())
        distance = n_step_distance(params["n_values"], row["thrashing_n"], row["predicted_n"])
        assert distance <= 1, (f"{row['machine']}: knee at N={row['thrashing_n']}, prediction "
                               f"{row['predicted_n']:.2f}, sweep {params['n_values']}\n{summary}")
    knees = [r["thrashing_n"] for r in rows]
    assert knees == sorted(knees) and len(set(knees)) == len(knees), summary
    print(f"\nmain job on {REPO.name}: " + "; ".join(
        f"{r['machine']} ({r['memory_mb']} MiB): N*={r['thrashing_n']}, predicted {r['predicted_n']:.2f}"
        for r in rows))
