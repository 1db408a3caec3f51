"""Latent Jockey: a real-time, audio-reactive visual performance engine.

Data travels one way: audio -> features -> mapping -> latents -> generator -> pixels -> outputs,
with control (OSC, keys) feeding the mapping stage. See docs/architecture.md.
"""

__version__ = "0.1.0"
