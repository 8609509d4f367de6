"""Vector stores: durable records and vectors, nearest-neighbour search."""
