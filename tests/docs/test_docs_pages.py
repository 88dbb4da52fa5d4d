"""The pages of docs/: all reachable (mkdocs nav and index), links and anchors that resolve, no machine paths."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension (mkdocs) gives a heading."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", prose(page.read_text()), re.M)}


def broken_links(page: Path) -> list[str]:
    """Relative links of `page` whose file or heading anchor does not exist."""
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    return broken


def test_every_page_is_in_the_nav_and_in_the_index():
    nav = set(re.findall(r"^\s+- .*?:\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M))
    index = set(LINK.findall((DOCS / "index.md").read_text()))
    for page in PAGES:
        assert page.name in nav, f"{page.name} is not in mkdocs.yml's nav"
        if page.name != "index.md":
            assert page.name in index, f"{page.name} is not linked from docs/index.md"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_links_and_anchors_resolve(page):
    assert broken_links(page) == []


def test_a_broken_link_or_anchor_is_found(tmp_path):
    (tmp_path / "a.md").write_text("# A page\n\n## Some `code`: here\n")
    (tmp_path / "b.md").write_text("# B page\n[ok](a.md#some-code-here) [gone](c.md) [bad](a.md#nowhere)\n"
                                   "[self](#b-page) [other](#a-page)\n```\n[in code](ignored.md)\n```\n")
    assert broken_links(tmp_path / "b.md") == ["c.md", "a.md#nowhere", "#a-page"]


def code_blocks_lost(text: str) -> int:
    """Fenced code blocks of `text` that Python-Markdown (mkdocs) does not render as code blocks.

    Its fenced_code extension takes fences at the top level only: inside a list item they
    end up as text or inline code.
    """
    import html

    markdown = pytest.importorskip("markdown")  # comes with the [train] and dev extras
    rendered = markdown.markdown(text, extensions=["tables", "toc", "fenced_code"])
    code = html.unescape("\n".join(re.findall(r"<pre>(.*?)</pre>", rendered, re.S)))
    blocks = re.findall(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", text, re.S | re.M)
    return sum(block.strip().splitlines()[0].strip() not in code for block in blocks if block.strip())


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_code_blocks_render_as_code_in_mkdocs(page):
    assert code_blocks_lost(page.read_text()) == 0


def test_a_code_block_in_a_list_item_is_found():
    top = "1. step\n\n```bash\nmediar3d info\n```\n"
    assert code_blocks_lost(top) == 0
    assert code_blocks_lost("1. step\n\n    ```bash\n    mediar3d info\n    ```\n") == 1


def test_no_machine_paths_in_what_users_read():
    for page in [*PAGES, ROOT / "README.md"]:
        for path in ("/work/", "/tmp/", "/home/", "/root/"):
            assert path not in page.read_text(), f"{page.name} names a machine path ({path})"


def load_make_tutorial():
    spec = importlib.util.spec_from_file_location("make_tutorial", ROOT / "scripts" / "make_tutorial.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tutorial_blocks_are_written_and_its_pictures_small():
    text = (DOCS / "tutorial.md").read_text()
    blocks = re.findall(r"<!-- make_tutorial:([\w-]+) -->\n(.*?)<!-- /make_tutorial:\1 -->", text, re.S)
    assert len(blocks) >= 6
    for name, body in blocks:
        assert body.strip(), f"docs/tutorial.md: block {name} is empty: run scripts/make_tutorial.py"
    pictures = re.findall(r"\]\((images/tutorial/[\w.-]+\.png)\)", text)
    assert len(pictures) >= 3
    for picture in pictures:
        assert (DOCS / picture).stat().st_size < load_make_tutorial().MAX_PNG_BYTES, picture


def test_make_tutorial_replaces_only_its_blocks():
    replace_blocks = load_make_tutorial().replace_blocks
    page = "intro 1\n<!-- make_tutorial:n -->\nold 2\n<!-- /make_tutorial:n -->\nend 3\n"
    expected = "intro 1\n<!-- make_tutorial:n -->\nnew 4\n<!-- /make_tutorial:n -->\nend 3\n"
    assert replace_blocks(page, {"n": "new 4"}) == expected
    with pytest.raises(SystemExit, match="make_tutorial:missing"):
        replace_blocks(page, {"missing": "x"})
