"""The catalog's questions, one module per aggregate, composed into :class:`SqlCatalog`."""
