"""The documentation stays a guide that matches the code.

- README.md is short and its Quickstart is exactly `make run` and `make test`;
- every relative link in README.md and docs/*.md points at a file (and heading) that exists;
- every key of the config schema, and of the stage dataclasses behind its open sections, is
  documented in docs/configuration.md under its section;
- no tracked text file refers to the project's work-tracking history (ticket or milestone
  numbers) instead of stating facts.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
MAX_README_LINES = 250
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
HISTORY = re.compile(r"\bissue\s*#?\d+|\bstop\s+\d+|\bthis (stop|session)\b", re.IGNORECASE)


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def split_fences(text: str) -> list[tuple[bool, str]]:
    """The lines of a markdown text, each with whether it lies inside a fenced code block
    (the fence lines themselves count as inside)."""
    out, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            out.append((True, line))
            inside = not inside
            continue
        out.append((inside, line))
    return out


def headings(text: str) -> list[tuple[int, str, int]]:
    """(level, title, line index) of every ATX heading outside code blocks."""
    found = []
    for i, (code, line) in enumerate(split_fences(text)):
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not code and m:
            found.append((len(m.group(1)), m.group(2), i))
    return found


def section_lines(text: str, title: str, level: int = 2) -> list[tuple[bool, str]]:
    """The lines under heading `title` up to the next heading of the same or a higher level."""
    lines = split_fences(text)
    hs = headings(text)
    starts = [i for lvl, t, i in hs if lvl == level and t.strip() == title]
    assert starts, f"no {'#' * level} {title} heading"
    start = starts[0]
    end = next((i for lvl, _, i in hs if i > start and lvl <= level), len(lines))
    return lines[start + 1:end]


def fenced_blocks(lines: list[tuple[bool, str]]) -> list[list[str]]:
    blocks, current = [], None
    for code, line in lines:
        if FENCE.match(line):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif code and current is not None:
            current.append(line)
    return blocks


def slug(title: str, seen: dict[str, int]) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens,
    `-1`, `-2`, ... for repeats."""
    base = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
    n = seen.get(base, 0)
    seen[base] = n + 1
    return base if n == 0 else f"{base}-{n}"


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    return {slug(title, seen) for _, title, _ in headings(path.read_text(encoding="utf-8"))}


def relative_links(path: Path) -> list[str]:
    """Link targets outside code blocks and code spans, without web/mail addresses."""
    targets = []
    for code, line in split_fences(path.read_text(encoding="utf-8")):
        if code:
            continue
        prose = re.sub(r"`[^`]*`", "", line)
        targets += LINK.findall(prose)
        targets += REF_LINK.findall(prose)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


# ---- README ------------------------------------------------------------------------------------

def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}): move detail to docs/"


def test_quickstart_is_exactly_make_run_and_make_test():
    lines = section_lines(README.read_text(encoding="utf-8"), "Quickstart")
    blocks = fenced_blocks(lines)
    assert blocks, "the Quickstart section has no code block"
    commands = [line.split("#", 1)[0].strip() for block in blocks for line in block]
    assert [c for c in commands if c] == ["make run", "make test"]


def test_readme_has_no_results_tables():
    """Measured numbers live in docs/results.md; the README links there."""
    text = README.read_text(encoding="utf-8")
    for _, line in split_fences(text):
        assert not re.search(r"\d+\.\d+ ± \d+\.\d+", line), f"a results table row in README.md: {line}"


# ---- links -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_existing_files(path):
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


def test_the_docs_link_checker_sees_links():
    links = relative_links(README)
    assert "docs/configuration.md" in links and len(links) >= 8


def test_slug_matches_github():
    seen: dict[str, int] = {}
    assert slug("The demo's numbers", seen) == "the-demos-numbers"
    assert slug("Methods × seeds grids", seen) == "methods--seeds-grids"
    assert slug("`pretrain.model`", seen) == "pretrainmodel"
    assert slug("Versioning data (DVC)", seen) == "versioning-data-dvc"
    assert slug("Versioning data (DVC)", seen) == "versioning-data-dvc-1"


# ---- configuration -----------------------------------------------------------------------------

def schema_keys(node, schema: dict) -> list[str]:
    """Every property name below a schema node: nested sections, `$ref`s, `allOf` parts and the
    schemas of `additionalProperties` (e.g. each rule's resources, each dataset's reader)."""
    if not isinstance(node, dict):
        return []
    if "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target = schema
        for part in ref[2:].split("/"):
            target = target[part]
        return schema_keys(target, schema)
    keys = []
    for name, sub in (node.get("properties") or {}).items():
        keys += [name, *schema_keys(sub, schema)]
    keys += schema_keys(node.get("additionalProperties"), schema)
    for combo in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(combo) or []:
            keys += schema_keys(sub, schema)
    return keys


def test_schema_walk_reaches_nested_sections():
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    props = schema["properties"]
    assert {"threads", "signal_before_end_s", "default"} <= set(schema_keys(props["resources"], schema))
    assert {"datasets", "format", "root", "tasks", "t2v"} <= set(schema_keys(props["eval"], schema))
    assert {"seeds", "methods", "pretrain", "select"} <= set(schema_keys(props["grid"], schema))


def test_every_schema_key_is_documented_under_its_section():
    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    missing = []
    for section, node in schema["properties"].items():
        body = "\n".join(line for _, line in section_lines(text, f"`{section}`"))
        for key in sorted(set(schema_keys(node, schema))):
            if not re.search(r"`(?:[^`\s]*\.)?" + re.escape(key) + r"`", body):
                missing.append(f"{section}: {key}")
    assert not missing, "keys not in docs/configuration.md: " + ", ".join(missing)


def dataclass_keys(cls) -> list[str]:
    """Every field of a config dataclass and of the dataclasses nested in it."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        keys.append(f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            keys += dataclass_keys(hints[f.name])
    return keys


def test_every_dataclass_key_is_documented_under_its_section():
    """The schema leaves `pretrain`, `demo` and the `eval` parts open: their dataclasses are the
    source of truth for those keys."""
    from tvts.workflow_config import EVAL_PARTS, STAGE_SECTIONS

    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    parts = [(name, name, cls) for name, cls in STAGE_SECTIONS.items()]
    parts += [("eval", f"eval.{name}", cls) for name, cls in EVAL_PARTS.items()]
    missing = []
    for section, where, cls in parts:
        body = "\n".join(line for _, line in section_lines(text, f"`{section}`"))
        missing += [f"{where}.{key}" for key in sorted(set(dataclass_keys(cls)))
                    if not re.search(r"`(?:[^`\s]*\.)?" + re.escape(key) + r"`", body)]
    assert not missing, "keys not in docs/configuration.md: " + ", ".join(missing)


# ---- tracked files -----------------------------------------------------------------------------

def tracked_text_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=ROOT, capture_output=True, check=True).stdout
    files = []
    for name in sorted(set(out.decode("utf-8").split("\0")) - {""}):
        path = ROOT / name
        if name.startswith("dvc-store/") or not path.is_file():
            continue
        head = path.read_bytes()[:8192]
        if b"\0" in head:
            continue
        files.append(path)
    return files


def test_no_file_speaks_of_tickets_or_milestones():
    hits = []
    for path in tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if HISTORY.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert not hits, "state facts, not history:\n" + "\n".join(hits)
