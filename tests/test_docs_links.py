"""The documentation holds together: README.md stays a short guide, every relative link in the
README, docs/*.md, benchmarks/README.md and trainers/README.md resolves (files and `#anchors`),
every docs page is linked from the README, and no page, nor any source file of the package, the
trainers folder or the tests, points outside the repository (`../shared`).

Plain file reading only: no nnU-Net, no torch.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 300


def checked_files() -> list[Path]:
    files = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md",
             ROOT / "trainers" / "README.md"]
    return [f for f in files if f.is_file()]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target); the target may carry a "title"
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks, inline code spans removed."""
    out, in_fence = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            out.append((number, INLINE_CODE.sub("", line)))
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every markdown link outside code."""
    return [(number, m.group(1)) for number, line in prose_lines(path.read_text(encoding="utf-8"))
            for m in LINK.finditer(line)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation except '-' and '_'
    dropped, each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # a link in a heading: its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's -1, -2, ... for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    in_fence = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        m = None if in_fence else HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            out.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
    return out


def is_external(target: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) is not None   # http:, https:, mailto:, ...


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, (f"README.md has {n} lines, more than {README_MAX_LINES}: move details to "
                                   f"a docs/ page or benchmarks/README.md and link them")


def test_relative_links_resolve():
    problems = []
    anchor_cache: dict[Path, set[str]] = {}
    for source in checked_files():
        for number, target in links(source):
            if is_external(target):
                continue
            path_part, _, anchor = target.partition("#")
            if path_part:
                dest = (source.parent / path_part).resolve()
                if not dest.exists():
                    problems.append(f"{rel(source)}:{number}: link '{target}': {path_part} does not exist "
                                    f"(relative to {rel(source.parent) or '.'}/)")
                    continue
                try:
                    dest.relative_to(ROOT)
                except ValueError:
                    problems.append(f"{rel(source)}:{number}: link '{target}' leaves the repository")
                    continue
            else:
                dest = source
            if anchor:
                if dest.is_dir() or dest.suffix.lower() != ".md":
                    problems.append(f"{rel(source)}:{number}: link '{target}': an anchor into a file that is "
                                    f"not markdown")
                    continue
                known = anchor_cache.setdefault(dest, anchors(dest))
                if anchor not in known:
                    problems.append(f"{rel(source)}:{number}: link '{target}': no heading with anchor "
                                    f"'#{anchor}' in {rel(dest)}")
    assert not problems, "broken documentation links:\n" + "\n".join(problems)


def test_every_docs_page_is_linked_from_readme():
    linked = set()
    for _, target in links(README):
        path_part = target.partition("#")[0]
        if path_part and not is_external(target):
            linked.add((ROOT / path_part).resolve())
    missing = [rel(p) for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not missing, "docs pages not linked from README.md: " + ", ".join(missing)


def source_files() -> list[Path]:
    """The Python sources a user reads: the package, the trainers folder and the tests (this file,
    which names the pattern, left out)."""
    files = [*sorted((ROOT / "spcl_nnunet").rglob("*.py")), *sorted((ROOT / "trainers").glob("*.py")),
             *sorted((ROOT / "tests").glob("*.py"))]
    return [f for f in files if f.resolve() != Path(__file__).resolve()]


def test_no_path_outside_the_repository():
    problems = [f"{rel(f)}:{number}: {line.strip()}"
                for f in [*checked_files(), *source_files()]
                for number, line in enumerate(f.read_text(encoding="utf-8").splitlines(), start=1)
                if re.search(r"(?<![\w.])\.\./shared\b", line)]
    assert not problems, "paths to ../shared (outside the repository):\n" + "\n".join(problems)


@pytest.mark.parametrize("heading, expected", [
    ("`bench_loss.py`: the self-paced loss against plain SupCon",
     "bench_losspy-the-self-paced-loss-against-plain-supcon"),
    ("On one GPU (`--schedule gpu`, H200, 2026-11-27)", "on-one-gpu---schedule-gpu-h200-2026-11-27"),
    ("The transfer recipe (issue #19): where SP-Con's gain was lost",
     "the-transfer-recipe-issue-19-where-sp-cons-gain-was-lost"),
    ("`gpu_site.sh` + `gpu_experiment.sh`: the acdc experiment on one GPU",
     "gpu_sitesh--gpu_experimentsh-the-acdc-experiment-on-one-gpu"),
])
def test_slug_follows_github(heading, expected):
    assert slug(heading) == expected
