"""Settings from the environment: every value a user can type is a value or a SettingError, never a crash."""

import pytest

from raybake.errors import SettingError
from raybake.settings import BUILD_JOBS, MAX_SECONDS, REGISTRY_TIMEOUT


@pytest.mark.parametrize("raw", ["1e12", "inf", str(MAX_SECONDS + 1)])
def test_a_timeout_too_long_to_wait_is_a_setting_error(monkeypatch, raw):
    monkeypatch.setenv("RAYBAKE_REGISTRY_TIMEOUT", raw)
    with pytest.raises(SettingError) as err:
        REGISTRY_TIMEOUT.value()
    assert "RAYBAKE_REGISTRY_TIMEOUT" in err.value.fix


def test_the_longest_timeout_is_one_a_child_process_can_be_given(monkeypatch):
    from raybake.tools.run import run

    monkeypatch.setenv("RAYBAKE_REGISTRY_TIMEOUT", str(MAX_SECONDS))
    assert run(["true"], timeout=REGISTRY_TIMEOUT.value()).returncode == 0  # 1e12 overflowed here


@pytest.mark.parametrize("raw", ["²", "٣", "1.5", "0", "-2", "two"])
def test_build_jobs_not_a_whole_number_is_a_setting_error(monkeypatch, raw):
    monkeypatch.setenv("RAYBAKE_BUILD_JOBS", raw)
    with pytest.raises(SettingError, match="RAYBAKE_BUILD_JOBS"):
        BUILD_JOBS.value()


def test_build_jobs_reads_a_whole_number(monkeypatch):
    monkeypatch.setenv("RAYBAKE_BUILD_JOBS", " 3 ")
    assert BUILD_JOBS.value() == 3
