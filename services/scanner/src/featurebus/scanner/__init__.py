"""featurebus.scanner: the service that judges every uploaded plugin archive, without running it.

The checks themselves are the library :mod:`featurebus.scan`, which the author's CLI runs too.
"""
