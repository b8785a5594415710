"""Sphinx configuration for the pyconvfast documentation.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` from the repository
root. The installed, compiled pyconvfast is imported (never ``src/`` on ``sys.path``): the
package needs its built Cython extensions.
"""

import pyconvfast

project = "pyconvfast"
author = "the pyconvfast developers"
copyright = "the pyconvfast developers"
release = pyconvfast.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
]

# No intersphinx: the documentation must build without network access.
numpydoc_show_class_members = False
autodoc_typehints = "none"

exclude_patterns = ["_build", "generated"]
root_doc = "index"

html_theme = "alabaster"
html_title = f"pyconvfast {release}"
