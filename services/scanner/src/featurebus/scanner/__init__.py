"""featurebus.scanner: judge a plugin archive without ever running its code.

``scan_archive(data)`` is the one checker, for the scanner service and for local tools.
"""

from featurebus.scanner.scan import ScanReport, scan_archive

__all__ = ["ScanReport", "scan_archive"]
