"""Babysitting the learning (the seed's "Gradient checks", "Sanity checks" and
"Babysitting the learning process"): gradient checks, sanity checks, per-epoch warnings."""
