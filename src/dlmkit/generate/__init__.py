"""Generation from a loaded model: one API for every kind, AR included."""
