"""Tools around the trainer: compare runs, diagnose a world before training, probe hints, read traces, install vLLM on CPU."""
