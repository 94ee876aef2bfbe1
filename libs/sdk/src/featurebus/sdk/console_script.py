"""The ``featurebus`` console script: the CLI when its extra is installed, else what to install.

A worker installs ``featurebus-sdk`` for the plugin API alone; the command line's own packages
(typer, httpx, the scanner library and the plugin runtime) come with ``featurebus-sdk[cli]``.
This module imports none of them until it runs, so without them it exits with the fix instead
of a traceback.
"""

from __future__ import annotations

import sys

__all__ = ["CLI_EXTRA", "main"]

CLI_EXTRA = "pip install 'featurebus-sdk[cli]'"

# What the extra installs, as the import names a missing one is reported under.
_CLI_MODULES = ("typer", "httpx", "featurebus.scan", "featurebus.runtime")


def main() -> None:
    """Run the CLI; exit 1 with the install command when a package of the ``cli`` extra is missing."""
    try:
        from featurebus.sdk.cli import app
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if not any(missing == m or missing.startswith(m + ".") for m in _CLI_MODULES):
            raise
        sys.exit(f"featurebus: the command line needs the SDK's cli extra ({missing} is not installed): {CLI_EXTRA}")
    app()
