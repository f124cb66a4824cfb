"""DMNet: dense multiscale fusion network with a diffusion module (Pan et al., IEEE IoT J. 2025)."""
