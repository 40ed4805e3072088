"""Sphinx configuration: numpydoc API pages, a MyST user guide that takes its
sections from README.md, and a sphinx-gallery of examples/."""

import os
import re

import fastbp

project = "fastbp"
author = "the fastbp developers"
release = version = fastbp.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "README.md", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip"]

autosummary_generate = True
autodoc_default_options = {"members": True}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
myst_heading_anchors = 3

intersphinx_mapping = {}  # offline build: no inventories fetched

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Run every example but the searches and out-of-core training (worker
    # processes, a cluster, Optuna).
    "filename_pattern": r"/(?!search_|incremental_)[^/]+\.py$",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "backreferences_dir": None,
    "reset_modules": ("matplotlib",),
    "matplotlib_animations": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"fastbp {version}"
html_theme_options = {"navigation_with_keys": False, "show_prev_next": False}

os.environ.setdefault("MPLBACKEND", "Agg")
templates_path = ["_templates"]

# fastbp's docstrings write fitted attributes (coefs_) and absolute values
# (|x|) as plain text, which reStructuredText would read as references and
# substitutions: escape both outside literals and roles, after numpydoc.
_LITERAL = re.compile(r"(``.*?``|`[^`]*`)")


def _plain_text_markup(app, what, name, obj, options, lines):
    if not name.startswith("fastbp"):
        return
    for i, line in enumerate(lines):
        parts = _LITERAL.split(line)
        parts[::2] = [re.sub(r"(\w)_(?=\W|$)", r"\1\\_", p.replace("|", r"\|"))
                      for p in parts[::2]]
        lines[i] = "".join(parts)


def _skip_scikit_learn_members(app, what, name, obj, skip, options):
    # Inherited helpers documented by scikit-learn (set_fit_request, ...).
    module = getattr(obj, "__module__", None)
    if isinstance(module, str) and module.startswith("sklearn"):
        return True
    return skip


def setup(app):
    app.connect("autodoc-process-docstring", _plain_text_markup, priority=600)
    app.connect("autodoc-skip-member", _skip_scikit_learn_members)
