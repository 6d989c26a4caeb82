"""House rules that keep CI honest."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    assert len(_readme_commands()) == 2


def test_ci_runs_the_readme_test_command():
    test_command = _readme_commands()[1]
    assert "pytest" in test_command
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command.strip() in ci_lines


def test_every_subpackage_is_listed_for_installation():
    """The package-dir mapping needs an explicit list; a folder missing from it is absent from wheels."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {"edge_sdk": "edge_sdk", "runtime": "edge_sdk.runtime", "export": "edge_sdk.export",
               "calibration": "edge_sdk.calibration"}
    found = {".".join([name, *init.parent.relative_to(ROOT / folder).parts])
             for folder, name in folders.items() for init in (ROOT / folder).rglob("__init__.py")}
    assert listed == found
