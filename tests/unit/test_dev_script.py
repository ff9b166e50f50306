"""dev.py, the README's two commands (``python3 dev.py demo``, ``python3 dev.py test``).

The pure parts only: which virtualenv, when pip runs again, what is run, and
that the command's exit status is dev.py's. No real virtualenv is created: a
"virtualenv" here is a directory whose ``bin/python`` hands over to the Python
running these tests.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("ccs_dev_script", ROOT / "dev.py")
dev = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dev)

posix_only = pytest.mark.skipif(os.name != "posix", reason="the fake virtualenv is a sh script")


@pytest.fixture
def pyproject(tmp_path: Path) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "ccs-beat"\n', encoding="utf-8")
    return path


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A stand-in virtualenv whose python is the one running the tests."""
    root = tmp_path / "venv"
    python = dev.venv_python(root)
    python.parent.mkdir(parents=True)
    (root / "pyvenv.cfg").write_text("home = /nowhere\n", encoding="utf-8")
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    return root


# -- when pip install runs ------------------------------------------------------------


def test_installs_when_the_virtualenv_has_no_stamp(venv, pyproject):
    assert dev.needs_install(venv, pyproject, repo=ROOT)


def test_does_not_reinstall_when_pyproject_is_unchanged(venv, pyproject):
    dev.write_stamp(venv, pyproject, repo=ROOT)
    assert not dev.needs_install(venv, pyproject, repo=ROOT)


def test_reinstalls_when_pyproject_changes(venv, pyproject):
    dev.write_stamp(venv, pyproject, repo=ROOT)
    pyproject.write_text(pyproject.read_text() + 'dependencies = ["celery"]\n', encoding="utf-8")
    assert dev.needs_install(venv, pyproject, repo=ROOT)


def test_reinstalls_when_the_repository_moved(venv, pyproject, tmp_path):
    dev.write_stamp(venv, pyproject, repo=ROOT)
    assert dev.needs_install(venv, pyproject, repo=tmp_path / "elsewhere")


def test_a_failed_install_leaves_no_stamp_so_the_next_run_retries(venv, monkeypatch):
    monkeypatch.setattr(dev, "_call", lambda *args, **kwargs: 1)
    with pytest.raises(dev.SetupError, match=r"pip install -e '\.\[test\]'` failed"):
        dev.install(venv)
    assert not (venv / dev.STAMP_NAME).exists()
    assert dev.needs_install(venv)


@posix_only
def test_a_healthy_virtualenv_with_a_current_stamp_is_used_as_it_is(venv, monkeypatch):
    dev.write_stamp(venv)
    monkeypatch.setattr(dev, "create_venv", lambda venv: pytest.fail("recreated"))
    monkeypatch.setattr(dev, "install", lambda venv: pytest.fail("reinstalled"))
    assert dev.ensure_venv(venv) == dev.venv_python(venv)


@posix_only
def test_an_up_to_date_virtualenv_in_a_read_only_place_is_used_without_writing(
        venv, monkeypatch):
    dev.write_stamp(venv)
    monkeypatch.setattr(dev, "_Lock", lambda venv: pytest.fail("locked: it would write"))
    assert dev.ensure_venv(venv) == dev.venv_python(venv)


def test_a_lock_that_cannot_be_written_is_a_setup_error_naming_the_place(venv, monkeypatch):
    def refuse(*_a, **_k):
        raise PermissionError(13, "Read-only file system")
    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(dev.SetupError, match="cannot write in"):
        dev._Lock(venv).__enter__()


def test_a_directory_another_run_is_creating_is_waited_for_not_refused(venv, monkeypatch):
    (venv / "pyvenv.cfg").unlink()
    (venv / dev.LOCK_NAME).write_text("", encoding="utf-8")   # another run holds it

    def finish_creating(venv):   # what the other run did while we waited for the lock
        (venv / "pyvenv.cfg").write_text("home = /nowhere\n", encoding="utf-8")
    real_lock = dev._Lock

    class WaitedLock(real_lock):
        def __enter__(self):
            finish_creating(venv)
            return super().__enter__()
    monkeypatch.setattr(dev, "_Lock", WaitedLock)
    monkeypatch.setattr(dev, "install", lambda venv: None)
    assert dev.ensure_venv(venv) == dev.venv_python(venv)


def test_a_virtualenv_whose_python_does_not_run_is_recreated(venv, monkeypatch):
    dev.venv_python(venv).unlink()
    dev.write_stamp(venv)
    created = []
    monkeypatch.setattr(dev, "create_venv", created.append)
    dev.ensure_venv(venv)
    assert created == [venv]


def test_refuses_to_use_a_directory_that_is_not_a_virtualenv(tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(dev.SetupError, match="not a virtualenv"):
        dev.ensure_venv(tmp_path)
    assert (tmp_path / "notes.txt").exists()


# -- which virtualenv --------------------------------------------------------------


def test_the_virtualenv_is_dot_venv_in_the_repository_by_default():
    assert dev.venv_dir({}) == ROOT / ".venv"


def test_ccs_venv_chooses_the_virtualenv(tmp_path):
    assert dev.venv_dir({"CCS_VENV": str(tmp_path / "v")}) == tmp_path / "v"


def test_an_activated_virtualenv_is_not_used_unless_named(tmp_path):
    environ = {"VIRTUAL_ENV": str(tmp_path / "other")}
    assert dev.venv_dir(environ) == ROOT / ".venv"
    assert dev.activated_elsewhere(ROOT / ".venv", environ) == str(tmp_path / "other")
    assert dev.activated_elsewhere(ROOT / ".venv", {"VIRTUAL_ENV": str(ROOT / ".venv")}) is None


def test_the_command_runs_with_the_virtualenv_first_on_path(venv):
    env = dev.child_env(venv, {"PATH": "/usr/bin", "PYTHONHOME": "/x"})
    assert env["PATH"].split(os.pathsep)[0] == str(dev.bin_dir(venv))
    assert env["VIRTUAL_ENV"] == str(venv) and "PYTHONHOME" not in env


# -- what runs --------------------------------------------------------------------


def test_demo_runs_the_demo_module_with_its_arguments(venv):
    assert dev.command_for("demo", ["--quick"], venv) == [
        str(dev.venv_python(venv)), "-m", "example_project.demo", "--quick"]


def test_test_runs_pytest_with_its_arguments(venv):
    assert dev.command_for("test", ["tests/unit", "-q", "-x"], venv) == [
        str(dev.venv_python(venv)), "-m", "pytest", "tests/unit", "-q", "-x"]


def test_refuses_a_python_older_than_3_10():
    with pytest.raises(dev.SetupError, match=r"needs Python 3\.10 or later.*Python 3\.9\.18"):
        dev.check_python_version((3, 9, 18), "/usr/bin/python3")
    dev.check_python_version((3, 10, 0))


def test_names_python3_venv_when_the_venv_module_cannot_install_pip():
    def find_spec(name):
        return None if name == "ensurepip" else object()

    with pytest.raises(dev.SetupError, match=r"no ensurepip module.*apt install python3-venv"):
        dev.check_venv_module(find_spec, (3, 11, 2))


def test_an_unknown_command_prints_the_usage_and_fails(capsys):
    assert dev.main(["lint"]) == dev.SETUP_FAILED
    assert "python3 dev.py test" in capsys.readouterr().err


def test_a_child_killed_by_a_signal_exits_like_the_shell_says():
    assert dev.exit_status(-9) == 137 and dev.exit_status(5) == 5


@posix_only
@pytest.mark.parametrize("code", [0, 5])
def test_the_exit_status_is_the_commands_even_no_tests_ran(venv, code):
    dev.write_stamp(venv)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "run", "python", "-c", f"raise SystemExit({code})"],
        env={**os.environ, "CCS_VENV": str(venv)}, capture_output=True, timeout=30, check=False)
    assert proc.returncode == code, proc.stderr
