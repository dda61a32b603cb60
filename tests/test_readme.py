"""The README's promises: CI runs exactly its install and test commands."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_setup_commands():
    section = ROOT.joinpath("README.md").read_text().split("## Set up and test")[1]
    section = section.split("\n## ")[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_has_two_setup_commands():
    commands = _readme_setup_commands()
    assert len(commands) == 2 and commands[0].startswith("pip install")
    assert "pytest" in commands[1]


def test_ci_runs_exactly_the_readme_commands():
    ci_lines = [line.strip() for line in ROOT.joinpath(".ci/run").read_text().splitlines()]
    install, test = _readme_setup_commands()
    assert install in ci_lines
    assert any(line.startswith(test + " ||") or line == test for line in ci_lines)


def test_readme_console_scripts_are_declared():
    from test_packaging import pyproject

    declared = pyproject()["project"]["scripts"]
    readme = ROOT.joinpath("README.md").read_text()
    for script in set(re.findall(r"`(tfautocompress-[a-z-]+)", readme)):
        assert script in declared, f"{script} is in the README but not in pyproject.toml"
