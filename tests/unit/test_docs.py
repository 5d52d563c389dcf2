"""The README and docs/ as a reader meets them: every relative link lands on a page (and a heading) that exists,
every `riskray` command they name is one the CLI has, every page is reachable from the README, and the README
stays a five-minute read. Pure text and the CLI's command tree: no services."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 200

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s<>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...: not a file of this repository
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def split(text: str) -> tuple[str, list[str]]:
    """The page's prose (fenced blocks blanked, so line numbers hold) and the text of its fenced blocks."""
    prose, blocks, fence, block = [], [], None, []
    for line in text.splitlines():
        opened = FENCE.match(line)
        if fence is None and opened:
            fence, block = opened.group(1), []
            prose.append("")
        elif fence is not None and line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            fence = None
            blocks.append("\n".join(block))
            prose.append("")
        elif fence is not None:
            block.append(line)
            prose.append("")
        else:
            prose.append(line)
    return "\n".join(prose), blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (links and code marks dropped) lower-cased, punctuation removed,
    each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor, repeated headings numbered as GitHub does (-1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for line in split(page.read_text())[0].splitlines():
        if heading := HEADING.match(line):
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line, target) of every Markdown link or image in the prose, code spans and fenced blocks left out."""
    prose = split(text)[0]
    prose = INLINE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), prose)
    for match in LINK.finditer(prose):
        yield prose.count("\n", 0, match.start()) + 1, match.group(1)


def broken_link(page: Path, target: str) -> str | None:
    """Why a link of this page does not land, or None when it does (or leaves the repository's files)."""
    if not target or SCHEME.match(target):
        return None if target else "empty link"
    path, _, anchor = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    if not destination.exists():
        return f"{path}: no such file"
    if anchor:
        if destination.suffix != ".md" or destination.is_dir():
            return f"#{anchor}: {path} is not a Markdown page"
        if anchor not in anchors(destination):
            return f"#{anchor}: no such heading in {path or page.name}"
    return None


def code_texts(text: str) -> Iterator[str]:
    """The text of every code span in the prose and of every fenced block."""
    prose, blocks = split(text)
    for match in INLINE_CODE.finditer(prose):
        yield match.group(2)
    yield from blocks


def commands_named(code: str) -> Iterator[list[str]]:
    """For each `riskray` invocation in a piece of code: its command path, with alternatives written as
    `start | status`, `start|status` or `start\\|status` expanded to one path each. Options and arguments end it."""
    for line in code.splitlines():
        words = line.replace("\\|", "|").replace("|", " | ").split()
        for at, word in enumerate(words):
            if word != "riskray" and not word.endswith("/riskray"):
                continue
            rest = words[at + 1:]
            if not rest or not NAME.match(rest[0]):
                continue  # `riskray` alone, or `riskray --help`
            yield [rest[0]]
            if len(rest) > 1 and NAME.match(rest[1]):
                yield [rest[0], rest[1]]
                i = 2
                while i + 1 < len(rest) and rest[i] == "|" and NAME.match(rest[i + 1]):
                    yield [rest[0], rest[i + 1]]
                    i += 2


def cli_tree() -> dict[str, dict[str, None] | None]:
    """The `riskray` app's commands: a group's name maps to its subcommands, a command's to None."""
    import typer

    from app.cli.main import cli

    def subcommands(command: object) -> dict[str, object] | None:
        return getattr(command, "commands", None)  # a click (or Typer's vendored click) Group has .commands

    root = subcommands(typer.main.get_command(cli))
    assert root, "the riskray app has no commands"
    return {name: (dict.fromkeys(sub) if (sub := subcommands(command)) else None) for name, command in root.items()}


def unknown_command(path: list[str], tree: dict[str, dict[str, None] | None]) -> str | None:
    first = path[0]
    if first not in tree:
        return f"no command {first!r}"
    group = tree[first]
    if len(path) > 1 and group is not None and path[1] not in group:
        return f"{first!r} has no subcommand {path[1]!r} (it has: {', '.join(sorted(group))})"
    return None


def test_every_relative_link_in_the_readme_and_docs_lands_on_an_existing_page_and_heading() -> None:
    broken = [f"{page.relative_to(ROOT)}:{line}: ({target}) {why}"
              for page in pages() for line, target in links(page.read_text())
              if (why := broken_link(page, target))]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_riskray_command_named_in_the_readme_and_docs_exists_in_the_cli() -> None:
    tree = cli_tree()
    named = [(page, path) for page in pages() for code in code_texts(page.read_text())
             for path in commands_named(code)]
    assert len(named) > 20, "the docs name hardly any riskray command: is the scan broken?"
    unknown = sorted({f"{page.relative_to(ROOT)}: riskray {' '.join(path)}: {why}"
                      for page, path in named if (why := unknown_command(path, tree))})
    assert not unknown, "commands the CLI does not have:\n" + "\n".join(unknown)


def test_readme_stays_a_five_minute_read_of_at_most_200_lines() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to a page under docs/"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(README.parent / target.partition("#")[0]).resolve()
              for _, target in links(README.read_text()) if target and not SCHEME.match(target)}
    unlinked = [page.relative_to(ROOT) for page in sorted(DOCS.glob("*.md")) if page.resolve() not in linked]
    assert not unlinked, f"pages no reader of the README finds: {unlinked}"


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Serving benchmark (measured)", "serving-benchmark-measured"),
    ("The whole loop: `make demo`", "the-whole-loop-make-demo"),
    ("Retraining (Airflow)", "retraining-airflow"),
    ("Reliability and security", "reliability-and-security"),
    ("See [the runbook](runbook.md) now", "see-the-runbook-now"),
    ("The soak's p99 is 4.9x its unloaded p99", "the-soaks-p99-is-49x-its-unloaded-p99"),
])
def test_heading_anchors_follow_githubs_slug_rules(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_the_checks_catch_a_broken_link_a_missing_heading_and_an_unknown_command(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## Same\n\n## Same\n\n```bash\n# not a heading\n```\n")
    page.write_text("[a](missing.md) [b](other.md#nope) [c](other.md#same-1) [d](https://example.com/x)\n"
                    "`[e](in-code.md)` [f](other.md#not-a-heading) [g](#page)\n\n# Page\n")
    found = {target: broken_link(page, target) for _, target in links(page.read_text())}
    assert set(found) == {"missing.md", "other.md#nope", "other.md#same-1", "https://example.com/x",
                          "other.md#not-a-heading", "#page"}
    assert found["missing.md"] and found["other.md#nope"] and found["other.md#not-a-heading"]
    assert found["other.md#same-1"] is None and found["https://example.com/x"] is None and found["#page"] is None

    tree = {"stream": {"start": None, "stop": None}, "train": None}
    named = list(commands_named("kubectl exec svc/x -- riskray stream start | stop | restart --now\n"
                                "riskray train --trials 4 && riskray --help; riskray-fraud riskray_ray"))
    assert named == [["stream"], ["stream", "start"], ["stream", "stop"], ["stream", "restart"], ["train"]]
    assert [path for path in named if unknown_command(path, tree)] == [["stream", "restart"]]
    escaped = list(commands_named("riskray serve status\\|reload"))  # `|` escaped inside a Markdown table
    assert escaped == [["serve"], ["serve", "status"], ["serve", "reload"]]
