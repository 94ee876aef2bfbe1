"""The registry's use cases: each function is one thing a user or a topic asks of the registry.

They see records through :class:`~featurebus.registry.tables.Tables`, the object store and the bus
through :class:`~featurebus.registry.context.Ctx`, and refuse with the domain errors of
:mod:`featurebus.registry.errors`. REST routes (``routes/``) and Kafka handlers (``handlers.py``)
only parse, call one use case, and shape the answer; unit tests call use cases on in-memory twins.
"""
