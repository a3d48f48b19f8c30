"""The repository's promises: README's two set-up commands, and CI running the second one."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:bash|sh)\n(.+?)\n```", section, re.S)


def test_readme_gives_exactly_two_setup_commands_and_ci_runs_the_test_one():
    launch, test = readme_commands()
    assert "streamlit run app.py" in launch and "pip install" in launch
    assert "pytest" in test and "pip install" in test
    assert test in (REPO / ".ci" / "run").read_text()


def test_library_never_imports_streamlit():
    offenders = [p.name for p in (REPO / "robust_core").rglob("*.py") if re.search(r"^\s*(import|from)\s+streamlit", p.read_text(), re.M)]
    assert offenders == []


def test_torch_and_torchvision_are_pinned():
    requirements = (REPO / "requirements.txt").read_text()
    assert "torch==2.14.1" in requirements and "torchvision==0.29.1" in requirements
