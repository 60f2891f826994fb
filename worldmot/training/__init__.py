"""Training world models on recorded episodes."""
