"""Sphinx configuration of the lightning_mixup documentation.

Build (warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The method pages (``docs/methods/``) are generated from :data:`lightning_mixup.methods.METHODS` by the local
extension ``docs/_ext/method_pages.py`` at the start of every build.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the package, from the checkout (an installed one works too)
sys.path.insert(0, str(DOCS / "_ext"))

import lightning_mixup  # noqa: E402  (after the path setup above)

project = "lightning-mixup"
author = "lightning-mixup contributors"
copyright = "lightning-mixup contributors, Apache-2.0"
release = version = lightning_mixup.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_nb",  # MyST Markdown pages, and the notebooks as CI executed them (docs/notebooks/, see below)
    "method_pages",
]

source_suffix = {".md": "myst-nb", ".rst": "restructuredtext", ".ipynb": "myst-nb"}
# The notebooks are never executed here: the test suite executes notebooks/*.ipynb and, with
# LIGHTNING_MIXUP_NOTEBOOKS_OUT=docs/notebooks (what .ci/run sets), saves the executed copies there; the build
# renders those outputs. Without them the notebooks page says how to get them.
nb_execution_mode = "off"
NOTEBOOKS = DOCS / "notebooks"
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints", ".gitignore"]
templates_path = ["_templates"] if (DOCS / "_templates").is_dir() else []

# MyST: ::: fences, definition lists, and anchors for ## / ### headings (the guides link to sections). No
# dollarmath: the formulas of the guides and docstrings are Unicode text (λx + (1−λ)x[j]), and `$` occurs in shell
# lines; so no MathJax, which would load from a CDN.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc + napoleon: the library's docstrings are Google style (Args:, Returns:, Example:)
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
# a callback's or module's overrides of Lightning / torch hooks carry no docstring of their own; inheriting
# Lightning's would document Lightning (and bring its RST) under our names
autodoc_inherit_docstrings = False
autodoc_default_options = {"show-inheritance": True}  # members: named per directive
autodoc_preserve_defaults = True  # signatures show `generator=None`, not object reprs

html_theme = "furo"
html_title = f"lightning-mixup {release}"
html_static_path: list[str] = []
html_theme_options = {"navigation_with_keys": True}


# --- docstring fixes applied at build time ---------------------------------------------------------------------


def _drop_type_docstrings(app, what, name, obj, options, lines: list[str]) -> None:
    """A module constant without a docstring of its own (``TOY2D_NAMES``, ``MIXTURES``, ``KINDS``) is shown by
    autodoc with its type's docstring (``tuple``'s "Built-in immutable sequence ...", ``dict``'s, whose
    ``**kwargs`` is broken RST): drop exactly that text."""
    if what in ("data", "attribute") and lines:
        own = inspect.getdoc(type(obj)) or ""
        if own and "\n".join(lines).strip() == own.strip():
            lines.clear()


def _notebook_index(app) -> None:
    """Write ``docs/notebooks/index.md``: a toctree of the executed notebooks found there, or how to get them."""
    NOTEBOOKS.mkdir(exist_ok=True)
    found = sorted(path.stem for path in NOTEBOOKS.glob("*.ipynb"))
    lines = ["# Notebooks", ""]
    if found:
        lines += [
            "The notebooks of `notebooks/`, with the outputs of their run in the test suite (CPU).",
            "",
            "```{toctree}",
            ":maxdepth: 1",
            "",
            *found,
            "```",
        ]
    else:
        lines += [
            "The executed notebooks are not here: run the test suite with",
            "`LIGHTNING_MIXUP_NOTEBOOKS_OUT=docs/notebooks python -m pytest tests/test_notebooks.py` (as `.ci/run`",
            "does), then build again. The notebooks themselves are in `notebooks/`, committed without outputs.",
        ]
    text = "\n".join(lines) + "\n"
    index = NOTEBOOKS / "index.md"
    if not index.is_file() or index.read_text() != text:
        index.write_text(text)


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _drop_type_docstrings, priority=400)
    app.connect("builder-inited", _notebook_index)
