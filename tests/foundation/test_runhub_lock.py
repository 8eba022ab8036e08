"""The data directory's ``runhub`` lock: a forked child does not hold it, and it survives ``exec`` of its holder
(``runhub``'s first step hands it to its second, the same process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from foundation.runstate import RunhubLock, RunhubRunning
from tests.support import ROOT


def test_a_forked_child_does_not_keep_the_lock_once_its_holder_lets_go(tmp_path):
    lock = RunhubLock(tmp_path)
    lock.acquire()
    started, started_here = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child (its fork hooks have run) outlives its parent's hold on the lock
        os.write(started_here, b"1")
        time.sleep(5)
        os._exit(0)
    os.close(started_here)
    assert os.read(started, 1) == b"1"
    os.close(started)
    try:
        with pytest.raises(RunhubRunning):
            RunhubLock(tmp_path).acquire()
        lock.release()
        second = RunhubLock(tmp_path)
        second.acquire()  # while the child still runs
        second.release()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_the_lock_is_held_across_exec_and_taken_back(tmp_path):
    program = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from foundation.runstate import RunhubLock
        if len(sys.argv) == 1:
            lock = RunhubLock({str(tmp_path)!r})
            lock.acquire()
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:], str(lock.handed_over())])
        lock = RunhubLock.adopt({str(tmp_path)!r}, int(sys.argv[1]))
        print("adopted", flush=True)
        time.sleep(30)
    """)
    process = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "adopted"
        with pytest.raises(RunhubRunning) as refused:
            RunhubLock(tmp_path).acquire()
        assert refused.value.pid == process.pid  # one process, before and after exec
    finally:
        process.kill()
        process.wait(timeout=10)
    free = RunhubLock(tmp_path)
    free.acquire()
    free.release()


def test_adopt_refuses_a_descriptor_that_is_not_the_lock(tmp_path):
    (tmp_path / "runhub.lock").write_text("")
    (tmp_path / "other").write_text("")
    fd = os.open(tmp_path / "other", os.O_RDONLY)
    try:
        with pytest.raises(RuntimeError, match="is not the lock"):
            RunhubLock.adopt(tmp_path, fd)
    finally:
        os.close(fd)
