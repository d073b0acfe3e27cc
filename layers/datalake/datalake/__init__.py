"""datalake: the shared library of the serverless data-lake ingestion framework.

Pure domain modules live in :mod:`datalake.domain`; Arrow-based I/O in
:mod:`datalake.engine`; the SQL catalog in :mod:`datalake.catalog`; AWS adapters in
:mod:`datalake.aws`; use cases that tie them together in :mod:`datalake.services`.
"""

__version__ = "0.1.0"
