"""featurebus.indexer: owns the Qdrant schema and every Qdrant read and write.

``collection.lifecycle`` → Qdrant collection ``fb_{collection_id}`` created (named dense vectors)
or deleted; ``vectors.produced`` → each row's vectors checked against the collection's real
config, valid rows upserted as points, ``BatchIndexed`` published with reconciled counts;
and the internal search API (``POST /internal/v1/search``, the registry's retriever executions)
→ named-vector search per collection, hits merged by score (the first search filtering on a
field creates its payload index).
"""
