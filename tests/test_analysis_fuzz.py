"""Damaged inputs never give a traceback: each answer is a result (0) or one error line (2).

Copies of the good fixture with one file cut short, filled with garbage or
given wrong types, run in-process through the command line's main().
"""
import json
import random
import shutil
from pathlib import Path

import pytest

from analysis.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
GOOD = ROOT / "tests/fixtures/results/good"


def damage(path: Path, rng: random.Random) -> str:
    data = path.read_bytes()
    how = rng.choice(["truncate", "garbage", "empty", "binary", "retype", "delete"])
    if how == "truncate":
        path.write_bytes(data[:rng.randrange(0, max(1, len(data)))])
    elif how == "garbage":
        i = rng.randrange(0, max(1, len(data)))
        path.write_bytes(data[:i] + rng.choice([b",", b"x", b"\n", b"{", b"-1", b"NaN", b'"'])
                         + data[i + 1:])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "binary":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(64)))
    elif how == "delete":
        path.unlink()
    else:  # retype one JSON value, or negate a CSV number
        if path.suffix == ".json":
            obj = json.loads(data)
            key = rng.choice(sorted(obj))
            obj[key] = rng.choice([None, "1", [], {}, True, -5, -0.0, 1e308 * 10])
            path.write_text(json.dumps(obj))
        else:
            path.write_bytes(data.replace(b",1", b",-1", 1))
    return how


def files(run: Path):
    return sorted(p for p in run.rglob("*") if p.is_file())


@pytest.mark.parametrize("seed", range(40))
def test_damaged_file_gives_result_or_one_error_line(seed, tmp_path, capsys):
    rng = random.Random(seed)
    run = tmp_path / "run"
    shutil.copytree(GOOD, run)
    victim = rng.choice(files(run))
    how = damage(victim, rng)
    for command in ("compare", "case1", "case2"):
        rc = main([command, str(run), "--no-plots", "--json"])
        out, err = capsys.readouterr()
        context = f"{command} with {victim.relative_to(run)} ({how})"
        assert rc in (0, 2), f"{context}: rc {rc}: {err}"
        assert "Traceback" not in err, context
        if rc == 2:
            assert out == "", context
            lines = err.splitlines()
            assert lines[-1].startswith("analysis: error: "), context
            assert all(line.startswith("analysis: warning: ") for line in lines[:-1]), context
        else:
            json.loads(out)
            assert all(line.startswith("analysis: warning: ") for line in err.splitlines()), context
