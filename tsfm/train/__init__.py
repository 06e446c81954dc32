"""Training: one LightningModule for every family, a streaming DataModule, losses, Hydra entry."""
