"""featurebus.runtime: the host that loads a plugin and runs frames through it.

``unpack_archive`` lays a plugin zip out on disk, ``PluginHost.load`` imports it once (with the
guide's import paths installed) and builds its steps, and ``PluginHost.run`` turns a frame into
vectors and a :class:`~featurebus.common.events.RowFailure` for every row that produced none.
Inference's workers run it inside the plugin sandbox; ``featurebus plugin test`` runs it locally.
A plugin author never imports it: the plugin API is :mod:`featurebus.sdk`.
"""

from featurebus.runtime.archive import unpack_archive
from featurebus.runtime.errors import PluginError
from featurebus.runtime.host import HostResult, PluginHost

__all__ = ["HostResult", "PluginError", "PluginHost", "unpack_archive"]
