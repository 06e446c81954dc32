"""Maintainer tools, run from a checkout (``python tools/<name>.py --help``); not part of the installed package."""
