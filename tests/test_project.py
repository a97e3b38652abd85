"""The project's promises about itself: README and CI agree, launchers explain themselves."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    quick = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:bash|sh)?\n(.*?)\n```", quick, re.S)


def test_ci_runs_exactly_the_readme_test_command():
    commands = _readme_commands()
    assert len(commands) == 2, commands  # one for the main job, one for the tests
    test_cmd = next(c for c in commands if "pytest" in c)
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert test_cmd.strip() in ci


def test_help_lists_the_flags():
    out = subprocess.run([sys.executable, "-m", "experiments.vae", "--help"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert out.returncode in (0, 1), out.stdout  # absl exits 1 after printing --help
    for flag in ("--config: Experiment config: a shipped config's name", "--workdir: Directory for checkpoints"):
        assert flag in out.stdout, out.stdout


def python_snippets(path: str, section: str | None = None) -> list[str]:
    """The ```python blocks of the Markdown file ``path`` (of its ``## section`` only)."""
    text = open(os.path.join(ROOT, path)).read()
    if section is not None:
        text = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)\n```", text, re.S)


def test_readme_python_snippets_run_as_written():
    """The README's snippets (the one that loads a trained run is run by
    tests/test_runs.py, beside a run) and docs/library.md's own train step."""
    snippets = [s for s in python_snippets("README.md") if "runs.load(" not in s]
    assert len(snippets) >= 2
    for code in snippets + python_snippets("docs/library.md", "Your own train step"):
        exec(compile(code, "README.md", "exec"), {})


def test_compute_modules_do_not_import_tensorflow():
    code = ("import sys, genjax.tasks, genjax.parallel, genjax.metrics, genjax.spectral, "
            "benchmarks.throughput; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', "
            "'tensorflow_datasets'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


# The layers of genjax, lowest first: a module may import from its own layer or below,
# never from above. The one place the order is written (docs/architecture.md explains it).
LAYERS = (
    ("state", "precision", "ranking", "record", "replica", "rng", "report", "runlock",
     "spectral", "hparams", "varied"),  # foundations
    ("data", "losses"),          # tfds pipelines; pure objectives and penalties
    ("nn",),                     # Flax modules
    ("steps",),                  # train-step factories
    ("parallel", "xla_cpu"),     # drivers, multi-host start-up, XLA:CPU dot choice
    ("metrics",),                # FID/IS/KID/PR, domain classifier, InceptionV3
    ("checkpoint",),             # orbax save/restore
    ("tasks",),                  # config -> Task
    ("assembly",),               # a run's setup from its config, and its evaluation
    ("population",),             # K members as one run
    ("workers",),                # a population as runs of their own, one process per core
    ("loop",),                   # train_and_evaluate
    ("runs", "sweep"),           # a trained run from Python; a search over runs (Optuna)
    ("configs",),                # the shipped experiment configs (ml_collections only)
    ("cli",),                    # the command lines: genjax-train, -evaluate, -sweep
)


def _layer_of(part: str) -> int:
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    raise AssertionError(f"genjax.{part} is in no layer of tests/test_project.py LAYERS")


def _genjax_imports(path: str) -> set[str]:
    """The top-level genjax parts (genjax.X) that the file at ``path`` imports."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n.split(".")[1] for n in names if n.startswith("genjax.")}
    return found


def test_no_module_imports_a_higher_layer():
    pkg = os.path.join(ROOT, "genjax")
    upward = []
    for dirpath, _, files in os.walk(pkg):
        for f in sorted(files):
            if not f.endswith(".py") or dirpath == pkg and f == "__init__.py":
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), pkg)
            part = rel.split(os.sep)[0].removesuffix(".py")
            for target in _genjax_imports(os.path.join(dirpath, f)):
                if os.path.exists(os.path.join(pkg, target)) or \
                        os.path.exists(os.path.join(pkg, f"{target}.py")):
                    if _layer_of(target) > _layer_of(part):
                        upward.append(f"genjax/{rel} -> genjax.{target}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)
    # every part of the package has a layer
    for name in os.listdir(pkg):
        if not name.startswith(("_", ".")) and (name.endswith(".py") or
                                                os.path.isdir(os.path.join(pkg, name))):
            _layer_of(name.removesuffix(".py"))


def test_start_up_is_quiet(data_dir):
    """A launcher's start-up (TensorFlow loaded, the test split read for the fixed grid
    inputs and left, the train pipeline started) prints nothing: no TensorFlow INFO
    banners, no warning about a partially read cache."""
    code = ("import genjax.cli.launch\n"
            "from genjax import data\n"
            f"spec = data.DataSpec(name='mnist5k', data_dir={data_dir!r})\n"
            "next(data.eval_iterator(spec, 'test', global_batch_size=100))\n"
            "import gc; gc.collect()\n"
            "next(data.train_iterator(spec, 'train', global_batch_size=64))\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout + out.stderr == "", out.stdout + out.stderr
