"""The repository's promises: README's two set-up commands, CI running the second one, and documentation links that
lead somewhere."""
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
    offenders = [p.name for p in (REPO / "robust_core").rglob("*.py")
                 if re.search(r"^\s*(import|from)\s+streamlit", p.read_text(), re.M)]
    assert offenders == []


def test_torch_and_torchvision_are_pinned_where_the_package_lists_what_it_needs():
    import tomllib

    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.14.1" in dependencies and "torchvision==0.29.1" in dependencies
    assert (REPO / "requirements.txt").read_text().splitlines()[-1] == "-e ."  # README's install: this package


def test_no_module_outside_the_tests_puts_itself_on_the_import_path():
    """The lab is a package (pip install -e .): its modules, pages and benchmarks import it, not a path."""
    offenders = [str(p.relative_to(REPO)) for folder in ("robust_core", "lab_pages", "benchmarks")
                 for p in (REPO / folder).rglob("*.py") if "sys.path.insert" in p.read_text()]
    offenders += ["app.py"] if "sys.path.insert" in (REPO / "app.py").read_text() else []
    assert offenders == []


DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _prose(text: str) -> str:
    """Markdown without fenced code blocks and inline code, whose brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(path: Path) -> set[str]:
    """The heading anchors GitHub gives a Markdown file: lower case, punctuation dropped, spaces as hyphens, a
    repeated heading numbered."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", _prose(path.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def relative_links(path: Path) -> list[str]:
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", _prose(path.read_text()))
    return [t for t in targets if not re.match(r"[a-z]+:", t)]


def test_docs_exist_and_readme_stays_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200
    assert len(DOCS) > 1


def test_every_relative_link_in_readme_and_docs_leads_to_a_file_and_heading_that_exist():
    broken = []
    for doc in DOCS:
        for link in relative_links(doc):
            file_part, _, anchor = link.partition("#")
            target = (doc.parent / file_part).resolve() if file_part else doc
            if not target.exists():
                broken.append(f"{doc.relative_to(REPO)}: {link} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
                broken.append(f"{doc.relative_to(REPO)}: {link} (no such heading)")
    assert broken == []


def test_link_check_sees_links_images_and_anchors():
    """The checker itself: it finds a page link, an image and a heading, and skips code and web addresses."""
    sample = REPO / "README.md"
    links = relative_links(sample)
    assert any(link.endswith(".png") for link in links)
    assert any(link.startswith("docs/") for link in links)
    assert not any(link.startswith("http") for link in links)
    assert "set-up" in _anchors(sample)
