"""raybake.tools.run: children a thread other than the main one waits for are
stopped by the main thread (raybake build --all builds images side by side)."""

import os
import threading

import pytest

from raybake.tools.run import Interrupted, run, stopping, stream


def test_stopping_ends_the_children_other_threads_wait_for_and_they_unwind_interrupted(tmp_path, monkeypatch):
    # SIGTERM must end the group: were the grace time spent before a SIGKILL, the
    # join below would wait an hour (and pytest-timeout would fail the test).
    monkeypatch.setattr("raybake.tools.run.STOP_GRACE_SECONDS", 3600.0)
    started = threading.Event()
    seen: dict[str, BaseException | list[str]] = {}
    cleaned = tmp_path / "cleaned"

    def worker() -> None:
        try:
            # A child that would outlive the test, and a grandchild in its group.
            stream(["sh", "-c", "sleep 600.4242 & echo up; wait"], lambda line: started.set())
        except BaseException as exc:  # noqa: BLE001 - the test looks at what it was
            seen["raised"] = exc
            run(["touch", str(cleaned)])  # cleanup while unwinding still starts a child
            try:
                run(["true"])
            except BaseException as again:  # noqa: BLE001
                seen["after"] = again
        try:
            run(["true"])  # not unwinding: refused while raybake stops
        except BaseException as exc:  # noqa: BLE001
            seen["new"] = exc

    thread = threading.Thread(target=worker)
    thread.start()
    assert started.wait(30)
    with stopping():
        thread.join()
    assert isinstance(seen["raised"], Interrupted) and isinstance(seen["raised"], KeyboardInterrupt)
    assert cleaned.exists() and "after" not in seen
    assert isinstance(seen["new"], Interrupted)
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _is_our_sleep(p)]
    run(["true"])  # once the main thread is done stopping, children start again


def _is_our_sleep(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read() == b"sleep\x00600.4242\x00"
    except OSError:
        return False


def test_a_child_that_fails_on_its_own_is_not_an_interruption():
    code = stream(["sh", "-c", "exit 3"], lambda line: None)
    assert code == 3
    with pytest.raises(Exception, match="exit 3"):
        run(["sh", "-c", "exit 3"])
