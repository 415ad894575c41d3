"""One package per executable; only these build the whole object graph."""
