"""featurebus.dispatcher: owns the objects of every bucket and turns batch triggers into frames.

``objects.ingested`` → objects stored (MongoDB, idempotent upsert by (bucket_id, object_id));
``batch.triggered`` → one Parquet frame per (collection, plugin, batch_size rows) in the object
store, one ``BatchReady`` per frame, then one ``BatchPlanned`` with the totals.
"""
