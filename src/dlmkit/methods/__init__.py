"""Model kinds; importing this package registers the built-in ones."""

from dlmkit.methods import ar, bd3lm, diffuseq, dlm_one, mdlm, sedd  # noqa: F401
