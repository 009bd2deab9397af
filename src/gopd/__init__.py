"""gopd: generalized on-policy distillation (G-OPD) mixed with GRPO."""
