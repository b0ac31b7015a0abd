"""The documentation site (docs/, Sphinx + furo + myst-parser): every registered method has what its generated page
shows, every public name has an API entry, and the site builds with warnings as errors.

Only the last test needs Sphinx (the ``docs`` extra); it is skipped without it. The others read the registry, the
files and the page generator ``docs/_ext/method_pages.py`` directly.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from lightning_mixup.methods import KINDS, METHODS

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


def _method_pages() -> ModuleType:
    spec = importlib.util.spec_from_file_location("method_pages", DOCS / "_ext" / "method_pages.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


method_pages = _method_pages()


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_has_the_content_of_its_page(name: str) -> None:
    method = METHODS[name]
    own_doc = method.callback.__dict__.get("__doc__") or ""
    assert own_doc.strip(), f"{method.callback.__name__} needs a class docstring of its own (its page shows it)"
    assert (method.batch_op.__doc__ or "").strip(), f"{method.batch_op.__name__} needs a docstring (its page shows it)"
    assert (DOCS / "images" / f"{name}.png").is_file(), "python -m lightning_mixup.gallery --out docs/images"
    assert (REPO / "conf" / "mix" / f"{name}.yaml").is_file(), f"conf/mix/{name}.yaml (its page shows it)"
    assert method.title and method.paper and method.mixes and method.defaults and method.official


@pytest.mark.parametrize("name", list(METHODS))
def test_the_generated_page_shows_the_registry_entry(name: str) -> None:
    method = METHODS[name]
    page = method_pages.method_page(method, KINDS)
    callback = method_pages.public_path(method.callback)
    op = method_pages.public_path(method.batch_op)
    assert f"\n# {method.title}\n" in page
    assert f"../images/{name}.png" in page
    assert f"mix={name}" in page and f"../../conf/mix/{name}.yaml" in page
    assert f".. autoclass:: {callback}" in page and f".. autofunction:: {op}" in page
    assert method.mixes.replace("|", "\\|") in page and method.defaults.replace("|", "\\|") in page
    assert method.paper in page
    if method.arxiv:
        assert f"https://arxiv.org/abs/{method.arxiv}" in page
    for repository in re.findall(r"\b[\w-]+/[\w.-]+\b", method.official):
        assert f"https://github.com/{repository}" in page
    # the paths the page names import the documented objects
    assert _resolve(callback) is method.callback and _resolve(op) is method.batch_op


def test_public_path_is_the_shortest_import() -> None:
    assert method_pages.public_path(METHODS["cutmix"].callback) == "lightning_mixup.CutMix"
    assert method_pages.public_path(METHODS["cutmix"].batch_op) == "lightning_mixup.functional.cutmix_batch"
    assert (
        method_pages.public_path(METHODS["puzzlemix"].batch_op)
        == "lightning_mixup.functional.puzzlemix.puzzlemix_batch"
    )


def test_the_index_lists_every_method_and_every_kind() -> None:
    index = method_pages.index_page(METHODS.values(), KINDS)
    toctree = index.split("```{toctree}")[1].split("```")[0].split()
    assert [entry for entry in toctree if not entry.startswith(":")] == list(METHODS)
    for name, method in METHODS.items():
        assert f"[{method.title}]({name}.md)" in index
    for kind in KINDS:
        assert f"\n{kind}\n: {KINDS[kind]}" in index


def test_pages_are_written_once_and_stale_ones_removed(tmp_path: Path) -> None:
    (tmp_path / "removed_method.md").write_text("an unregistered method's old page")
    written = method_pages.write_pages(tmp_path)
    assert sorted(p.name for p in written) == sorted([f"{name}.md" for name in METHODS] + ["index.md"])
    assert not (tmp_path / "removed_method.md").exists()
    assert method_pages.write_pages(tmp_path) == []  # unchanged text is not rewritten: incremental builds stay so
    assert not list(tmp_path.glob("*.tmp"))


def _resolve(path: str) -> object:
    """The object a dotted path names, attributes first (``lightning_mixup.functional.cutmix`` is the function that
    the package exports, not the submodule of the same name), importing submodules where there is no attribute."""
    parts = path.split(".")
    obj: object = importlib.import_module(parts[0])
    for i, attr in enumerate(parts[1:], start=2):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[:i]))
    return obj


def _documented() -> set[str]:
    """The full names that the API pages document (``.. auto*::`` directives, after ``.. currentmodule::``)."""
    names: set[str] = set()
    for page in sorted((DOCS / "api").glob("*.md")):
        module = ""
        for line in page.read_text().splitlines():
            if match := re.match(r"\s*\.\. (?:py:)?currentmodule:: (\S+)", line):
                module = match.group(1)
            elif match := re.match(r"\s*\.\. auto(?:class|function|data|exception):: (\S+)", line):
                target = match.group(1)
                names.add(target if target.startswith("lightning_mixup.") else f"{module}.{target}")
    return names


PUBLIC_MODULES = [
    "lightning_mixup",
    "lightning_mixup.functional",
    "lightning_mixup.functional.puzzlemix",
    "lightning_mixup.data",
    "lightning_mixup.models",
    "lightning_mixup.models.nets",
]


@pytest.mark.parametrize("module_name", [*PUBLIC_MODULES, "lightning_mixup.methods"])
def test_every_public_name_has_an_api_entry(module_name: str) -> None:
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        public = [name for name in module.__all__ if not name.startswith("__")]
    else:  # lightning_mixup.methods: what it defines itself, not what it imports
        public = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and not inspect.ismodule(value)
            and type(value).__module__ != "__future__"  # `annotations`
            and (getattr(value, "__module__", None) if callable(value) else module_name) == module_name
        ]
        assert {"Method", "METHODS", "KINDS", "get", "names"} <= set(public)
    documented = {id(_resolve(name)) for name in _documented()}
    missing = [name for name in public if id(getattr(module, name)) not in documented]
    assert not missing, f"add {missing} of {module_name} to a page of docs/api/"


def test_the_docs_extension_needs_no_sphinx_import_at_module_level() -> None:
    source = (DOCS / "_ext" / "method_pages.py").read_text()
    assert not re.search(r"^(?:import|from) sphinx", source, re.MULTILINE)


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    pytest.importorskip("sphinx", reason="the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("furo", reason="the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("myst_parser", reason="the docs extra: pip install -e '.[docs]'")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    command += ["-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-5000:]
    html = tmp_path / "html"
    for name, method in METHODS.items():
        page = (html / "methods" / f"{name}.html").read_text()
        assert f"../_images/{name}.png" in page and method.callback.__name__ in page
    for guide in ("quickstart", "own_module", "targets", "hydra", "ddp", "reproducing", "adding_a_method", "benchmark"):
        assert (html / "guides" / f"{guide}.html").is_file()
    assert (html / "api" / "functional.html").is_file()


@pytest.mark.parametrize("module_name", ["lightning_mixup", "lightning_mixup.functional"])
def test_every_public_name_has_a_docstring_with_a_runnable_example(module_name: str) -> None:
    """The API reference shows each public class and function with an example (run by the doctests)."""
    module = importlib.import_module(module_name)
    missing = [
        name
        for name in module.__all__
        if not name.startswith("__") and ">>>" not in (inspect.getdoc(getattr(module, name)) or "")
    ]
    assert not missing, f"{module_name}: no example in the docstring of {missing}"
