"""featurebus.registry: the REST API and the documents behind it."""
