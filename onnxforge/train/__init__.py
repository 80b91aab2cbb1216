"""Training on the torch side: distillation and quantisation-aware training of compressed students."""
