"""Package discovery: the folders formats/, kernels/, engine/, tools/ install as llamba.<folder>.

Every folder with an __init__.py below them becomes a subpackage, so a new module folder
needs no change here (metadata lives in pyproject.toml).
"""

import os

from setuptools import setup

FOLDERS = ("formats", "kernels", "engine", "tools")

packages, package_dir = ["llamba"], {"llamba": "llamba"}
for folder in FOLDERS:
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith((".", "__"))]
        if "__init__.py" in files:
            name = "llamba." + root.replace(os.sep, ".")
            packages.append(name)
            package_dir[name] = root

setup(packages=packages, package_dir=package_dir)
