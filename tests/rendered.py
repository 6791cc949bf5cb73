"""What a Markdown renderer with raw HTML on reads in a document (markdown-it, every link let
through): the tests of a published postmortem's raw HTML and unsafe links read it so."""

from __future__ import annotations


def html_and_links(markdown: str) -> tuple[list[str], list[str]]:
    """The raw HTML in ``markdown``, and the destination of every link and image."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    md.validateLink = lambda url: True  # type: ignore[method-assign]  # every link
    html: list[str] = []
    links: list[str] = []
    stack = list(md.parse(markdown))
    while stack:
        token = stack.pop()
        if token.type in ("html_block", "html_inline"):
            html.append(token.content)
        links += [str(token.attrGet(a)) for a in ("href", "src") if token.attrGet(a)]
        stack.extend(token.children or ())
    return html, links
