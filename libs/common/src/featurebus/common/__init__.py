"""featurebus.common: the contracts that featurebus services share.

settings (typed configuration blocks), events and topics (every Kafka payload and the
topic→model table), kafka (broker wiring, dead-letter handling), objectstore (S3), frames
(Parquet batch frames), ids (deterministic identifiers) and telemetry (logs and traces).
"""
