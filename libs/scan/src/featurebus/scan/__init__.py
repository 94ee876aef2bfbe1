"""featurebus.scan: judge a plugin archive without ever running its code.

``scan_archive(data)`` is the one checker: the scanner service and the author's CLI (``featurebus plugin
scan``) both run it. It runs nothing it reads and talks to no server.
"""

from featurebus.scan.batch_lint import lint_source
from featurebus.scan.scan import ScanReport, scan_archive, zip_directory

__all__ = ["ScanReport", "lint_source", "scan_archive", "zip_directory"]
