"""Training of the bundled MiniGrid policy (frozen backbone) and of AURA-Mem on top of it."""
