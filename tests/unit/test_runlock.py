"""The per-data-root run lock on a local root (``cqube_spark.runlock``): refusal names the holder, waiting
takes the lock once it is free, a SIGKILLed holder leaves no stale lock."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from types import SimpleNamespace

import pytest

from cqube_spark import runlock, storage
from cqube_spark.logs import get_logger

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ctx(root, run_id, **params):
    return SimpleNamespace(params=params, run_id=run_id, roots={"lake": str(root / "lake")},
                           store=storage.Storage(), log=get_logger(run_id))


def test_a_second_run_is_refused_with_the_holder_named(tmp_path):
    with runlock.hold(ctx(tmp_path, "run-A"), "intake"):
        owner = json.loads((tmp_path / "lake" / "meta" / "_locks" / "intake").read_text())
        assert (owner["run_id"], owner["pid"]) == ("run-A", os.getpid())
        with pytest.raises(runlock.LockHeld) as e:
            with runlock.hold(ctx(tmp_path, "run-B"), "intake"):
                pass
    msg = str(e.value)
    assert msg.startswith(f"another intake holds the lock since {owner['since']} (run run-A, pid {os.getpid()} on ")
    assert "meta/_locks/intake" in msg
    # released: the next run gets it, and a free lock names no owner
    assert (tmp_path / "lake" / "meta" / "_locks" / "intake").read_text() == ""
    with runlock.hold(ctx(tmp_path, "run-C"), "intake"):
        pass


def test_a_waiting_run_takes_the_lock_when_it_is_freed_and_gives_up_after_its_wait(tmp_path):
    first = runlock.hold(ctx(tmp_path, "run-A"), "intake")
    first.__enter__()
    with pytest.raises(runlock.LockHeld, match=r"\(waited 0.3 s\)"):
        with runlock.hold(ctx(tmp_path, "run-B", lockWaitSeconds=0.3), "intake", poll_seconds=0.05):
            pass
    waiting_logged = threading.Event()

    class Log:
        def info(self, msg, **kw):
            if msg == "waiting for lock":
                assert "another intake holds the lock since" in kw["holder"] and "run run-A" in kw["holder"]
                waiting_logged.set()

    def free_once_waiting():       # frees the lock only after the second run has found it held
        waiting_logged.wait(30)
        first.__exit__(None, None, None)

    t = threading.Thread(target=free_once_waiting)
    t.start()
    c = ctx(tmp_path, "run-C", lockWaitSeconds=60)
    c.log = Log()
    with runlock.hold(c, "intake", poll_seconds=0.05):
        owner = json.loads((tmp_path / "lake" / "meta" / "_locks" / "intake").read_text())
        assert owner["run_id"] == "run-C"
    t.join()
    assert waiting_logged.is_set()


def test_other_names_and_other_roots_do_not_conflict(tmp_path):
    with runlock.hold(ctx(tmp_path, "A"), "intake"), runlock.hold(ctx(tmp_path, "B"), "publish"), \
            runlock.hold(ctx(tmp_path / "other", "C"), "intake"):
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from types import SimpleNamespace
        from cqube_spark import runlock, storage
        from cqube_spark.logs import get_logger
        c = SimpleNamespace(params={{}}, run_id="doomed", roots={{"lake": {str(tmp_path / "lake")!r}}},
                            store=storage.Storage(), log=get_logger("doomed"))
        with runlock.hold(c, "intake"):
            print("held", flush=True)
            time.sleep(600)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO))
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(runlock.LockHeld, match="run doomed"):
            with runlock.hold(ctx(tmp_path, "B"), "intake"):
                pass
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    with runlock.hold(ctx(tmp_path, "B"), "intake"):     # the owner record is left, the lock is not
        assert json.loads((tmp_path / "lake" / "meta" / "_locks" / "intake").read_text())["run_id"] == "B"
