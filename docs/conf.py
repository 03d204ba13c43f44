"""Sphinx configuration of the hyperspy-vae documentation."""

import hyperspy_vae

project = "hyperspy-vae"
author = "hyperspy-vae developers"
copyright = "2026, hyperspy-vae developers"
release = version = hyperspy_vae.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "examples/README.txt"]
html_theme = "pydata_sphinx_theme"
html_title = "hyperspy-vae"
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
# Cross-references to other projects are not resolved (the build is offline).
intersphinx_mapping = {}
nitpicky = False

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
}
