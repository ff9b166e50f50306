#!/usr/bin/env python3
"""Set up this repository's virtualenv and run the demo or the tests in it.

    python3 dev.py demo [demo arguments...]     # python -m example_project.demo ...
    python3 dev.py test [pytest arguments...]   # python -m pytest ...
    python3 dev.py setup                        # only create / update the virtualenv
    python3 dev.py run COMMAND [arguments...]   # a command from the virtualenv (ruff, celery)

Standard library only: it runs on a fresh machine that has nothing but Python
3.10 or later. Every sub-command first makes sure of the virtualenv:

* it is created (``python -m venv``, then pip upgraded) when it is missing, or
  when its Python no longer runs, is older than 3.10 or has no pip;
* ``pip install -e '.[test]'`` runs in it when pyproject.toml changed since the
  last successful install (a stamp file in the virtualenv holds pyproject's
  SHA-256 and the repository's path), and only then.

Then it replaces itself with the command, run from the repository root with the
virtualenv's Python and its ``bin/`` first on PATH, extra arguments passed
through unchanged; the exit status is the command's (pytest's 5, "no tests
ran", included). When the setup itself fails it prints what to do and exits 2.

The virtualenv is ``.venv`` in the repository, or the directory named by
``CCS_VENV``. An activated virtualenv is not used unless named
(``CCS_VENV="$VIRTUAL_ENV" python3 dev.py test``): the same two commands then
behave the same on every machine, and never install into another project's
environment.

Kept parseable by old Pythons (no ``from __future__ import annotations``, no
walrus), so a Python that is too old gets a message rather than a SyntaxError.
"""

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent
PYPROJECT = REPO / "pyproject.toml"
MIN_PYTHON = (3, 10)
EXTRAS = "test"
VENV_ENV = "CCS_VENV"
STAMP_NAME = ".ccs-install-stamp"
LOCK_NAME = ".ccs-lock"
#: exit status when the virtualenv could not be set up, or the command line is wrong
SETUP_FAILED = 2
#: what each sub-command runs, as arguments to the virtualenv's Python
MODULES = {"demo": ["-m", "example_project.demo"], "test": ["-m", "pytest"]}
USAGE = """usage: python3 dev.py demo [demo arguments...]     the demo (--quick: ~30 s)
       python3 dev.py test [pytest arguments...]   the tests (e.g. tests/unit -x)
       python3 dev.py setup                        only create / update the virtualenv
       python3 dev.py run COMMAND [arguments...]   a command from the virtualenv

The virtualenv is .venv in the repository, or $CCS_VENV; it is created when
missing or broken and `pip install -e '.[test]'` runs when pyproject.toml changed."""
#: run by the virtualenv's Python: exit 0 when it is recent enough and has pip
HEALTH_CHECK = (
    "import sys, importlib.util as u; "
    f"sys.exit(0 if sys.version_info >= {MIN_PYTHON!r} and u.find_spec('pip') else 1)"
)


class SetupError(Exception):
    """The virtualenv could not be set up; the message says what to do."""


def log(message):
    print(f"dev.py: {message}", file=sys.stderr, flush=True)


# -- which virtualenv ---------------------------------------------------------------


def venv_dir(environ=None):
    """``$CCS_VENV`` (relative to the current directory), else ``.venv`` in the repository."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(VENV_ENV, "").strip()
    if chosen:
        return Path(os.path.abspath(os.path.expanduser(chosen)))
    return REPO / ".venv"


def bin_dir(venv):
    return venv / ("Scripts" if os.name == "nt" else "bin")


def venv_python(venv):
    return bin_dir(venv) / ("python.exe" if os.name == "nt" else "python")


def activated_elsewhere(venv, environ=None):
    """The activated virtualenv, when there is one and it is not ``venv``; else None."""
    environ = os.environ if environ is None else environ
    active = environ.get("VIRTUAL_ENV")
    if active and os.path.realpath(active) != os.path.realpath(str(venv)):
        return active
    return None


def child_env(venv, environ=None):
    """The environment of an activated ``venv``."""
    env = dict(os.environ if environ is None else environ)
    env.pop("PYTHONHOME", None)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join(filter(None, [str(bin_dir(venv)), env.get("PATH")]))
    return env


# -- the install stamp --------------------------------------------------------------


def install_stamp(pyproject_bytes, repo=REPO, extras=EXTRAS):
    """What the stamp holds after a successful install: reinstall when it differs."""
    digest = hashlib.sha256(pyproject_bytes).hexdigest()
    return f"pyproject-sha256={digest} extras={extras} repo={repo}\n"


def needs_install(venv, pyproject=PYPROJECT, repo=REPO):
    """True unless the stamp in ``venv`` matches the current pyproject.toml and repository."""
    try:
        recorded = (venv / STAMP_NAME).read_text(encoding="utf-8")
    except OSError:
        return True
    return recorded != install_stamp(Path(pyproject).read_bytes(), repo)


def write_stamp(venv, pyproject=PYPROJECT, repo=REPO):
    (venv / STAMP_NAME).write_text(install_stamp(Path(pyproject).read_bytes(), repo),
                                   encoding="utf-8")


# -- checks -------------------------------------------------------------------------


def check_python_version(version_info=None, executable=None):
    """Raise SetupError unless this Python can create the virtualenv."""
    version = tuple(sys.version_info if version_info is None else version_info)
    if version[:2] >= MIN_PYTHON:
        return
    need = ".".join(map(str, MIN_PYTHON))
    have = ".".join(map(str, version[:3]))
    raise SetupError(
        f"ccs_beat needs Python {need} or later, and {executable or sys.executable} is "
        f"Python {have}. Run this script with a newer one, e.g. `python3.11 dev.py test` "
        "(from your OS packages, python.org or pyenv).")


def check_venv_module(find_spec=importlib.util.find_spec, version_info=None):
    """Raise SetupError when this Python cannot create a virtualenv with pip."""
    missing = [name for name in ("venv", "ensurepip") if find_spec(name) is None]
    if missing:
        minor = (sys.version_info if version_info is None else version_info)[1]
        raise SetupError(
            f"this Python has no {' or '.join(missing)} module, so it cannot create a "
            "virtualenv with pip. On Debian/Ubuntu install it with "
            f"`sudo apt install python3-venv` (for a non-default Python: python3.{minor}-venv),"
            " elsewhere install Python from python.org; then run this again.")


def python_usable(python):
    """The virtualenv's Python runs, is recent enough and has pip."""
    try:
        return subprocess.call([str(python), "-c", HEALTH_CHECK], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) == 0
    except OSError:
        return False


def looks_like_venv(venv):
    """Safe to clear: a virtualenv, or a directory holding nothing but our lock file."""
    if (venv / "pyvenv.cfg").exists():
        return True
    return all(entry.name == LOCK_NAME for entry in venv.iterdir())


# -- setting the virtualenv up ------------------------------------------------------


def _call(argv, env=None, cwd=None):
    try:
        return subprocess.call([str(arg) for arg in argv], env=env, cwd=cwd)
    except OSError as exc:
        log(f"could not run {argv[0]}: {exc}")
        return 127


class _Lock:
    """An exclusive lock in the virtualenv directory, so two runs do not set it up at once."""

    def __init__(self, venv):
        self.path = venv / LOCK_NAME
        self.file = None

    def __enter__(self):
        try:
            self.file = open(self.path, "a")  # closed in __exit__
        except OSError as exc:
            raise SetupError(f"cannot write in {self.path.parent} ({exc}) to set it up; set "
                             f"{VENV_ENV} to a writable path.") from exc
        try:
            import fcntl
        except ImportError:  # Windows: no lock
            return self
        fcntl.flock(self.file.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info):
        self.file.close()


def _clear(venv):
    for entry in venv.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def create_venv(venv):
    check_python_version()
    check_venv_module()
    if any(entry.name != LOCK_NAME for entry in venv.iterdir()):
        log(f"{venv} is not usable (its Python is missing, broken, too old or has no pip); "
            "recreating it")
        _clear(venv)
    log(f"creating a virtualenv with Python {sys.version.split()[0]} ({sys.executable}) "
        f"in {venv}")
    if _call([sys.executable, "-m", "venv", venv]) != 0 or not python_usable(venv_python(venv)):
        raise SetupError(
            f"`{sys.executable} -m venv {venv}` did not create a working virtualenv (see the "
            "output above). On Debian/Ubuntu install python3-venv "
            f"(`sudo apt install python3-venv`, or python3.{sys.version_info[1]}-venv), "
            f"then run this again; `rm -rf {venv}` starts over.")
    python = venv_python(venv)
    if _call([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
             env=child_env(venv)) != 0:
        log("could not upgrade pip; going on with the one the virtualenv came with")


def install(venv):
    log(f"installing the project into {venv}: pip install -e '.[{EXTRAS}]' "
        "(pyproject.toml is new or changed; about a minute the first time)")
    status = _call([venv_python(venv), "-m", "pip", "install", "--quiet", "-e", f".[{EXTRAS}]"],
                   env=child_env(venv), cwd=REPO)
    if status != 0:
        raise SetupError(
            f"`pip install -e '.[{EXTRAS}]'` failed with exit status {status} (pip's messages "
            "are above). Check the network or your package index (PIP_INDEX_URL, proxy "
            f"settings), then run this again; `rm -rf {venv}` starts over.")
    write_stamp(venv)


def ensure_venv(venv):
    """Create ``venv`` when it is missing or broken, install the project when pyproject.toml
    changed; return the virtualenv's Python."""
    if venv.exists() and not venv.is_dir():
        raise SetupError(f"{venv} exists and is not a directory; remove it or set "
                         f"{VENV_ENV} to another path.")
    if ((venv / "pyvenv.cfg").exists() and not needs_install(venv)
            and python_usable(venv_python(venv))):
        return venv_python(venv)            # up to date: no lock, nothing written
    if venv.is_dir() and not (venv / LOCK_NAME).exists() and not looks_like_venv(venv):
        _refuse_foreign(venv)   # (with our lock in it, another run may be creating it)
    if not venv_python(venv).exists():      # before leaving an empty directory behind
        check_python_version()
        check_venv_module()
    try:
        venv.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SetupError(f"cannot create {venv}: {exc}; set {VENV_ENV} to a writable path."
                         ) from exc
    with _Lock(venv):
        if not looks_like_venv(venv):       # checked again: another run may have set it up
            _refuse_foreign(venv)
        if not python_usable(venv_python(venv)):
            create_venv(venv)
        if needs_install(venv):
            install(venv)
    return venv_python(venv)


def _refuse_foreign(venv):
    raise SetupError(f"{venv} exists and is not a virtualenv (no pyvenv.cfg); remove it or "
                     f"set {VENV_ENV} to another path.")


# -- running the command ------------------------------------------------------------


def command_for(subcommand, args, venv):
    """The command line a sub-command runs: the virtualenv's Python for demo and test."""
    if subcommand in MODULES:
        return [str(venv_python(venv)), *MODULES[subcommand], *args]
    if subcommand == "run":
        if not args:
            raise SetupError("`dev.py run` needs a command, e.g. `python3 dev.py run ruff check .`")
        found = shutil.which(args[0], path=child_env(venv)["PATH"])
        if found is None:
            raise SetupError(f"no command {args[0]!r} in {bin_dir(venv)} or on PATH")
        return [found, *args[1:]]
    raise ValueError(subcommand)


def exit_status(returncode):
    """A child's return code as a shell reports it (killed by signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def run(argv, env):
    """Replace this process with ``argv`` (its exit status becomes ours), from the
    repository root; where exec is not available, run it and return its status."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(str(REPO))
    if os.name == "posix":
        os.execve(argv[0], argv, env)
    return exit_status(subprocess.call(argv, env=env))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else SETUP_FAILED
    subcommand, args = argv[0], argv[1:]
    if subcommand not in (*MODULES, "setup", "run"):
        print(f"dev.py: unknown command {subcommand!r}\n{USAGE}", file=sys.stderr)
        return SETUP_FAILED
    venv = venv_dir()
    active = activated_elsewhere(venv)
    if active:
        log(f"using {venv}, not the activated virtualenv {active} "
            f'(CCS_VENV="$VIRTUAL_ENV" uses that one)')
    try:
        ensure_venv(venv)
        if subcommand == "setup":
            print(venv)
            return 0
        command = command_for(subcommand, args, venv)
    except SetupError as exc:
        log(f"error: {exc}")
        return SETUP_FAILED
    return run(command, child_env(venv))


if __name__ == "__main__":
    sys.exit(main())
