"""save_engine under faults: real processes killed (SIGKILL) at every step of a save and at random
times, and processes saving one path at once. Afterwards the path holds the old pair or the new
pair, consistent, and the next save leaves no temporary file behind."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import netdef
from netdef import nn
from netdef.errors import EngineError
from netdef.fileio import TMP_SUFFIX
from netdef.plan import load_plan, save_engine, sidecar_path

from helpers import randn

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the fault tests fork and SIGKILL processes")


class Wide(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n, n)

    def forward(self, x):
        return self.fc(x)


def _plan(n: int, seed: int) -> netdef.Plan:
    rng = np.random.default_rng(seed)
    m = Wide(n)
    m.load_state_dict({"fc.weight": randn(rng, n, n), "fc.bias": randn(rng, n)})
    return netdef.build(m, netdef.Input("x", (2, n)), progress=False, name=f"wide{n}_{seed}")


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """Two real plans of different sizes (A small, B ~4 MB so a write takes a while), saved as
    bytes + metadata for child processes."""
    d = tmp_path_factory.mktemp("plans")
    out = {}
    for key, n, seed in (("A", 64, 1), ("B", 1024, 2)):
        plan = _plan(n, seed)
        (d / f"{key}.bin").write_bytes(bytes(plan))
        (d / f"{key}.json").write_text(json.dumps(plan.metadata))
        out[key] = plan
    out["dir"] = d
    return out


# A child imports netdef once, then forks one grandchild per save; `kill_at` counts calls to the
# os functions a save makes (before and after each), and the grandchild SIGKILLs itself there.
FORKER = r"""
import json, os, signal, sys
from netdef.plan import Plan, save_engine
target, plans_dir = sys.argv[1], sys.argv[2]
plans = {k: Plan(open(os.path.join(plans_dir, k + ".bin"), "rb").read(),
                 json.load(open(os.path.join(plans_dir, k + ".json")))) for k in ("A", "B")}
STEPS = ("open", "fsync", "replace", "unlink", "listdir", "makedirs")
for line in sys.stdin:
    key, kill_at = line.split()
    kill_at = int(kill_at)
    pid = os.fork()
    if pid == 0:
        calls = [0]
        def arm(name, real):
            def wrapped(*a, **k):
                for _ in range(2):
                    calls[0] += 1
                    if calls[0] == kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)
                    if _ == 0:
                        result = real(*a, **k)
                return result
            return wrapped
        for name in STEPS:
            setattr(os, name, arm(name, getattr(os, name)))
        save_engine(plans[key], target)
        os.write(1, f"{calls[0]}\n".encode())
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    print("killed" if killed else f"exit {os.WEXITSTATUS(status)}", flush=True)
"""


class Forker:
    def __init__(self, target, plans_dir) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", FORKER, str(target), str(plans_dir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def save(self, key: str, kill_at: int = 0) -> str:
        self.proc.stdin.write(f"{key} {kill_at}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        if line.isdigit():  # the grandchild's step count, then the forker's verdict
            return line + " " + self.proc.stdout.readline().strip()
        return line

    def close(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(30) == 0


def _temporaries(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith((TMP_SUFFIX, ".partial")))


def _assert_consistent(target, plans, allowed=("A", "B")) -> str:
    """The pair at `target` is one of the plans, described by its own sidecar entry; returns which."""
    plan = load_plan(target)
    which = next(k for k in allowed if bytes(plan) == bytes(plans[k]))
    assert plan.metadata["network"] == plans[which].metadata["network"]
    assert plan.metadata["plan_sha256"] == plan.sha256 and plan.metadata["plan_bytes"] == len(plan)
    netdef.Engine.load(target, deserialize=False)  # the runtime's own checks agree
    return which


def test_killed_at_every_step_leaves_the_old_or_the_new_pair(plans, tmp_path):
    target = tmp_path / "net.engine"
    forker = Forker(target, plans["dir"])
    try:
        forker.save("A")
        steps = int(forker.save("A").split()[0])  # a full save over a pair, counting its steps
        assert steps > 20
        seen = set()
        for old, new, stride in (("A", "B", 1), ("B", "A", 4)):  # every step one way, every 4th back
            for kill_at in range(1, steps + 16, stride):
                assert forker.save(old).endswith("exit 0")
                assert _assert_consistent(target, plans, (old,)) == old
                verdict = forker.save(new, kill_at)
                seen.add(_assert_consistent(target, plans))
                if verdict.startswith("killed"):
                    continue
                assert verdict.endswith("exit 0") and _assert_consistent(target, plans, (new,)) == new
        assert seen == {"A", "B"}  # kills landed both before and after the pair switched
        forker.save("A")
        assert _temporaries(tmp_path) == []
        assert sorted(os.listdir(tmp_path)) == ["net.engine", "net.engine.json"]
    finally:
        forker.close()


def test_random_kills_while_saving_in_a_loop(plans, tmp_path):
    """A process alternating A and B saves, killed at random moments (mostly mid-write of B's 4 MB)."""
    target = tmp_path / "net.engine"
    save_engine(plans["A"], target)
    loop = (f"import json, sys\nfrom netdef.plan import Plan, save_engine\n"
            f"p = {{k: Plan(open(r'{plans['dir']}/' + k + '.bin', 'rb').read(), "
            f"json.load(open(r'{plans['dir']}/' + k + '.json'))) for k in 'AB'}}\n"
            f"print('ready', flush=True)\n"
            f"while True:\n    for k in 'BA':\n        save_engine(p[k], r'{target}')\n")
    rng = random.Random(12)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", loop], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _assert_consistent(target, plans)
    save_engine(plans["B"], target)
    assert _temporaries(tmp_path) == [] and _assert_consistent(target, plans) == "B"


def test_two_processes_saving_one_path_and_a_reader(plans, tmp_path):
    target = tmp_path / "net.engine"
    save_engine(plans["A"], target)
    writer = (f"import json, sys\nfrom netdef.plan import Plan, save_engine\nk = sys.argv[1]\n"
              f"p = Plan(open(r'{plans['dir']}/' + k + '.bin', 'rb').read(), json.load(open(r'{plans['dir']}/' + k + '.json')))\n"
              f"for _ in range(15):\n    save_engine(p, r'{target}')\n")
    reader = (f"from netdef.plan import load_plan\nimport hashlib\nn = 0\n"
              f"for _ in range(60):\n    pl = load_plan(r'{target}')\n"
              f"    assert pl.metadata['plan_sha256'] == hashlib.sha256(pl).hexdigest()\n    n += 1\nprint(n)\n")
    procs = [subprocess.Popen([sys.executable, "-c", writer, k], stderr=subprocess.PIPE, text=True) for k in "AB"]
    procs.append(subprocess.Popen([sys.executable, "-c", reader], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert _assert_consistent(target, plans) in ("A", "B")
    assert _temporaries(tmp_path) == []


# ---- stale temporaries, directories, and interrupted pairs ------------------------------------------
def test_stale_temporaries_are_removed_but_live_ones_are_not(plans, tmp_path):
    target = tmp_path / "net.engine"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    from netdef.fileio import _host_tag

    stale = tmp_path / f".net.engine.{_host_tag()}-{dead}-0123abcd{TMP_SUFFIX}"
    stale_side = tmp_path / f".net.engine.json.{_host_tag()}-{dead}-4567abcd{TMP_SUFFIX}"
    live = tmp_path / f".net.engine.{_host_tag()}-{os.getpid()}-89abcdef{TMP_SUFFIX}"
    other_target = tmp_path / f".other.engine.{_host_tag()}-{dead}-0123abcd{TMP_SUFFIX}"
    legacy = tmp_path / "net.engine.json.partial"
    for p in (stale, stale_side, live, other_target, legacy):
        p.write_bytes(b"x" * 100)
    save_engine(plans["A"], target)
    left = sorted(os.listdir(tmp_path))
    assert stale.name not in left and stale_side.name not in left and legacy.name not in left
    assert live.name in left  # this process is alive: its temp file may be in use
    assert other_target.name in left  # another target's: not this save's to judge


def test_a_stale_temporary_that_cannot_be_removed_does_not_fail_the_save(plans, tmp_path):
    """Like another user's temp file in a sticky /tmp (root ignores permissions, so a directory,
    which unlink refuses, stands in): the save goes ahead and the leftover is not reported removed."""
    from netdef.fileio import _host_tag, remove_stale_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    target = tmp_path / "net.engine"
    stuck = tmp_path / f".net.engine.{_host_tag()}-{dead}-0123abcd{TMP_SUFFIX}"
    stuck.mkdir()
    save_engine(plans["A"], target)
    assert load_plan(target) == bytes(plans["A"]) and stuck.is_dir()
    assert remove_stale_temporaries(target) == []


def test_a_sidecar_path_that_is_a_directory_fails_before_anything_changes(plans, tmp_path):
    target = tmp_path / "net.engine"
    save_engine(plans["A"], target)
    os.unlink(sidecar_path(target))
    os.mkdir(sidecar_path(target))
    with pytest.raises(EngineError, match="is a directory; nothing was written"):
        save_engine(plans["B"], target)
    assert target.read_bytes() == bytes(plans["A"])
    assert _temporaries(tmp_path) == []
    with pytest.raises(EngineError, match="is a directory"):
        save_engine(plans["B"], tmp_path)


def test_an_interrupted_pair_resolves_by_digest(plans, tmp_path):
    """The state a kill between the two renames leaves: the sidecar describes the new plan and,
    under `previous`, the old one; whichever plan is in place is described by its own entry."""
    target = tmp_path / "net.engine"
    save_engine(plans["A"], target)
    old_meta = json.loads(open(sidecar_path(target)).read())
    new_meta = dict(plans["B"].metadata, plan_bytes=len(plans["B"]), plan_sha256=plans["B"].sha256)
    with open(sidecar_path(target), "w") as f:
        json.dump({**new_meta, "previous": old_meta}, f)
    assert load_plan(target).metadata["network"] == plans["A"].metadata["network"]
    target.write_bytes(bytes(plans["B"]))
    assert load_plan(target).metadata["network"] == plans["B"].metadata["network"]
    target.write_bytes(bytes(_plan(64, 3)))  # replaced by hand with a third plan
    with pytest.raises(EngineError, match="matches neither plan its sidecar"):
        load_plan(target)
    # a plan that had no sidecar before the interrupted save loads without one
    with open(sidecar_path(target), "w") as f:
        json.dump({**new_meta, "previous": {"plan_bytes": len(target.read_bytes()), "no_sidecar": True,
                                            "plan_sha256": load_plan_bytes_sha(target)}}, f)
    assert load_plan(target).metadata == {}


def load_plan_bytes_sha(path) -> str:
    import hashlib

    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_overwriting_a_plan_without_sidecar_keeps_it_recognisable(plans, tmp_path):
    target = tmp_path / "foreign.engine"
    target.write_bytes(bytes(plans["A"]))
    save_engine(plans["B"], target)
    assert _assert_consistent(target, plans) == "B"
    assert "previous" not in json.loads(open(sidecar_path(target)).read())
