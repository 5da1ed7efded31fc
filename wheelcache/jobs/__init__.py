"""The jobs wheelcache does end to end, each built from the layers below: fetch, matrix."""
