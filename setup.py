"""Builds the C extension ``fastmd._sbe`` (the compiled SBE decoder); the rest of the package's
metadata is in pyproject.toml. The extension is optional: without a compiler the install still
succeeds and fastmd.core.sbe uses its pure-Python decoder, which gives the same results."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("fastmd._sbe", sources=["fastmd/_sbe.c"], optional=True)])
