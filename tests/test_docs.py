"""The README and docs/ link to each other: every relative link names a file
that exists and, with an anchor, a heading or `<a id>` in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "policies" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(document: Path) -> set[str]:
    """GitHub's heading anchors (lower case, punctuation dropped, spaces as
    hyphens) and explicit ids, outside code blocks."""
    found: set[str] = set()
    fenced = False
    for line in document.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced:
            continue
        heading = re.match(r"^#{1,6} (.+)$", line)
        if heading:
            found.add(re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-"))
        found.update(re.findall(r'<a id="([^"]+)"></a>', line))
    return found


def links(document: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", document.read_text(), flags=re.S)
    return [target for target in LINK.findall(text) if not re.match(r"^[a-z]+:", target)]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for target in links(document):
        path, _, anchor = target.partition("#")
        file = (document.parent / path).resolve() if path else document
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no such section")
    assert not broken, broken


def test_the_docs_are_linked_from_the_readme() -> None:
    readme = set(links(ROOT / "README.md"))
    for document in sorted((ROOT / "docs").glob("*.md")):
        assert any(t.split("#")[0] == f"docs/{document.name}" for t in readme), document.name


def test_the_outputs_the_docs_list_are_the_stacks() -> None:
    """Every output of the dev stack has its row in the README, and every one
    only an AWS stack has is named in docs/aws.md."""
    from tests.harness import evaluate, stack_config
    from tests.test_stack_prod import CERT, prod_config

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("Stack outputs (`make outputs`") :].split("\n\n")[1]
    listed = set(re.findall(r"`([a-zA-Z]+)`", "\n".join(line.split("|")[1] for line in table.splitlines()[2:])))
    dev = set(evaluate(stack_config()).outputs)
    assert dev == listed, (dev - listed, listed - dev)
    prod = set(evaluate(prod_config({"domainName": "api.example.com", "certificateArn": CERT}), stack="prod").outputs)
    aws_doc = (ROOT / "docs" / "aws.md").read_text()
    assert [name for name in sorted(prod - dev) if f"`{name}`" not in aws_doc] == []


ARCHITECTURE = ROOT / "docs" / "architecture.md"


@pytest.mark.parametrize("target", ["local", "aws"])
def test_the_architecture_lists_each_targets_components(target: str) -> None:
    declared = set()
    for module in (ROOT / "components" / target).glob("*.py"):
        declared |= set(re.findall(rf'"wondernest:{target}:(\w+)"', module.read_text()))
    listed = re.search(rf"type tokens `wondernest:{target}:<Thing>`\):\n(.*?)\.", ARCHITECTURE.read_text(), re.S)
    assert listed is not None
    assert set(re.findall(r"`(\w+)`", listed[1])) == declared


def test_the_architecture_names_every_module_of_the_program() -> None:
    """Each module and package directly under components/ has its row."""
    table = ARCHITECTURE.read_text().split("Where things are:", 1)[1].split("\n\n", 2)[1]
    named = set(re.findall(r"`components/([\w.]+?)/?`", table))
    present = {p.name for p in (ROOT / "components").iterdir() if p.suffix == ".py" and p.name != "__init__.py"} | {
        p.name for p in (ROOT / "components").iterdir() if (p / "__init__.py").exists()
    }
    assert named == present
