"""The neural network: model, count-likelihood losses and training (pure PyTorch)."""
