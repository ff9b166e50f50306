"""Compare benchmarks/adapter_ticks.py between a baseline commit and this tree,
measured in the same run on both.

    python benchmarks/compare.py --against main --quick
    python benchmarks/compare.py --against v0.1.0 --rounds 4
    python benchmarks/compare.py --against HEAD --current HEAD --quick   # A/A: noise only

The baseline (``--against REF``) is checked out in a detached git worktree in a
temporary directory, removed at the end (also on errors and Ctrl-C). Each tree
runs its OWN ``benchmarks/adapter_ticks.py`` against its OWN ``ccs_beat`` (the
worktree first on ``sys.path``; the file actually imported is checked). The two
trees alternate over the rounds (A B B A A B ...) so that drift of the machine
cancels. ``--current REF`` puts the current side in a worktree of REF as well,
instead of this working tree. Arguments this script does not know are passed to
both scripts (``--quick`` is passed too).

A script with ``--json`` is run with it; an older one's table is parsed. Prints,
per scheduler and N, the median over the rounds of each tree's median tick, the
ratio current / baseline and whether it is within 10 %. The stock schedulers'
rows measure the same code on both sides: their ratios show the noise. Exit
status 0 whatever the figures (a report, not a test).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
SCRIPT = "benchmarks/adapter_ticks.py"
LIMIT = 1.10
MARK = "CCS_COMPARE_IMPORTED "
# stock / singleton scheduler of each adapter, in report order
PAIRS = [("RedBeatScheduler", "SingletonRedBeatScheduler"),
         ("DatabaseScheduler", "SingletonDatabaseScheduler")]

# Runs the script as ``python script.py`` would, then reports (stderr, at exit)
# which ccs_beat and tests packages this very process imported.
WRAPPER = r'''
import atexit, json, os, runpy, sys
script = os.path.abspath(sys.argv[1])
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(script)
def _report():
    mods = {name: getattr(sys.modules.get(name), "__file__", None)
            for name in ("ccs_beat", "tests")}
    sys.stderr.write("\n%s%s\n" % (os.environ["CCS_COMPARE_MARK"], json.dumps(mods)))
    sys.stderr.flush()
atexit.register(_report)
runpy.run_path(script, run_name="__main__")
'''

PREFLIGHT = ("import ccs_beat, ccs_beat.contrib.redbeat, sys; "
             "sys.stdout.write(ccs_beat.__file__)")


@dataclass
class Tree:
    label: str          # "baseline" / "current"
    path: Path
    commit: str         # a commit, or "working tree"
    json_ok: bool = False
    runs: list[dict[tuple[str, int], float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def git(*args: str, cwd: Path = HERE) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def add_worktree(ref: str, parent: Path, name: str, made: list[Path]) -> tuple[Path, str]:
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    path = parent / name
    git("worktree", "add", "--detach", str(path), commit)
    made.append(path)
    return path, commit


def remove_worktree(path: Path) -> None:
    try:
        git("worktree", "remove", "--force", str(path))
    except subprocess.CalledProcessError as exc:
        print(f"git worktree remove {path} failed: {exc.stderr.strip()}", file=sys.stderr)
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "prune")


def tree_env(tree: Tree, marker: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree.path), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["CCS_COMPARE_MARK"] = MARK
    # inherited by the script's workers (the harness copies os.environ): lets us
    # find exactly the processes this run started if one is left behind
    env["CCS_COMPARE_RUN"] = marker
    return env


def preflight(tree: Tree, marker: str) -> str | None:
    """None if the tree imports its own ccs_beat; else what went wrong."""
    env = tree_env(tree, marker)
    out = subprocess.run([sys.executable, "-c", PREFLIGHT], cwd=tree.path, env=env,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        return f"{tree.label} tree fails to import ccs_beat:\n{out.stderr.strip()}"
    if not under(out.stdout.strip(), tree.path):
        return f"{tree.label} tree imports {out.stdout.strip()}, not its own ccs_beat"
    script = tree.path / SCRIPT
    if not script.exists():
        return f"{tree.label} tree has no {SCRIPT}"
    helptext = subprocess.run([sys.executable, str(script), "--help"], cwd=tree.path,
                              env=env, capture_output=True, text=True, timeout=120).stdout
    tree.json_ok = "--json" in helptext
    return None


def under(file: str | None, root: Path) -> bool:
    if not file:
        return False
    try:
        Path(file).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def marked_pids(marker: str) -> list[int]:
    """Processes (of this user) whose environment carries this run's marker."""
    needle = f"CCS_COMPARE_RUN={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def kill_strays(marker: str) -> list[int]:
    pids = marked_pids(marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def pump(stream, sink: list[str], prefix: str, echo) -> None:
    for line in stream:
        sink.append(line)
        if not line.startswith(MARK):
            echo.write(f"{prefix}{line}")
            echo.flush()


def run_once(tree: Tree, extra: list[str], tag: str, timeout: float) -> None:
    marker = uuid.uuid4().hex
    args = [*extra, "--json"] if tree.json_ok else list(extra)
    cmd = [sys.executable, "-c", WRAPPER, str(tree.path / SCRIPT), *args]
    print(f"\n== {tag}: {tree.label} ({tree.commit[:12]}) {SCRIPT} {' '.join(args)}",
          flush=True)
    out: list[str] = []
    err: list[str] = []
    child = subprocess.Popen(cmd, cwd=tree.path, env=tree_env(tree, marker), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    threads = [threading.Thread(target=pump, args=(child.stdout, out, f"  [{tag}] ",
                                                   sys.stdout), daemon=True),
               threading.Thread(target=pump, args=(child.stderr, err, f"  [{tag}] ",
                                                   sys.stderr), daemon=True)]
    for t in threads:
        t.start()
    start = time.monotonic()
    timed_out = False
    try:
        child.wait(timeout=timeout)
    except BaseException as exc:
        # Ctrl-C, SIGTERM or timeout: let the script close its cluster (it kills
        # its workers in a finally), then make sure.
        timed_out = isinstance(exc, subprocess.TimeoutExpired)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGINT)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        strays = kill_strays(marker)
        if strays:
            print(f"  killed {len(strays)} leftover processes: {strays}", file=sys.stderr)
        if not timed_out:
            raise
    finally:
        for t in threads:
            t.join(timeout=10)
    if timed_out:
        tree.failures.append(f"{tag}: timed out after {timeout:.0f} s")
        print(f"  {tag} TIMED OUT", flush=True)
        return
    strays = kill_strays(marker)
    if strays:
        print(f"  killed {len(strays)} leftover processes: {strays}", file=sys.stderr)
    took = time.monotonic() - start
    if child.returncode != 0:
        tree.failures.append(f"{tag}: exit status {child.returncode}")
        print(f"  {tag} FAILED (exit status {child.returncode})", flush=True)
        return
    imported = {}
    for line in err:
        if line.startswith(MARK):
            imported = json.loads(line[len(MARK):])
    stdout = "".join(out)
    result = parse_json(stdout) if tree.json_ok else None
    if result is not None and result.get("ccs_beat_file"):
        imported.setdefault("ccs_beat", result["ccs_beat_file"])
    if not under(imported.get("ccs_beat"), tree.path) or not under(imported.get("tests"),
                                                                    tree.path):
        tree.failures.append(f"{tag}: imported {imported} instead of {tree.path}'s own")
        print(f"  {tag} DISCARDED: it imported {imported}", flush=True)
        return
    medians = medians_of(result) if result is not None else parse_table(stdout)
    if not medians:
        tree.failures.append(f"{tag}: no figures found in its output")
        print(f"  {tag}: no figures found in its output", flush=True)
        return
    tree.runs.append(medians)
    print(f"  {tag}: {took:.0f} s, ccs_beat from {imported['ccs_beat']}", flush=True)


def parse_json(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return json.loads(line)
    return None


def medians_of(result: dict) -> dict[tuple[str, int], float]:
    medians = {}
    for r in result.get("rows", []):
        medians[(r["stock"], int(r["n"]))] = float(r["stock_ms"])
        medians[(r["singleton"], int(r["n"]))] = float(r["singleton_ms"])
    return medians


ROW = re.compile(r"^\s*([\d,]+)\s+([\d,.]+)\s*ms\s+([\d,.]+)\s*ms\b")
SCHEDULER = re.compile(r"\b([A-Z]\w*Scheduler)\b")


def parse_table(stdout: str) -> dict[tuple[str, int], float]:
    """An older script's table: a header line naming the stock scheduler
    ("N  RedBeatScheduler  Singleton…  reads  ratio"), then "N  x ms  y ms ..."."""
    medians: dict[tuple[str, int], float] = {}
    stock = None
    for line in stdout.splitlines():
        if (m := ROW.match(line)) and stock:
            n = int(m[1].replace(",", ""))
            medians[(stock, n)] = float(m[2].replace(",", ""))
            medians[("Singleton" + stock, n)] = float(m[3].replace(",", ""))
        elif (m := SCHEDULER.search(line)) and not m[1].startswith("Singleton"):
            stock = m[1]
        elif "redbeat" in line.lower() and stock is None:
            stock = "RedBeatScheduler"
        elif "django" in line.lower():
            stock = "DatabaseScheduler"
    return medians


def report(base: Tree, cur: Tree) -> None:
    keys = sorted({k for run in base.runs + cur.runs for k in run},
                  key=lambda k: (order(k[0]), k[1], k[0].startswith("Singleton")))
    print(f"\nadapter_ticks: median tick (ms), median over rounds of each run's median;"
          f"\nbaseline {base.commit[:12]} ({len(base.runs)} runs), current {cur.commit[:12]}"
          f" ({len(cur.runs)} runs); within = current <= {LIMIT:.2f} x baseline\n")
    head = (f"{'scheduler':<28} {'N':>6} {'baseline':>10} {'current':>10} {'cur/base':>9}"
            f"  {'within 10%':<12} rounds (base / cur)")
    print(head)
    print("-" * len(head))
    for sched, n in keys:
        b = [run[(sched, n)] for run in base.runs if (sched, n) in run]
        c = [run[(sched, n)] for run in cur.runs if (sched, n) in run]
        bm = statistics.median(b) if b else None
        cm = statistics.median(c) if c else None
        ratio = cm / bm if bm and cm else None
        within = "-" if ratio is None else ("yes" if ratio <= LIMIT else "NO")
        if not sched.startswith("Singleton"):
            within += " (noise)" if ratio is not None else ""
        rounds = " ".join(f"{x:.0f}" for x in b) + " / " + " ".join(f"{x:.0f}" for x in c)
        print(f"{sched:<28} {n:>6} {fmt(bm):>10} {fmt(cm):>10} "
              f"{'-' if ratio is None else f'{ratio:.3f}':>9}  {within:<12} {rounds}")
    print("\nsingleton / stock in the same run (median over runs): the adapter's own cost")
    for stock, single in PAIRS:
        for n in sorted({k[1] for k in keys if k[0] == stock}):
            ov = [[run[(single, n)] / run[(stock, n)] for run in t.runs
                   if (single, n) in run and (stock, n) in run] for t in (base, cur)]
            if ov[0] and ov[1]:
                b, c = statistics.median(ov[0]), statistics.median(ov[1])
                print(f"  {single:<28} {n:>6}  baseline {b:.2f}x  current {c:.2f}x"
                      f"  ({c / b:.3f})")
    for t in (base, cur):
        for f in t.failures:
            print(f"{t.label}: {f}")


def order(sched: str) -> int:
    for i, pair in enumerate(PAIRS):
        if sched in pair:
            return i
    return len(PAIRS)


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other arguments are passed to both trees' adapter_ticks.py.")
    parser.add_argument("--against", required=True, metavar="REF", help="baseline commit")
    parser.add_argument("--current", metavar="REF",
                        help="use a worktree of REF as the current side, not this tree")
    parser.add_argument("--quick", action="store_true", help="passed to adapter_ticks.py")
    parser.add_argument("--rounds", type=int, default=2, metavar="K",
                        help="rounds, each runs both trees; order alternates (default 2)")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds per script run (default 3600)")
    args, extra = parser.parse_known_args()
    if args.quick:
        extra = ["--quick", *extra]
    signal.signal(signal.SIGTERM, on_sigterm)

    top = Path(git("rev-parse", "--show-toplevel"))
    tmp = Path(tempfile.mkdtemp(prefix="ccs-compare-"))
    made: list[Path] = []
    try:
        path, commit = add_worktree(args.against, tmp, "baseline", made)
        base = Tree("baseline", path, commit)
        if args.current:
            path, commit = add_worktree(args.current, tmp, "current", made)
            cur = Tree("current", path, commit)
        else:
            dirty = git("status", "--porcelain", cwd=top)
            cur = Tree("current", top, git("rev-parse", "HEAD", cwd=top)
                       + (" + uncommitted changes" if dirty else ""))
        print(f"baseline: {args.against} = {base.commit} in {base.path}")
        print(f"current:  {cur.commit} in {cur.path}")
        problems = [p for t in (base, cur) if (p := preflight(t, uuid.uuid4().hex))]
        if problems:
            print("\n".join(problems))
            if not args.current:
                print("(compare two commits instead: --current HEAD, or another REF)")
            return 0
        for t in (base, cur):
            print(f"{t.label}: {SCRIPT} "
                  f"{'has --json' if t.json_ok else 'has no --json: parsing its table'}")
        for r in range(args.rounds):
            pair = (base, cur) if r % 2 == 0 else (cur, base)
            for i, t in enumerate(pair):
                run_once(t, extra, f"round {r + 1}/{args.rounds} {'ab'[i]}", args.timeout)
        report(base, cur)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except subprocess.TimeoutExpired as exc:   # a preflight
        print(f"\ntimed out: {exc}", file=sys.stderr)
    except subprocess.CalledProcessError as exc:
        print(f"\n{' '.join(exc.cmd)} failed: {exc.stderr}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # do not interrupt the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for path in made:
            remove_worktree(path)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
