"""The studio: preparing a show's material offline.

* :mod:`engine.studio.explore` -- ``lj explore``: contact sheets, principal directions, latent banks.
* :mod:`engine.studio.train` -- ``lj train`` / ``lj finetune`` / ``lj uncanny``: training our
  StyleGAN2 network with :mod:`engine.studio.discriminator` and :mod:`engine.studio.augment`.

See docs/studio.md.
"""
