"""Mutation score of the mask-and-cost math, with mutmut 3.

mutmut (``pip install mutmut``, 3.8 here; not a dependency of the package) mutates
``schemes``, ``masks``, ``space``, ``policy``, ``cost``, ``purification`` and, in
``graph``, the closing of masks (``ChannelGraph.close``, ``_close``, ``_alive``,
``_rows_alive``, ``keep``, ``kept_channels``, ``_whole_blocks`` and ``close_masks``),
and runs each mutant on those modules' fast unit tests (``TESTS`` less the slow
end-to-end ones that ``DESELECT`` names), one mutant at a time in a process forked
from a server that imported TensorFlow once (TensorFlow's thread pools do not
survive a fork, so that server runs no TensorFlow op).

mutmut works in a copy: this script lays the package out in ``--workdir`` as it is
installed (``callbacks/`` as ``tfautocompress/callbacks``, ...), with the tests, a
``pytest.ini`` and a ``pyproject.toml`` holding only ``[tool.mutmut]``; mutmut copies
that again into ``WORKDIR/mutants`` and puts it first on ``sys.path``, so the tests
import the mutated copies, not the editable install (mutmut's own "forced fail" run
checks that they do). Hypothesis runs derandomized, without deadlines and without
shrinking there: a kill is never a timing accident, and a failing example ends its run.

Score = killed (timeouts included, as mutmut counts them) / (mutants - equivalent).
``_mutation_equivalent.EQUIVALENT`` lists the surviving mutants that no test can
kill, each with why: a mutant is matched by its function and the lines mutmut
changed, so the list holds across edits elsewhere; a listed mutant that is killed or
gone is reported as stale. Every other survivor is printed with its diff (``mutmut
show NAME`` in ``--workdir`` shows one again).

    pip install mutmut
    python benchmarks/mutation.py [--modules schemes,cost] [--workdir DIR] [--output r.json]

One run: about 40 minutes on one core (``--max_children 1``).
"""
import collections
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

from absl import app, flags

import _common
from _mutation_equivalent import EQUIVALENT

FLAGS = flags.FLAGS
MODULES = ("schemes", "masks", "space", "policy", "cost", "purification", "graph")
flags.DEFINE_list("modules", list(MODULES), "Modules to mutate (of tfautocompress).")
flags.DEFINE_string("workdir", os.path.join(tempfile.gettempdir(), "tfautocompress-mutation"),
                    "Folder mutmut works in (emptied first).")
flags.DEFINE_bool("rescore", False, "Score the results already in --workdir (no mutmut run): "
                  "after editing EQUIVALENT.")
flags.DEFINE_integer("max_children", 1, "Mutants tested at once (mutmut's --max-children).")
_common.define_output_flag()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBPACKAGES = ("callbacks", "search", "tflite_tools")
TESTS = ("test_schemes", "test_masks", "test_projection", "test_policy", "test_policy_file",
         "test_cost", "test_purification", "test_graph", "test_layer_kinds",
         "test_schemes_laws", "test_masks_laws", "test_space_laws", "test_policy_laws",
         "test_cost_laws", "test_purification_laws", "test_graph_closing_laws")
# Slow end-to-end tests (ADMM training, the published ImageNet models, ResNet-18/56
# budgets): each costs seconds, and every mutant they cover would pay it.
DESELECT = "not admm and not published_figures and not he_et_al and not resnet18 and not resnet56"
# What of graph.py is mutated: the closing of masks (mutmut's mangled function names).
GRAPH_CLOSING = ("xǁChannelGraphǁclose", "xǁChannelGraphǁ_close", "xǁChannelGraphǁ_alive",
                 "xǁChannelGraphǁ_rows_alive", "xǁChannelGraphǁkeep",
                 "xǁChannelGraphǁkept_channels", "xǁChannelGraphǁ_whole_blocks",
                 "x_close_masks")
# Imported once by mutmut's fork server (none of them runs a TensorFlow op).
PRELOAD = ("numpy", "tensorflow", "tf_keras", "hypothesis", "hypothesis.extra.numpy", "pytest",
           "_pytest.python", "_pytest.runner", "_pytest.fixtures", "tfautocompress.zoo",
           "tfautocompress.cost", "tfautocompress.policy", "tfautocompress.purification",
           "tfautocompress.compact", "tfautocompress.lowering", "tfautocompress.wrappers",
           "tfautocompress.callbacks.admm", "tfautocompress.search.encoding",
           "tfautocompress.search.sa_oracle")
_CONFTEST_EXTRA = '''

# --- added by benchmarks/mutation.py: the same examples for every mutant, no deadlines,
# no database, and a failing example is not shrunk (a kill is a kill)
from hypothesis import Phase as _Phase, settings as _settings  # noqa: E402

_settings.register_profile("mutation", derandomize=True, deadline=None, database=None,
                           phases=(_Phase.explicit, _Phase.reuse, _Phase.generate))
_settings.load_profile("mutation")
'''
# mutmut's exit codes (mutmut.stats.status_by_exit_code): a timeout counts as a kill.
_KILLED = {1, 3, 36, -24, 24, 152, 255}
_SURVIVED = {0}


def _prepare(workdir, modules):
    """The tree mutmut works in, laid out as installed, and its mutant-name filters."""
    if os.path.exists(workdir):
        shutil.rmtree(workdir)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(ROOT, "tfautocompress"), os.path.join(workdir, "tfautocompress"),
                    ignore=ignore)
    for sub in SUBPACKAGES:
        shutil.copytree(os.path.join(ROOT, sub), os.path.join(workdir, "tfautocompress", sub),
                        ignore=ignore)
    os.makedirs(os.path.join(workdir, "tests"))
    tests = [t for t in TESTS if os.path.exists(os.path.join(ROOT, "tests", t + ".py"))]
    for name in tests:
        shutil.copy(os.path.join(ROOT, "tests", name + ".py"), os.path.join(workdir, "tests"))
    with open(os.path.join(ROOT, "tests", "conftest.py")) as f:
        conftest = f.read()
    with open(os.path.join(workdir, "tests", "conftest.py"), "w") as f:
        f.write(conftest + _CONFTEST_EXTRA)
    shutil.copy(os.path.join(ROOT, "pytest.ini"), workdir)
    config = {
        "source_paths": ["tfautocompress"],
        "only_mutate": [f"tfautocompress/{m}.py" for m in modules],
        "also_copy": ["pytest.ini"],
        "pytest_add_cli_args_test_selection": [f"tests/{t}.py" for t in tests] + ["-k", DESELECT],
        # lean pytest runs: no plugins (PYTEST_DISABLE_PLUGIN_AUTOLOAD), no rewriting
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "no:unraisableexception",
                                "-p", "no:threadexception", "--assert=plain", "-o", "addopts="],
        # TensorFlow's thread pools do not survive a fork: each mutant is forked from a
        # server that imported TensorFlow and the package but ran no op.
        "process_isolation": "forkserver",
        "forkserver_warmup": "import",
        "preload_modules_file": "preload.txt",
    }
    with open(os.path.join(workdir, "preload.txt"), "w") as f:
        f.write("\n".join(PRELOAD) + "\n")
    with open(os.path.join(workdir, "pyproject.toml"), "w") as f:
        f.write("[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in config.items()))
    return [f"tfautocompress.{m}.*" for m in modules if m != "graph"] + (
        [f"tfautocompress.graph.{name}*" for name in GRAPH_CLOSING] if "graph" in modules else [])


def _selected(module, name):
    """Is mutant ``name`` of ``module`` one this benchmark scores?"""
    if module != "graph":
        return True
    function = name.split(".", 2)[2].rsplit("__mutmut_", 1)[0]
    return function in GRAPH_CLOSING


def _mutmut(workdir, *args, log=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    mutmut = os.path.join(os.path.dirname(sys.executable), "mutmut")
    return subprocess.run([mutmut, *args], cwd=workdir, env=env, text=True, check=False,
                          stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT)


def _children_cpu_seconds():
    """CPU seconds of the finished child processes (mutmut, its fork server, the mutants)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
names = json.load(sys.stdin)
json.dump({n: get_diff_for_mutant(n, path="tfautocompress/%s.py" % n.split(".")[1])
           for n in names}, sys.stdout)
"""


def _changes(workdir, names):
    """``{mutant: (module.function, removed lines, added lines)}``, from mutmut's diffs
    (what ``mutmut show`` prints), read in one process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", _DIFFS], cwd=workdir, env=env, text=True,
                          input=json.dumps(names), capture_output=True, check=True)
    result = {}
    for name, diff in json.loads(done.stdout).items():
        body = [line for line in diff.splitlines()
                if line[:1] in "+-" and line[:3] not in ("+++", "---")]
        removed = " / ".join(line[1:].strip() for line in body if line.startswith("-"))
        added = " / ".join(line[1:].strip() for line in body if line.startswith("+"))
        result[name] = (name.rsplit("__mutmut_", 1)[0].split(".", 1)[1], removed, added)
    return result


def _results(workdir, modules):
    """``{module: {status: [mutant names]}}`` from mutmut's meta files."""
    table = {}
    for module in modules:
        path = os.path.join(workdir, "mutants", "tfautocompress", module + ".py.meta")
        with open(path) as f:
            codes = json.load(f)["exit_code_by_key"]
        rows = collections.defaultdict(list)
        for name, code in sorted(codes.items()):
            if not _selected(module, name):
                continue
            status = ("killed" if code in _KILLED else "survived" if code in _SURVIVED
                      else "no tests" if code in (5, 33) else f"other ({code})")
            rows[status].append(name)
        table[module] = rows
    return table


def main(argv):
    del argv
    modules = [m for m in MODULES if m in FLAGS.modules]
    unknown = set(FLAGS.modules) - set(MODULES)
    if unknown:
        raise app.UsageError(f"--modules: {sorted(unknown)} not among {MODULES}.")
    workdir = os.path.abspath(FLAGS.workdir)
    timing = {}
    if not FLAGS.rescore:
        names = _prepare(workdir, modules)
        print(f"mutmut works in {workdir}; its log: {workdir}/mutmut.log", flush=True)
        cpu = _children_cpu_seconds()
        with _common.Stopwatch() as watch, open(os.path.join(workdir, "mutmut.log"), "w") as log:
            done = _mutmut(workdir, "run", "--max-children", str(FLAGS.max_children), *names,
                           log=log)
        timing = {"minutes": round(watch.seconds / 60, 1),
                  "cpu_minutes": round((_children_cpu_seconds() - cpu) / 60, 1)}
        if done.returncode:
            with open(os.path.join(workdir, "mutmut.log")) as f:
                print(f.read()[-3000:])
            raise SystemExit(f"mutmut run failed (exit {done.returncode}).")
    table = _results(workdir, modules)
    equivalent = {(f, a, b): why for f, a, b, why in EQUIVALENT}
    used, open_survivors, result = set(), [], {}
    print(f"\n{'module':<14}{'mutants':>9}{'killed':>8}{'equiv.':>8}{'survived':>10}"
          f"{'no tests':>10}{'score':>9}")
    totals = collections.Counter()
    changes = _changes(workdir, [n for rows in table.values()
                                 for n in rows["survived"] + rows["no tests"]])
    for module in modules:
        rows = table[module]
        n_equivalent = 0
        for name in rows["survived"] + rows["no tests"]:
            change = changes[name]
            if change in equivalent:
                used.add(change)
                n_equivalent += 1
            else:
                open_survivors.append((name, change))
        mutants = sum(len(v) for v in rows.values())
        killed = len(rows["killed"])
        counts = {"mutants": mutants, "killed": killed, "equivalent": n_equivalent}
        totals.update(counts)
        score = 100.0 * killed / max(mutants - n_equivalent, 1)
        print(f"{module:<14}{mutants:>9}{killed:>8}{n_equivalent:>8}{len(rows['survived']):>10}"
              f"{len(rows['no tests']):>10}{score:>8.1f}%")
        for status in sorted(set(rows) - {"killed", "survived", "no tests"}):
            print(f"    {status}: {', '.join(rows[status])}")
        result[f"{module}_score"] = round(score, 1)
    overall = 100.0 * totals["killed"] / max(totals["mutants"] - totals["equivalent"], 1)
    print(f"{'all':<14}{totals['mutants']:>9}{totals['killed']:>8}{totals['equivalent']:>8}"
          f"{'':>20}{overall:>8.1f}%")
    if open_survivors:
        print(f"\n{len(open_survivors)} surviving mutants, neither killed nor listed as "
              "equivalent:")
        for name, (function, removed, added) in open_survivors:
            print(f"  {name}\n      - {removed}\n      + {added}")
    stale = [key for key in equivalent if key not in used and key[0].split(".")[0] in modules]
    if stale:
        print(f"\n{len(stale)} EQUIVALENT entries match no surviving mutant (killed now, or "
              "the code changed):")
        for function, removed, added in stale:
            print(f"  {function}: - {removed} / + {added}")
    result = dict(score=round(overall, 1), mutants=totals["mutants"], killed=totals["killed"],
                  equivalent=totals["equivalent"], open_survivors=len(open_survivors),
                  **result, **timing)
    _common.finish(result, FLAGS.output)


if __name__ == "__main__":
    app.run(main)
