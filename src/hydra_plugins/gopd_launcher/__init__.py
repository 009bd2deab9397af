"""gopd's Hydra launcher plugin (Hydra only instantiates launchers from the hydra_plugins namespace)."""
