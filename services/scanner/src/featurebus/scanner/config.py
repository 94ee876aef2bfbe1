"""The scanner's settings (env prefix ``FEATUREBUS_``)."""

from featurebus.common.settings import CommonSettings

__all__ = ["ScannerSettings"]


class ScannerSettings(CommonSettings):
    pass
