"""The metric and results tables: the logging buffer that writes Parquet shards (``_buffer``), the
schemas of the metric row and the results table (``_schema``), exactly-once compaction
(``_compaction``), the exact readers and DuckDB queries (``_reading``), and table
exports (``_formats``)."""
