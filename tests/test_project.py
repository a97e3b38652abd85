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
    for flag in ("--config: Experiment config file", "--workdir: Directory for checkpoints"):
        assert flag in out.stdout, out.stdout


def test_readme_python_snippets_run_as_written():
    text = open(os.path.join(ROOT, "README.md")).read()
    snippets = re.findall(r"```python\n(.*?)\n```", text, re.S)
    assert len(snippets) >= 2
    for code in snippets:
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
