"""The features, one module each: a mutator per container, emitting explicit patch operations
and one Decision with its reason."""
