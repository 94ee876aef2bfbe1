"""featurebus.scanner: judge a plugin archive without ever running its code.

``scan_archive(data)`` is the one checker, for the scanner service and for local tools.
"""

from featurebus.scanner.batch_lint import lint_source
from featurebus.scanner.scan import ScanReport, scan_archive, zip_directory

__all__ = ["ScanReport", "lint_source", "scan_archive", "zip_directory"]
